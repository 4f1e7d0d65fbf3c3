"""QStash callbacks and failure callbacks (message.callback), the delivery headers on Message,
and RetryLater (429 + Retry-After) through every door. The callback bodies are QStash's own
documented examples (tests/fixtures/qstash_callbacks.json names each source); the base64
fields are checked against Node's decoder and the official TypeScript SDK's decodeBase64."""
import base64
import datetime
import json
import os
import random
import shutil
import subprocess
import time

import pytest

import lambda_events as ev
import lambda_function
from conftest import APP_KEY, KEY, ROOT, SECRET, need
from lambda_function import RetryLater
from signed_webhooks.callbacks import Callback, parse_callback
from test_shapes import DOORS, URLS, assert_valid_response

T0 = 1_790_000_000
FIXTURES = json.loads((ROOT / "tests/fixtures/qstash_callbacks.json").read_text())
DOCUMENTED = FIXTURES["bodies"]
REAL_BODY_FIELDS = FIXTURES["real_body_fields"]

# Documented JSON field -> Callback attribute, for the fields kept as they are.
PLAIN_FIELDS = {"sourceMessageId": "source_message_id", "url": "url", "method": "method",
                "topicName": "topic_name", "endpointName": "endpoint_name",
                "scheduleId": "schedule_id", "callerIP": "caller_ip", "dlqId": "dlq_id"}
NUMBER_FIELDS = {"status": "status", "retried": "retried", "maxRetries": "max_retries",
                 "notBefore": "not_before", "createdAt": "created_at"}


def b64(raw):
    """Standard base64 with padding: Go's base64.StdEncoding, which QStash's JSON uses for
    bytes, and what every documented example shows (RFC 4648 section 4)."""
    return base64.b64encode(raw).decode("ascii")


def callback_body(response_body=b"ok", source_body=b'{"job":1}', **fields):
    """A callback body shaped like QStash's documented one; `fields` override or (None)
    remove members."""
    document = dict(DOCUMENTED[2]["body"])
    document["body"] = b64(response_body)
    document["sourceBody"] = b64(source_body)
    for name, value in fields.items():
        if value is None:
            document.pop(name, None)
        else:
            document[name] = value
    return json.dumps(document, ensure_ascii=False).encode()


@pytest.fixture(autouse=True)
def alb_destination(request, monkeypatch):
    """Behind an ALB the URL QStash signed is configured (QSTASH_DESTINATION_URL), never
    derived from the caller's Host header."""
    callspec = getattr(request.node, "callspec", None)
    door = callspec.params.get("door", "") if callspec else ""
    if door.startswith("alb"):
        monkeypatch.setenv("QSTASH_DESTINATION_URL", URLS[door])


def signed_event(door, body, extra_headers=None, message_id="msg_callback_delivery"):
    url = URLS[door]
    headers = ev.qstash_headers(KEY, body, url, now=T0, message_id=message_id)
    headers.update(extra_headers or {})
    return DOORS[door](url, headers, body)


@pytest.fixture(scope="module")
def node_decoder():
    """A long-lived view of how Node and the official SDK decode base64 text."""
    need(shutil.which("node") and shutil.which("npm"),
         "Node.js is required for the official SDK's decodeBase64 (the oracle)")
    from peers import npm_install
    node_dir = npm_install("qstash-js", ROOT / "tests/node/qstash-sdk/package.json")

    def decode(texts):
        lines = "".join(json.dumps(text) + "\n" for text in texts)
        env = {"NODE_PATH": str(node_dir / "node_modules"), "PATH": os.environ["PATH"]}
        out = subprocess.run([shutil.which("node"), str(ROOT / "tests/node/callback_decode.js")],
                             input=lines, capture_output=True, text=True, check=True,
                             timeout=120, env=env)
        answers = [json.loads(line) for line in out.stdout.split("\n") if line]  # not on U+2028
        assert len(answers) == len(texts), out.stderr[-2000:]
        return answers
    return decode


# --- The documented bodies --------------------------------------------------------------------

