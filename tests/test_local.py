"""make serve over real HTTP: the Function URL events it builds, the responses it sends, the
real handler behind it, and make send against it."""
import base64
import http.client
import json
import os
import subprocess

import pytest

from conftest import KEY, NEXT, ROOT
from peers import free_port, read_log, running


def serve(env_vars):
    port = free_port()
    env = {"PATH": os.environ["PATH"], "PORT": str(port), "PYTHONPATH": str(ROOT / "tests"),
           **env_vars}
    return running(["make", "-s", "serve"], env=env, cwd=ROOT, port=port), port


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
    status, _, _ = request(echo.port, "GET", "/", headers=[("x-respond", "raise")])
    assert status == 502


def test_one_log_line_per_request(echo):
    before = len(read_log(echo).splitlines())
    for _ in range(3):
        request(echo.port, "GET", "/count")
    lines = read_log(echo).splitlines()[before:]
    assert len(lines) == 3 and all(json.loads(line)["path"] == "/count" for line in lines)


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


def test_unsigned_request_is_401_and_logged(real):
    status, _, body = request(real.port, "POST", "/", b"{}", [("Content-Type", "text/plain")])
    assert status == 401 and json.loads(body) == {"error": "invalid signature"}
    assert "no Upstash-Signature" in read_log(real).splitlines()[-1]


def test_without_keys_it_uses_the_dev_servers_public_keys_and_says_so():
    context, port = serve({})
    with context as process:
        url = "http://127.0.0.1:%d/" % port
        result = send(url, "{}", key="sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r")
        banner = read_log(process)
    assert result.returncode == 0, result.stdout
    assert "PUBLIC keys" in banner and "sig_7kYj" in banner
    assert "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r" not in banner  # fingerprints, not keys


@pytest.mark.parametrize("keys, status", [({}, 500), (
    {"QSTASH_CURRENT_SIGNING_KEY": "sig_SampleCurrentKeyForTheEventsFolder",
     "QSTASH_NEXT_SIGNING_KEY": "sig_SampleNextKeyForTheEventsFolder"}, 401)])
def test_make_invoke_prints_the_log_line_and_the_response(keys, status):
    result = subprocess.run(["make", "-s", "invoke", "EVENT=events/function-url.json"], cwd=ROOT,
                            capture_output=True, text=True,
                            env={"PATH": os.environ["PATH"], **keys})
    assert result.returncode == 0, result.stderr
    log, response = result.stdout.split("\n", 1)
    assert json.loads(log)["status"] == status
    assert json.loads(response)["statusCode"] == status


def test_make_invoke_without_an_event_says_how():
    result = subprocess.run(["make", "-s", "invoke"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0 and "usage: make invoke EVENT=" in result.stderr
