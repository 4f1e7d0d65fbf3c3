"""make serve over real HTTP: the Function URL events it builds, the responses it sends, the
real handler behind it, its log as CloudWatch shows it, reloading an edited handler, and make
send and make invoke against it."""
import base64
import http.client
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import KEY, NEXT, ROOT, SECRET, APP_KEY
from make_events import SAMPLE_SOKETI
from peers import free_port, read_log, running

DEV_KEY = "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r"  # the QStash CLI dev server's public key


def serve(env_vars, python_path=()):
    port = free_port()
    env = {"PATH": os.environ["PATH"], "PORT": str(port),
           "PYTHONPATH": os.pathsep.join([*map(str, python_path), str(ROOT / "tests")]),
           **env_vars}
    return running(["make", "-s", "serve"], env=env, cwd=ROOT, port=port), port


def invocations(process):
    """The log serve wrote, one list of lines per request: START ... REPORT."""
    blocks, current = [], None
    for line in read_log(process).splitlines():
        if line.startswith("START RequestId: "):
            current = [line]
        elif current is not None:
            current.append(line)
            if line.startswith("REPORT RequestId: "):
                blocks.append(current)
                current = None
    return blocks


def json_records(lines):
    """The lines that are JSON objects: the handler's own log lines."""
    records = []
    for line in lines:
        if line.startswith("{"):
            records.append(json.loads(line))
    return records


@pytest.fixture(scope="module")
def echo():
    context, port = serve({"HANDLER": "echo_handler.handler"})
    with context as process:
        process.port = port
        yield process