@pytest.mark.parametrize("example", DOCUMENTED, ids=lambda e: e["name"])
def test_documented_bodies_are_callbacks_with_every_field_in_python_form(example, node_decoder):
    document = dict(example["body"])
    response_body, source_body = node_decoder([document["body"], document["sourceBody"]])
    if source_body["atob"] is None:  # the docs' typo: refused by atob, so by us too
        assert parse_callback(json.dumps(document).encode()) is None
        document["sourceBody"] = document["body"]
        source_body = response_body
    callback = parse_callback(json.dumps(document).encode())
    assert isinstance(callback, Callback)
    for name, attribute in PLAIN_FIELDS.items():
        assert getattr(callback, attribute) == document.get(name)
    for name, attribute in NUMBER_FIELDS.items():  # digits in the docs, numbers in the SDK's
        assert getattr(callback, attribute) == int(document[name])
        assert type(getattr(callback, attribute)) is int
    assert callback.body.hex() == response_body["atob"]
    assert callback.source_body.hex() == source_body["atob"]
    assert callback.is_failure is example["failure"]
    assert callback.last_attempt is (document["retried"] == document["maxRetries"])


def test_headers_become_lowercased_lists_whether_sent_as_lists_or_strings():
    body = callback_body(header={"Content-Type": ["text/plain"], "Set-Cookie": ["a=1", "b=2"]},
                         sourceHeader={"Authorization": "Bearer x", "X-Many": ["1", "2"]})
    callback = parse_callback(body)
    assert callback.header == {"content-type": ["text/plain"], "set-cookie": ["a=1", "b=2"]}
    assert callback.source_header == {"authorization": ["Bearer x"], "x-many": ["1", "2"]}


def test_fields_qstash_leaves_out_or_sends_empty_are_none_or_zero():
    body = callback_body(retried=None, maxRetries=None, topicName="", endpointName=None,
                         scheduleId=None, callerIP=None, notBefore=None, createdAt=None,
                         dlqId="", header=None, sourceHeader=None, body=None, sourceBody=None)
    callback = parse_callback(body)
    assert (callback.retried, callback.max_retries) == (0, 0)  # retried: absent on a first try
    assert callback.topic_name is callback.endpoint_name is callback.schedule_id is None
    assert callback.caller_ip is callback.not_before is callback.created_at is None
    assert callback.dlq_id is None and not callback.is_failure
    assert (callback.header, callback.source_header) == ({}, {})
    assert (callback.body, callback.source_body) == (b"", b"")


@pytest.mark.parametrize("retried, max_retries, last", [(0, 3, False), (2, 3, False),
                                                         (3, 3, True), (0, 0, True)])
def test_last_attempt_is_retried_equal_to_max_retries(retried, max_retries, last):
    callback = parse_callback(callback_body(retried=retried, maxRetries=max_retries))
    assert callback.last_attempt is last


# --- Bodies: bytes, decoded once, whatever they hold ------------------------------------------

BODIES = {
    "empty": b"",
    "ascii json": b'{"ok":true}',
    "non-ascii text": "chinese华语 é ü 😀 \u2028".encode(),
    "binary": bytes(range(256)) * 3,
    "invalid utf-8": b"\xff\xfe\xc3(\xed\xa0\x80 \xf0\x9f\x98",
    "nul bytes": b"\x00" * 5,
    "one byte": b"\x01",
    "two bytes": b"\x01\x02",
}


@pytest.mark.parametrize("name", BODIES)
def test_response_and_source_bodies_are_the_exact_bytes(name):
    raw = BODIES[name]
    callback = parse_callback(callback_body(response_body=raw, source_body=raw[::-1]))
    assert callback.body == raw and type(callback.body) is bytes
    assert callback.source_body == raw[::-1]


@pytest.mark.parametrize("raw", [b"a", b"ab", b"abc", "é".encode(), b"\xff\xfe"])
def test_base64_without_padding_is_read_as_javascripts_atob_reads_it(raw):
    unpadded = b64(raw).rstrip("=")
    callback = parse_callback(callback_body(body=unpadded))
    assert callback.body == raw


def generated_bodies():
    """Bodies that break naive decoders: random bytes, random text across all planes, and
    the edges, each in QStash's padded form and with its padding dropped."""
    rng = random.Random(14)
    bodies = list(BODIES.values())
    bodies += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
               for _ in range(150)]
    bodies += ["".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0xa0, 0xd800),
                                       rng.randrange(0xe000, 0x110000)]))
                       for _ in range(rng.randrange(1, 80))).encode() for _ in range(150)]
    return bodies


def test_bodies_match_atob_and_the_official_sdks_text(node_decoder):
    bodies = generated_bodies()
    texts = [b64(raw) for raw in bodies] + [b64(raw).rstrip("=") for raw in bodies]
    answers = node_decoder(texts)
    garbled_by_naive_decoding = 0
    for text, answer in zip(texts, answers):
        callback = parse_callback(callback_body(body=text))
        assert callback.body.hex() == answer["atob"], text
        assert callback.body.decode("utf-8", "replace") == answer["sdk"], text
        garbled_by_naive_decoding += answer["latin1"] != answer["sdk"]
    assert garbled_by_naive_decoding > 100  # the naive reading differs: the test can fail


def base64_like_texts():
    """Strings near base64: its alphabet, `=` anywhere, whitespace, URL-safe characters,
    lengths of every remainder."""
    rng = random.Random(1414)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    odd = "=-_ \t\n\r\f\v.*"
    texts = []
    for _ in range(3000):
        text = [rng.choice(alphabet) for _ in range(rng.randrange(0, 14))]
        for _ in range(rng.choice([0, 0, 1, 2, 3])):
            text.insert(rng.randrange(len(text) + 1), rng.choice(odd))
        if rng.random() < 0.3:
            text += "=" * rng.randrange(1, 4)
        texts.append("".join(text))
    return texts


def test_base64_fields_are_accepted_exactly_when_atob_accepts_them(node_decoder):
    """Differential: our reader and JavaScript's atob (what the official SDK decodes with)
    agree on every near-base64 string, on acceptance and on the bytes."""
    texts = base64_like_texts()
    answers = node_decoder(texts)
    accepted = 0
    for text, answer in zip(texts, answers):
        callback = parse_callback(callback_body(body=text))
        if answer["atob"] is None:
            assert callback is None, text
        else:
            assert callback is not None and callback.body.hex() == answer["atob"], text
            accepted += 1
    assert 300 < accepted < len(texts) - 300  # both verdicts are exercised


@pytest.mark.parametrize("field", REAL_BODY_FIELDS, ids=lambda f: f["name"])
def test_the_real_non_ascii_callback_body_decodes_to_the_text_sent(field, node_decoder):
    callback = parse_callback(callback_body(body=field["base64"]))
    answer = node_decoder([field["base64"]])[0]
    assert callback.body.decode() == answer["sdk"] == "chinese华语"  # the text in the issue
    assert answer["latin1"] != answer["sdk"]  # the garbled text the reporter saw


# --- What is not a callback -------------------------------------------------------------------

LOOK_ALIKES = {
    "only the key": b'{"sourceMessageId": "msg_1", "order": 42}',
    "key and url": b'{"sourceMessageId": "msg_1", "url": "https://a.example/", "status": 200}',
    "no method": callback_body(method=None),
    "no url": callback_body(url=None),
    "no status": callback_body(status=None),
    "status a float": callback_body(status=200.0),
    "status a bool": callback_body(status=True),
    "status out of range": callback_body(status=1000),
    "retried a word": callback_body(retried="two"),
    "createdAt a date": callback_body(createdAt="2023-11-28T19:07:27Z"),
    "url not a string": callback_body(url=["https://a.example/"]),
    "header not an object": callback_body(header=["content-type"]),
    "header values numbers": callback_body(header={"x": [1]}),
    "body plain text": callback_body(body="hello world!?"),
    "body url-safe base64": callback_body(body=base64.urlsafe_b64encode(b"\xfb\xff\xbf").decode()),
    "body base64 with a vertical tab (not whitespace to atob)": callback_body(body="YW\u000bJj"),
    "body base64 misplaced padding": callback_body(body="YQ=="[:3]),
    "body base64 one char over": callback_body(body="YWJjZ"),
    "body non-ascii": callback_body(body="YWJj\u00e9"),
    "body a number": callback_body(body=12),
    "a list": b'[{"sourceMessageId": "msg_1"}]',
    "not json": b'sourceMessageId "msg_1"',
    "empty": b"",
}


@pytest.mark.parametrize("name", LOOK_ALIKES)
def test_a_body_without_the_callback_shape_is_an_ordinary_message(name):
    assert parse_callback(LOOK_ALIKES[name]) is None