def request(port, method, path, body=None, headers=()):
    """One request with exactly these headers (repeats allowed); (status, headers, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    own_host = any(name.lower() == "host" for name, _ in headers)
    connection.putrequest(method, path, skip_host=own_host, skip_accept_encoding=True)
    for name, value in headers:
        connection.putheader(name, value)
    if body is not None:
        connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body)
    response = connection.getresponse()
    result = response.status, response.getheaders(), response.read()
    connection.close()
    return result


def echoed(port, *args, **kw):
    status, _, body = request(port, *args, **kw)
    assert status == 200, body
    return json.loads(body)


def test_event_is_built_as_aws_builds_it(echo):
    event = echoed(echo.port, "POST", "/hooks/q?b=2&a=%20x", b'{"k":1}', [
        ("Content-Type", "application/json"), ("X-Trace", "one"), ("x-trace", "two"),
        ("Cookie", "a=1; b=2"), ("Host", "example.test:8080")])
    assert event["version"] == "2.0" and event["rawPath"] == "/hooks/q"
    assert event["rawQueryString"] == "b=2&a=%20x"
    assert event["headers"]["x-trace"] == "one,two"
    assert all(name == name.lower() for name in event["headers"])
    assert event["cookies"] == ["a=1", "b=2"] and "cookie" not in event["headers"]
    assert event["body"] == '{"k":1}' and event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["domainName"] == "example.test:8080"
    assert context["http"]["method"] == "POST" and context["http"]["path"] == "/hooks/q"
    assert context["http"]["sourceIp"] == "127.0.0.1"
    assert context["requestId"] and isinstance(context["timeEpoch"], int)


def test_non_text_bodies_are_base64_and_empty_bodies_have_no_body_key(echo):
    raw = bytes(range(256))
    event = echoed(echo.port, "PUT", "/", raw, [("Content-Type", "application/octet-stream")])
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == raw
    event = echoed(echo.port, "POST", "/", b"a=1&b=2",
                   [("Content-Type", "application/x-www-form-urlencoded")])
    assert event["isBase64Encoded"] is True
    event = echoed(echo.port, "GET", "/empty")
    assert "body" not in event and event["isBase64Encoded"] is False


def test_results_are_translated_as_a_function_url_does(echo):
    status, headers, body = request(echo.port, "GET", "/", headers=[("x-respond", "plain-dict")])
    assert status == 200 and json.loads(body)["a"] == 1
    assert ("Content-Type", "application/json") in headers
    status, _, body = request(echo.port, "GET", "/", headers=[("x-respond", "string")])
    assert status == 200 and json.loads(body) == "hello"
    status, headers, body = request(echo.port, "GET", "/", headers=[("x-respond", "binary")])
    assert status == 201 and body == b"\x00\x01\xff"
    assert ("X-A", "b") in headers
    assert [v for k, v in headers if k == "Set-Cookie"] == ["a=1", "b=2; Path=/"]
    status, _, body = request(echo.port, "GET", "/", headers=[("x-respond", "raise")])
    assert status == 502 and json.loads(body) == {"Message": "Internal Server Error"}


def test_each_request_is_logged_as_cloudwatch_shows_it(echo):
    before = len(invocations(echo))
    for _ in range(3):
        request(echo.port, "GET", "/count?secret=1")
    blocks = invocations(echo)[before:]
    assert len(blocks) == 3
    for block in blocks:
        request_id = block[0].split()[2]
        assert block[0] == "START RequestId: %s Version: $LATEST" % request_id
        assert block[-2] == "END RequestId: %s" % request_id
        assert block[-1].startswith("REPORT RequestId: %s\tDuration: " % request_id)
        assert block[-1].endswith("GET /count -> 200") and "secret" not in block[-1]


def test_everything_the_handler_writes_is_shown_in_order(echo):
    status, _, _ = request(echo.port, "GET", "/p", headers=[("x-respond", "print")])
    assert status == 200
    assert invocations(echo)[-1][1:3] == ["a line on stdout", "a line on stderr"]


def test_an_exception_is_logged_with_the_handlers_frames_only(echo):
    request(echo.port, "GET", "/", headers=[("x-respond", "raise")])
    block = invocations(echo)[-1]
    assert block[1] == "[ERROR] ValueError: handler crashed"
    assert any(line.startswith('  File "%s' % (ROOT / "tests/echo_handler.py"))
               for line in block)
    assert not any("serve.py" in line for line in block)
    assert block[-1].endswith("GET / -> 502")


def environment_seen(port, path="/env", host=None):
    headers = [("x-respond", "environment")] + ([("Host", host)] if host else [])
    return echoed(port, "GET", path, headers=headers)


def test_the_destination_url_is_the_url_called_unless_set(echo):
    seen = environment_seen(echo.port, "/jobs?tenant=7", host="127.0.0.1:%d" % echo.port)
    assert seen["QSTASH_DESTINATION_URL"] == "http://127.0.0.1:%d/jobs?tenant=7" % echo.port
    context, port = serve({"HANDLER": "echo_handler.handler", "QSTASH_CURRENT_SIGNING_KEY": KEY,
                           "QSTASH_DESTINATION_URL": "https://hooks.example.com/q"})
    with context:
        assert environment_seen(port)["QSTASH_DESTINATION_URL"] == "https://hooks.example.com/q"


def test_dev_keys_and_their_opt_in_only_when_no_key_is_set(echo):
    seen = environment_seen(echo.port)  # the echo server is started with no keys
    assert seen["QSTASH_CURRENT_SIGNING_KEY"] == DEV_KEY and seen["ALLOW_PUBLIC_DEV_KEYS"] == "1"
    for own_keys in ({"QSTASH_CURRENT_SIGNING_KEY": KEY}, {"SOKETI_SECRET": SECRET}):
        context, port = serve({"HANDLER": "echo_handler.handler", **own_keys})
        with context:
            seen = environment_seen(port)
        assert seen["ALLOW_PUBLIC_DEV_KEYS"] is None
        assert seen["QSTASH_CURRENT_SIGNING_KEY"] == own_keys.get("QSTASH_CURRENT_SIGNING_KEY")


# --- The real handler behind make serve ---------------------------------------------------------

@pytest.fixture(scope="module")
def real():
    context, port = serve({"QSTASH_CURRENT_SIGNING_KEY": KEY, "QSTASH_NEXT_SIGNING_KEY": NEXT})
    with context as process:
        process.port = port
        yield process


def send(url, body, key=KEY, **env):
    return subprocess.run(["make", "-s", "send"], cwd=ROOT, capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"], "URL": url, "BODY": body,
                               "QSTASH_CURRENT_SIGNING_KEY": key, **env})


@pytest.mark.parametrize("path, body, ctype", [
    ("/", '{"hello":"world"}', "application/json"),
    ("/jobs?tenant=7&x=a%20b", '{"q":1}', "application/json"),
    ("/bin", "\x01binary \u00ff\U0001f44b", "application/octet-stream"),
    ("/empty", "", "application/json"),
])
def test_make_send_to_make_serve(real, path, body, ctype):
    url = "http://127.0.0.1:%d%s" % (real.port, path)
    result = send(url, body, CONTENT_TYPE=ctype)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0] == "200"
    assert json.loads(result.stdout.splitlines()[1])["source"] == "qstash"


def test_make_send_exits_non_zero_on_rejection(real):
    result = send("http://127.0.0.1:%d/" % real.port, "{}", key="sig_NotTheKey")
    assert result.returncode != 0 and result.stdout.splitlines()[0] == "401"


def test_make_send_without_a_key_says_what_is_missing():
    result = send("http://127.0.0.1:9/", "{}", key="")
    assert result.returncode != 0 and "QSTASH_CURRENT_SIGNING_KEY" in result.stderr


def test_signed_request_with_cookies_and_repeated_headers(real):
    from signer import sign_qstash
    url = "http://127.0.0.1:%d/c?z=1" % real.port
    token = sign_qstash(KEY, b"{}", url)
    status, _, body = request(real.port, "POST", "/c?z=1", b"{}", [
        ("Upstash-Signature", token), ("Content-Type", "application/json"),
        ("Cookie", "session=abc"), ("X-Trace", "1"), ("X-Trace", "2")])
    assert status == 200, body
    status, _, _ = request(real.port, "POST", "/c?z=2", b"{}", [("Upstash-Signature", token)])
    assert status == 401


def test_make_send_can_sign_for_another_url_and_the_401_says_why(real):
    """README, "Try it": sign for one URL, post to another, and read the reason in the log."""
    posted = "http://127.0.0.1:%d/" % real.port
    signed_for = "http://127.0.0.1:%d/elsewhere" % real.port
    result = send(posted, "{}", SIGN_URL=signed_for)
    assert result.returncode != 0 and result.stdout.splitlines()[0] == "401"
    record = json_records(invocations(real)[-1])[-1]
    assert record["status"] == 401 and "/elsewhere" in record["reason"]
    assert "sub" in record["reason"]


def test_unsigned_request_is_401_and_logged(real):
    status, _, body = request(real.port, "POST", "/", b"{}", [("Content-Type", "text/plain")])
    assert status == 401 and json.loads(body) == {"error": "invalid signature"}
    assert "no Upstash-Signature" in json_records(invocations(real)[-1])[-1]["reason"]


def test_without_keys_it_uses_the_dev_servers_public_keys_and_says_so():
    context, port = serve({})
    with context as process:
        url = "http://127.0.0.1:%d/" % port
        result = send(url, "{}", key=DEV_KEY)
        banner = read_log(process)
    assert result.returncode == 0, result.stdout
    assert "PUBLIC keys" in banner and "sig_7kYj" in banner and "ALLOW_PUBLIC_DEV_KEYS" in banner
    assert DEV_KEY not in banner  # fingerprints, not keys


# --- Editing the handler under a running make serve --------------------------------------------

EDITED_HANDLE = """