def test_the_shape_check_rejects_the_look_alikes_because_of_the_broken_field():
    """Each look-alike built from a real callback becomes one again with that field
    restored: the rejection is about the field, not about the whole body."""
    assert parse_callback(callback_body()) is not None
    assert parse_callback(callback_body(body=b64(b"\xfb\xff\xbf"))) is not None


# --- End to end through lambda_handler --------------------------------------------------------

@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("kind", ["callback", "failure callback"])
def test_signed_callback_reaches_handle_as_message_callback(door, kind, qstash_env, clock, call,
                                                           received):
    clock(T0 + 1)
    raw = "chinese华语".encode() + bytes(range(256))
    extra = {"dlqId": "1725323658779-0", "retried": 3} if kind == "failure callback" else {}
    body = callback_body(response_body=raw, source_body=b"\x00\xff binary", **extra)
    response, log = call(signed_event(door, body))
    assert response["statusCode"] == 200 and log["outcome"] == "accepted"
    callback = received[0].callback
    assert callback.body == raw and callback.source_body == b"\x00\xff binary"
    assert callback.is_failure is (kind == "failure callback")
    assert callback.last_attempt is (kind == "failure callback")
    assert received[0].json["sourceMessageId"] == callback.source_message_id


@pytest.mark.parametrize("door", DOORS)
def test_ordinary_messages_have_no_callback(door, qstash_env, clock, call, received):
    clock(T0 + 1)
    for body in (b'{"job":1}', LOOK_ALIKES["key and url"], b"", os.urandom(500)):
        received.clear()
        response, _ = call(signed_event(door, body))
        assert response["statusCode"] == 200
        assert received[0].callback is None


def test_a_forged_callback_never_reaches_handle(qstash_env, clock, call, received):
    clock(T0 + 1)
    event = signed_event("function-url", callback_body())
    event["body"] = callback_body(status=200, dlqId="1-0").decode()  # altered after signing
    response, log = call(event)
    assert response["statusCode"] == 401 and "body hash" in log["reason"]
    assert received == []


def test_soketi_messages_have_no_callback_and_no_forwarded_headers(soketi_env, call, received):
    payload = {"time_ms": int(time.time() * 1000), "events": [
        {"name": "channel_occupied", "channel": "sourceMessageId"}]}
    body = json.dumps(payload, separators=(",", ":")).encode()
    event = ev.function_url(headers=ev.soketi_headers(APP_KEY, SECRET, body), body=body)
    response, _ = call(event)
    assert response["statusCode"] == 200
    assert received[0].callback is None and received[0].forwarded_headers == {}


# --- Delivery headers on Message --------------------------------------------------------------

QSTASH_SET = {"Upstash-Topic-Name": "orders", "Upstash-Caller-Ip": "178.247.74.179",
              "Upstash-Schedule-Id": "scd_1", "Upstash-Region": "EU-CENTRAL-1",
              "Upstash-Retried": "1"}
FORWARDED = {"X-Tenant": "acme", "Authorization": "Bearer user-token", "My-Header": "my-value"}


@pytest.mark.parametrize("door", DOORS)
def test_message_carries_topic_caller_ip_and_the_forwarded_headers(door, qstash_env, clock,
                                                                  call, received):
    clock(T0 + 1)
    aws_added = {"X-Forwarded-For": "178.247.74.179", "X-Forwarded-Port": "443",
                 "X-Amzn-Trace-Id": "Root=1-abc", "Via": "1.1 x.cloudfront.net (CloudFront)",
                 "CloudFront-Is-Desktop-Viewer": "true", "X-Amz-Cf-Id": "cf-id",
                 "Accept-Encoding": "gzip"}
    response, _ = call(signed_event(door, b'{"job":1}', {**QSTASH_SET, **FORWARDED, **aws_added}))
    assert response["statusCode"] == 200
    message = received[0]
    assert message.topic_name == "orders" and message.caller_ip == "178.247.74.179"
    assert message.forwarded_headers == {name.lower(): value for name, value in FORWARDED.items()}


def test_absent_delivery_headers_are_none(qstash_env, clock, call, received):
    clock(T0 + 1)
    call(signed_event("function-url", b"{}"))
    message = received[0]
    assert message.topic_name is None and message.caller_ip is None
    assert message.forwarded_headers == {}