def handle(message):  # appended by the test: replaces the handle above
    print("handled in the edited copy:", message.text)
    return {"edited": True}
"""


@pytest.fixture
def editable(tmp_path):
    """make serve running a copy of lambda_function.py that the test may edit."""
    copy = tmp_path / "edited_function.py"
    copy.write_text((ROOT / "lambda_function.py").read_text())
    context, port = serve({"HANDLER": "edited_function.lambda_handler",
                           "QSTASH_CURRENT_SIGNING_KEY": KEY, "QSTASH_NEXT_SIGNING_KEY": NEXT},
                          python_path=[tmp_path])
    with context as process:
        process.port, process.copy = port, copy
        yield process


def send_to(process, body="{}"):
    result = send("http://127.0.0.1:%d/" % process.port, body)
    status, answer = result.stdout.splitlines()[:2]
    return int(status), answer


def test_a_saved_change_is_served_on_the_next_request_and_announced(editable):
    status, answer = send_to(editable)
    assert status == 200 and json.loads(answer)["ok"] is True
    with open(editable.copy, "a") as source:
        source.write(EDITED_HANDLE)
    status, answer = send_to(editable, '{"n": 1}')
    assert status == 200 and json.loads(answer) == {"edited": True}
    assert "serve: edited_function.py changed: reloaded" in read_log(editable)
    block = invocations(editable)[-1]  # print() in handle, then the handler's log line
    assert block[1] == 'handled in the edited copy: {"n": 1}'
    assert json_records(block)[0]["outcome"] == "accepted"


def test_a_syntax_error_is_reported_and_serve_keeps_running(editable):
    good = editable.copy.read_text()
    broken = good + "\ndef handle(message:\n"
    editable.copy.write_text(broken)
    status, answer = send_to(editable)
    assert status == 502 and json.loads(answer) == {"Message": "Internal Server Error"}
    log = read_log(editable)
    # make zip's line for it (tests/test_code_check.py shows they are the same), then the 502
    assert "serve: edited_function.py:%d: SyntaxError: " % len(broken.splitlines()) in log
    assert "serve: answering 502" in log and "Traceback" not in log
    assert invocations(editable)[-1][1].startswith("[ERROR] Runtime.UserCodeSyntaxError: ")
    assert editable.poll() is None
    editable.copy.write_text(good + EDITED_HANDLE)
    status, answer = send_to(editable)
    assert status == 200 and json.loads(answer) == {"edited": True}


def test_a_saved_change_to_a_helper_module_is_served_too(editable):
    """handle imports a module of the user's own beside the handler's file: editing it
    reloads the code, as a new Lambda instance would load it."""
    helper = editable.copy.parent / "pricing.py"
    helper.write_text("RATE = 1\n")
    with open(editable.copy, "a") as source:
        source.write("\nimport pricing\n\n\ndef handle(message):\n"
                     "    return {'rate': pricing.RATE}\n")
    assert send_to(editable) == (200, json.dumps({"rate": 1}))
    helper.write_text("RATE = 2  # edited\n")
    assert send_to(editable) == (200, json.dumps({"rate": 2}))
    assert "serve: pricing.py changed: reloaded" in read_log(editable)
    helper.write_text("RATE = (\n")
    status, _ = send_to(editable)
    assert status == 502
    assert re.search(r"^serve: \S*pricing\.py:1: SyntaxError: ", read_log(editable), re.M)
    assert invocations(editable)[-1][1].startswith("[ERROR] Runtime.UserCodeSyntaxError: ")


# --- make invoke and fresh sample events ---------------------------------------------------------

SAMPLE_KEYS = {"QSTASH_CURRENT_SIGNING_KEY": "sig_SampleCurrentKeyForTheEventsFolder",
               "QSTASH_NEXT_SIGNING_KEY": "sig_SampleNextKeyForTheEventsFolder"}


def invoke(event_path, **env):
    return subprocess.run(["make", "-s", "invoke", "EVENT=%s" % event_path], cwd=ROOT,
                          capture_output=True, text=True, env={"PATH": os.environ["PATH"], **env})


def fresh_event(tmp_path, name, **env):
    """tools/make_events.py --fresh NAME, written to a file."""
    result = subprocess.run([sys.executable, "tools/make_events.py", "--fresh", name], cwd=ROOT,
                            capture_output=True, text=True, env={"PATH": os.environ["PATH"], **env})
    assert result.returncode == 0, result.stderr
    path = tmp_path / (name + ".json")
    path.write_text(result.stdout)
    return path


@pytest.mark.parametrize("keys, status", [({}, 500), (SAMPLE_KEYS, 401)])
def test_make_invoke_prints_the_log_line_and_the_response_and_fails_on_4xx_5xx(keys, status):
    result = invoke("events/function-url.json", **keys)
    assert result.returncode != 0, result.stderr
    log, response = result.stdout.split("\n", 1)
    assert json.loads(log)["status"] == status
    assert json.loads(response)["statusCode"] == status


def test_make_invoke_exits_zero_on_a_freshly_signed_event(tmp_path):
    keys = {"QSTASH_CURRENT_SIGNING_KEY": KEY, "QSTASH_NEXT_SIGNING_KEY": NEXT}
    result = invoke(fresh_event(tmp_path, "rest-api", **keys), **keys)
    assert result.returncode == 0, result.stdout
    assert json.loads(result.stdout.split("\n", 1)[1])["statusCode"] == 200


@pytest.mark.parametrize("name", ["soketi-http", "soketi-invoke"])
def test_fresh_soketi_events_are_signed_now_with_your_secret(tmp_path, name):
    soketi = {"SOKETI_SECRET": SECRET, "SOKETI_KEY": APP_KEY}
    path = fresh_event(tmp_path, name, **soketi)
    result = invoke(path, **soketi)
    assert result.returncode == 0, result.stdout
    assert json.loads(result.stdout.split("\n", 1)[0])["source"] == "soketi"
    assert invoke(path, SOKETI_SECRET="another-secret-entirely").returncode != 0


@pytest.mark.parametrize("name", ["soketi-http", "soketi-invoke"])
def test_soketi_samples_verify_with_the_age_check_off(name):
    """The samples carry a fixed time_ms: SOKETI_MAX_AGE=0 leaves the signature alone to check."""
    key, secret = SAMPLE_SOKETI
    env = {"SOKETI_SECRET": secret, "SOKETI_KEY": key}
    assert invoke("events/%s.json" % name, **env).returncode != 0  # too old
    result = invoke("events/%s.json" % name, SOKETI_MAX_AGE="0", **env)
    assert result.returncode == 0, result.stdout


def test_fresh_soketi_event_needs_a_secret():
    result = subprocess.run([sys.executable, "tools/make_events.py", "--fresh", "soketi-invoke"],
                            cwd=ROOT, capture_output=True, text=True,
                            env={"PATH": os.environ["PATH"]})
    assert result.returncode != 0 and "SOKETI_SECRET is not set" in result.stderr


def test_make_invoke_without_an_event_says_how():
    result = subprocess.run(["make", "-s", "invoke"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0 and "usage: make invoke EVENT=" in result.stderr


@pytest.mark.parametrize("make_path, reason", [
    (lambda tmp: tmp / "missing.json", "No such file or directory"),
    (lambda tmp: tmp, "Is a directory"),
    (lambda tmp: tmp / "not-json.json", "is not JSON"),
    (lambda tmp: tmp / "latin1.json", "cannot read"),
], ids=["missing", "directory", "not-json", "not-utf8"])
def test_an_unreadable_event_file_is_one_line(tmp_path, make_path, reason):
    (tmp_path / "not-json.json").write_text("{'single': 'quotes'}")
    (tmp_path / "latin1.json").write_bytes(b'{"caf\xe9": 1}')
    result = invoke(make_path(tmp_path))
    assert result.returncode != 0 and result.stdout == ""
    ours = [line for line in result.stderr.splitlines() if not line.startswith("make: ")]
    assert len(ours) == 1 and reason in ours[0] and str(make_path(tmp_path)) in ours[0]


# --- make serve's start: the port, and every configuration problem at once ------------------

def serve_once(**env):
    """make serve, expected to stop at once: (exit status, stdout, its own stderr lines)."""
    result = subprocess.run(["make", "-s", "serve"], cwd=ROOT, capture_output=True, text=True,
                            timeout=30, env={"PATH": os.environ["PATH"], **env})
    ours = [line for line in result.stderr.splitlines() if not line.startswith("make: ")]
    return result.returncode, result.stdout, ours


def test_a_port_in_use_is_one_line_naming_a_free_port_that_then_serves():
    import socket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, out, err = serve_once(PORT=str(port))
    assert status != 0 and out == ""
    assert len(err) == 1, err
    assert err[0].startswith("make serve: port %d is in use; choose another with PORT=" % port)
    suggested = int(err[0].rsplit("PORT=", 1)[1])
    with running(["make", "-s", "serve"], cwd=ROOT, port=suggested,  # the advice, taken
                 env={"PATH": os.environ["PATH"], "PORT": str(suggested),
                      "PYTHONPATH": str(ROOT / "tests"), "HANDLER": "echo_handler.handler"}):
        assert echoed(suggested, "GET", "/")["rawPath"] == "/"


@pytest.mark.parametrize("port", ["abc", "70000", "-1"])
def test_a_port_that_is_not_a_number_is_one_line(port):
    status, out, err = serve_once(PORT=port)
    assert status != 0 and out == ""
    assert err == ["make serve: PORT=%s is not a port number (0 to 65535); e.g. PORT=3000"
                   % port]


BROKEN = {"QSTASH_CURRENT_SIGNING_KEY": "sig_short", "QSTASH_NEXT_SIGNING_KEY": NEXT,
          "SOKETI_NEXT_SECRET": "a-second-secret-of-20-characters", "QSTASH_CLOCK_TOLERANCE": "soon",
          "METRICS_NAMESPACE": "AWS/Mine"}


def test_every_configuration_problem_is_listed_at_start_and_requests_get_500():
    """All at once, not one per request; serve still serves, as the deployed function would."""
    from signed_webhooks.config import configuration_errors
    problems = configuration_errors(BROKEN)
    assert len(problems) == 4  # four variables break four rules (the oracle's own count)
    context, port = serve(BROKEN)
    with context as process:
        status, _, body = request(port, "POST", "/", b"{}")
        log = read_log(process)
    assert status == 500 and problems[0] in body.decode()
    listed = [line for line in log.splitlines() if line.startswith("serve:   - ")]
    assert listed == ["serve:   - " + problem for problem in problems]
    assert "sig_short" not in log and "Try" not in log


def test_published_dev_keys_set_by_hand_get_advice_that_serve_accepts():
    """The handler says "use your own key"; serve adds what it alone accepts, and does."""
    dev_keys = {"QSTASH_CURRENT_SIGNING_KEY": DEV_KEY,
                "QSTASH_NEXT_SIGNING_KEY": "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs"}
    context, port = serve(dev_keys)
    with context as process:
        status, _, body = request(port, "POST", "/", b"{}")
        log = read_log(process)
    assert status == 500 and "use your own key" in body.decode()
    advice = [line for line in log.splitlines() if "ALLOW_PUBLIC_DEV_KEYS=1" in line]
    assert len(advice) == 1 and "make create and make deploy refuse it" in advice[0]
    context, port = serve({**dev_keys, "ALLOW_PUBLIC_DEV_KEYS": "1"})  # the advice, taken
    with context as process:
        result = send("http://127.0.0.1:%d/" % port, "{}", key=DEV_KEY)
        log = read_log(process)
    assert result.returncode == 0, result.stdout
    assert "serve:   - " not in log