# --- RetryLater -------------------------------------------------------------------------------

@pytest.mark.parametrize("given, seconds", [
    (30, 30), (0, 0), (86400, 86400), (86401, 86400), (10 ** 400, 86400), (-5, 0),
    (-10 ** 400, 0), (0.2, 1), (29.01, 30), (86399.5, 86400), (float("inf"), 86400),
    (float("-inf"), 0), ("12", 12), (" 7.5 ", 8), ("1e999", 86400),
    (datetime.timedelta(minutes=2, milliseconds=1), 121),
    (float("nan"), None), ("nan", None), ("6m5s", None), ("", None), (None, None),
    (True, None), ([30], None),
])
def test_retry_later_seconds_are_whole_rounded_up_and_clamped(given, seconds):
    assert RetryLater(given, "why").seconds == seconds


@pytest.mark.parametrize("door", DOORS)
def test_retry_later_is_429_with_retry_after_in_every_door(door, qstash_env, monkeypatch, clock,
                                                          call):
    def busy(message):
        raise RetryLater(90.5, "upstream rate limit")
    monkeypatch.setattr(lambda_function, "handle", busy)
    clock(T0 + 1)
    event = signed_event(door, b'{"job":1}')
    response, log = call(event)
    assert_valid_response(event, response)
    headers = response.get("headers") or {k: v[0] for k, v in response["multiValueHeaders"].items()}
    assert response["statusCode"] == 429 and headers["Retry-After"] == "91"
    assert json.loads(response["body"]) == {"error": "upstream rate limit", "retryAfter": 91}
    assert log["outcome"] == "deferred" and log["status"] == 429
    assert "upstream rate limit" in log["reason"]
    if door.startswith("alb"):
        assert response["statusDescription"] == "429 Too Many Requests"


def test_retry_later_without_a_usable_delay_leaves_qstash_its_default_backoff(
        qstash_env, monkeypatch, clock, call):
    def busy(message):
        raise RetryLater(float("nan"), "unknown")
    monkeypatch.setattr(lambda_function, "handle", busy)
    clock(T0 + 1)
    response, log = call(signed_event("function-url", b"{}"))
    assert response["statusCode"] == 429 and "Retry-After" not in response["headers"]
    assert log["outcome"] == "deferred"


def test_retry_later_zero_means_retry_now(qstash_env, monkeypatch, clock, call):
    def busy(message):
        raise RetryLater(-3, "lock released")
    monkeypatch.setattr(lambda_function, "handle", busy)
    clock(T0 + 1)
    response, _ = call(signed_event("rest", b"{}"))
    assert response["headers"]["Retry-After"] == "0"



# --- Decided by the signed body alone, from the one parse message.json shares ----------------

UNSIGNED_HEADER_SETS = {
    "none": {},
    "message id equal to sourceMessageId": {"Upstash-Message-Id": "SOURCE"},
    "another message id": {"Upstash-Message-Id": "msg_someOtherMessage"},
    "workflow's callback marker": {
        "Upstash-Workflow-Callback": "true", "Upstash-Message-Id": "SOURCE"},
}


@pytest.mark.parametrize("headers", UNSIGNED_HEADER_SETS.values(), ids=UNSIGNED_HEADER_SETS)
@pytest.mark.parametrize("signed", ["callback", "ordinary"])
def test_no_unsigned_header_changes_whether_a_delivery_is_a_callback(signed, headers, qstash_env,
                                                                     clock, call, received):
    """Anyone can replay a signed delivery with other headers: whatever they are, a signed
    callback body is a callback and any other body is not. Upstash-Message-Id equal to the
    body's sourceMessageId used to switch a callback off."""
    clock(T0 + 1)
    source = "msg_26hZCxZCuWyyTWPmSVBrNC1RADwpgWQc"
    body = callback_body(sourceMessageId=source) if signed == "callback" else \
        json.dumps({"sourceMessageId": source, "order": 42}).encode()
    extra = {name: source if value == "SOURCE" else value for name, value in headers.items()}
    response, log = call(signed_event("function-url", body, extra,
                                      message_id=extra.get("Upstash-Message-Id")))
    assert response["statusCode"] == 200, log
    callback = received[0].callback
    if signed == "callback":
        assert callback is not None and callback.source_message_id == source
    else:
        assert callback is None


ORDERS = {
    "json": ["json"], "callback": ["callback"], "json, then callback": ["json", "callback"],
    "callback, then json": ["callback", "json"],
    "each twice": ["callback", "json", "json", "callback"],
}
BODY_KINDS = {
    "a callback": callback_body(),
    "a failure callback": callback_body(dlqId="1725323658779-0"),
    "JSON with the key, not the shape": b'{"sourceMessageId": "msg_1", "order": 42}',
    "JSON without the key": b'{"order": 42}',
    "not JSON, with the key": b'"sourceMessageId" but not JSON',
    "not JSON": b"plain text, not JSON",
    "empty": b"",
}


@pytest.fixture
def body_parses(monkeypatch):
    """parses(body): how many times the standard library's JSON decoder has read the text of
    `body` (a UTF-8 body: json.loads hands the decoder its text), however it was called."""
    import json.decoder
    counts = {}
    raw_decode = json.decoder.JSONDecoder.raw_decode

    def counting(self, text, *args, **kwargs):
        counts[text] = counts.get(text, 0) + 1
        return raw_decode(self, text, *args, **kwargs)
    monkeypatch.setattr(json.decoder.JSONDecoder, "raw_decode", counting)
    return lambda body: counts.get(body.decode(), 0)


@pytest.mark.parametrize("order", ORDERS.values(), ids=ORDERS)
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_the_body_is_parsed_at_most_once_whichever_is_read_first(kind, order, qstash_env,
                                                                 monkeypatch, clock, call,
                                                                 body_parses):
    """message.json and message.callback share one parse of the signed body (a 6.3 MB body
    parsed twice doubles its peak), made on first use; message.callback alone parses
    nothing when the body cannot be a callback (QStash writes `"sourceMessageId"` as is)."""
    body = BODY_KINDS[kind]
    answers = {}

    def handle(message):
        for name in order:
            answers.setdefault(name, []).append(getattr(message, name))
        return {"ok": True}
    monkeypatch.setattr(lambda_function, "handle", handle)
    clock(T0 + 1)
    response, log = call(signed_event("function-url", body))
    assert response["statusCode"] == 200, log
    expected = 1
    if order == ["callback"] and b'"sourceMessageId"' not in body:
        expected = 0
    assert body_parses(body) == expected
    for name, values in answers.items():  # every read gives the same object
        assert all(value is values[0] for value in values), name
    if "callback" in answers:
        assert (answers["callback"][0] is not None) is kind.endswith("callback")


@pytest.mark.parametrize("order", [["json", "callback"], ["callback", "json"]],
                         ids=["json first", "callback first"])
def test_message_json_and_message_callback_hold_the_same_parsed_values(order, qstash_env,
                                                                       monkeypatch, clock,
                                                                       call):
    """One parse, shared: the callback's strings are the very objects message.json holds."""
    seen = {}

    def handle(message):
        for name in order:
            seen[name] = getattr(message, name)
        return {"ok": True}
    monkeypatch.setattr(lambda_function, "handle", handle)
    clock(T0 + 1)
    source = "msg_26hZCxZCuWyyTWPmSVBrNC1RADwpgWQc"
    response, _ = call(signed_event("function-url", callback_body(sourceMessageId=source)))
    assert response["statusCode"] == 200
    assert seen["callback"].source_message_id == source
    assert seen["callback"].source_message_id is seen["json"]["sourceMessageId"]
    assert seen["callback"].url is seen["json"]["url"]


def test_the_callback_is_the_signed_body_even_after_handle_changed_message_json(
        qstash_env, monkeypatch, clock, call):
    """message.json is handle's to change; message.callback still says what was signed."""
    seen = {}

    def handle(message):
        document = message.json
        document["status"] = "not a status"
        document["sourceMessageId"] = "msg_changedByHandle"
        del document["url"]
        seen["callback"] = message.callback
        return {"ok": True}
    monkeypatch.setattr(lambda_function, "handle", handle)
    clock(T0 + 1)
    body = callback_body(sourceMessageId="msg_signed")
    response, _ = call(signed_event("function-url", body))
    assert response["statusCode"] == 200
    callback = seen["callback"]
    assert callback is not None and callback.source_message_id == "msg_signed"
    assert callback.status == json.loads(body)["status"] and callback.url
