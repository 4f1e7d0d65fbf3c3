"""Every door into the Lambda: each event shape normalizes to the same request, and each gets
a response in its own valid shape. Malformed events are a 400 with a reason, never a raise."""
import json
import os

import pytest

import lambda_events as ev
from conftest import APP_KEY, KEY, NEXT, SECRET

T0 = 1_790_000_000
REST_KEYS = {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"}


def assert_valid_response(event, response):
    """The shape each integration accepts (anything else is a 502 from API Gateway or ALB)."""
    assert isinstance(response["statusCode"], int) and isinstance(response["body"], str)
    assert isinstance(response["isBase64Encoded"], bool)
    json.loads(response["body"])
    if "httpMethod" in event and "elb" not in event.get("requestContext", {}):
        assert set(response) <= REST_KEYS
    if "elb" in event.get("requestContext", {}):
        assert response["statusDescription"].startswith(str(response["statusCode"]) + " ")
        if "multiValueHeaders" in event:
            assert "headers" not in response
            assert all(isinstance(v, list) for v in response["multiValueHeaders"].values())
    headers = response.get("headers") or {k: v[0] for k, v in response["multiValueHeaders"].items()}
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())


def qstash_headers(url, body, **kw):
    return ev.qstash_headers(KEY, body, url, now=T0, **kw)


DOORS = {
    "function-url": lambda url, h, b: ev.function_url(url=url, headers=h, body=b, now=T0),
    "http-api-stage": lambda url, h, b: ev.function_url(url=url, headers=h, body=b, now=T0),
    "rest": lambda url, h, b: ev.rest(url=url, headers=h, body=b, now=T0),
    "alb": lambda url, h, b: ev.alb(url=url, headers=h, body=b),
    "alb-multi": lambda url, h, b: ev.alb(url=url, headers=h, body=b, multi_value=True),
}
URLS = {
    "function-url": "https://abc123.lambda-url.us-east-1.on.aws/hook?x=1",
    "http-api-stage": "https://api456.execute-api.eu-west-1.amazonaws.com/prod/hooks/q?x=1",
    "rest": "https://api789.execute-api.us-east-1.amazonaws.com/prod/hooks/q?x=a%20b&y=/&z=%C3%A9",
    "alb": "https://hooks.example.com/hooks/q?x=a%20b",
    "alb-multi": "https://hooks.example.com/hooks/q?x=1&x=2",
}


@pytest.fixture
def destination_for(monkeypatch):
    """destination_for(door, url): behind an ALB, the Host header is the caller's, so QStash
    requests are checked against QSTASH_DESTINATION_URL only (issue 12)."""
    def set_for(door, url):
        if door.startswith("alb"):
            monkeypatch.setenv("QSTASH_DESTINATION_URL", url)
    return set_for


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("body", [b'{"a":1}', b"", "binary"])
def test_signed_request_through_every_door(door, body, qstash_env, destination_for, clock, call,
                                           received):
    clock(T0 + 1)
    url = URLS[door]
    destination_for(door, url)
    binary, body = body == "binary", os.urandom(3000) if body == "binary" else body
    headers = qstash_headers(url, body)
    if binary:
        headers["Content-Type"] = "application/octet-stream"
    event = DOORS[door](url, headers, body)
    response, log = call(event)
    assert response["statusCode"] == 200, log
    assert_valid_response(event, response)
    assert received[0].body == body
    assert received[0].headers["upstash-message-id"].startswith("msg_")


@pytest.mark.parametrize("door", DOORS)
def test_rejections_have_each_doors_shape_too(door, qstash_env, destination_for, call):
    url = URLS[door]
    destination_for(door, url)
    event = DOORS[door](url, qstash_headers(url, b"x"), b"y")
    response, log = call(event)
    assert response["statusCode"] == 401
    assert_valid_response(event, response)


def test_rest_url_uses_the_stage_path_not_the_resource_path(qstash_env, clock, call):
    clock(T0 + 1)
    url = URLS["rest"]
    event = DOORS["rest"](url, qstash_headers(url, b"{}"), b"{}")
    assert event["path"] == "/hooks/q" and event["requestContext"]["path"] == "/prod/hooks/q"
    assert call(event)[0]["statusCode"] == 200


@pytest.mark.parametrize("spelled", ["next=%2Fhome", "next=/home"])
def test_rest_query_is_compared_decoded_however_it_was_spelled(spelled, qstash_env, clock,
                                                               call):
    """REST events carry decoded parameters: %2F and / arrive alike, so the query is compared
    as decoded name/value pairs, and either spelling the publisher chose passes."""
    clock(T0 + 1)
    url = "https://api789.execute-api.us-east-1.amazonaws.com/prod/hooks/q?" + spelled
    event = ev.rest(url=url, headers=qstash_headers(url, b"{}"), body=b"{}", now=T0)
    assert event["queryStringParameters"] == {"next": "/home"}
    assert call(event)[0]["statusCode"] == 200


def test_rest_body_null_and_mixed_case_headers(qstash_env, clock, call):
    clock(T0 + 1)
    url = URLS["rest"]
    headers = {k.upper(): v for k, v in qstash_headers(url, b"").items()}
    event = ev.rest(url=url, headers=headers, body=b"", now=T0)
    assert event["body"] is None and "UPSTASH-SIGNATURE" in event["headers"]
    del event["multiValueHeaders"]  # some integrations send only `headers`
    assert call(event)[0]["statusCode"] == 200


def test_repeated_headers_are_joined_with_commas(qstash_env, clock, call, received):
    clock(T0 + 1)
    url = URLS["rest"]
    pairs = list(qstash_headers(url, b"{}").items()) + [("X-Trace", "a"), ("x-trace", "b")]
    assert call(ev.rest(url=url, headers=pairs, body=b"{}", now=T0))[0]["statusCode"] == 200
    assert received[0].headers["x-trace"] == "a,b"
    url = URLS["function-url"]
    pairs = list(qstash_headers(url, b"{}").items()) + [("X-Trace", "a"), ("X-Trace", "b")]
    assert call(ev.function_url(url=url, headers=pairs, body=b"{}", now=T0))[0]["statusCode"] == 200
    assert received[1].headers["x-trace"] == "a,b"


@pytest.mark.parametrize("door", ["rest", "alb-multi", "function-url"])
def test_two_signature_headers_fail_closed(door, qstash_env, destination_for, clock, call):
    clock(T0 + 1)
    url = URLS[door]
    destination_for(door, url)
    good = qstash_headers(url, b"{}")
    pairs = list(good.items()) + [("upstash-signature", good["Upstash-Signature"])]
    response, log = call(DOORS[door](url, pairs, b"{}"))
    assert response["statusCode"] == 401


def test_header_names_differing_only_in_case_are_one_header(qstash_env, destination_for, clock,
                                                           call):
    clock(T0 + 1)
    url = URLS["alb"]
    destination_for("alb", url)
    event = DOORS["alb"](url, qstash_headers(url, b"{}"), b"{}")
    event["headers"]["UPSTASH-SIGNATURE"] = event["headers"]["upstash-signature"]
    assert call(event)[0]["statusCode"] == 401


def test_http_api_stage_is_part_of_the_url(qstash_env, clock, call):
    clock(T0 + 1)
    url = URLS["http-api-stage"]
    event = DOORS["http-api-stage"](url, qstash_headers(url, b"{}"), b"{}")
    assert event["rawPath"].startswith("/prod/")
    assert call(event)[0]["statusCode"] == 200
    event["rawPath"] = event["rawPath"][len("/prod"):]
    assert call(event)[0]["statusCode"] == 401


@pytest.mark.parametrize("event", [
    None, 42, "text", [], [{"version": "2.0"}], {}, {"foo": "bar"}, {"version": "2.0"},
    {"version": "2.0", "requestContext": {"domainName": "x"}},
    {"version": "2.0", "requestContext": 7, "rawPath": "/"},
    {"version": "2.0", "requestContext": {"domainName": "x"}, "rawPath": "/", "headers": []},
    {"version": "2.0", "requestContext": {"domainName": "x"}, "rawPath": "/",
     "headers": {"a": 1}},
    {"version": "2.0", "requestContext": {"domainName": "x"}, "rawPath": 5, "headers": {}},
    {"version": "2.0", "requestContext": {"domainName": "x"}, "rawPath": "/", "body": 5},
    {"version": "2.0", "requestContext": {"domainName": "x"}, "rawPath": "/", "body": "%%",
     "isBase64Encoded": True},
    {"version": "2.0", "requestContext": {"domainName": "x"}, "rawPath": "/", "body": "\ud800"},
    {"httpMethod": "POST"}, {"httpMethod": "POST", "requestContext": {"domainName": "x"}},
    {"httpMethod": "POST", "requestContext": {"domainName": "x", "path": "/"},
     "multiValueQueryStringParameters": {"a": [1]}},
    {"httpMethod": "POST", "requestContext": {"elb": {}}},
    {"httpMethod": "POST", "requestContext": {"elb": {}}, "path": "/", "headers": {}},
    {"payload": "x", "headers": {}}, {"payload": {}, "headers": "x"},
    {"payload": {"a": [[[[]]]]}, "headers": {"X-Pusher-Signature": 5}},
])
def test_malformed_events_are_answered_not_raised(event, qstash_env, soketi_env, call, received):
    response, log = call(event)
    assert response["statusCode"] in (400, 401), log
    assert log["reason"] and not received


def test_deeply_nested_soketi_payload_is_a_400(soketi_env, call):
    payload = []
    for _ in range(100000):
        payload = [payload]
    response, log = call({"payload": {"events": payload}, "headers": {}})
    assert response["statusCode"] == 400 and "nested deeper than" in log["reason"]


# --- Routing --------------------------------------------------------------------------------

def qstash_event():
    url = URLS["function-url"]
    return ev.function_url(url=url, headers=qstash_headers(url, b"{}"), body=b"{}", now=T0)


def soketi_event():
    body = json.dumps({"time_ms": T0 * 1000, "events": []}).encode()
    return ev.function_url(headers=ev.soketi_headers(APP_KEY, SECRET, body), body=body)


def unsigned_event():
    return ev.function_url(headers={"content-type": "application/json"}, body=b"{}")


@pytest.mark.parametrize("configured, request_kind, status, reason", [
    ("qstash", "qstash", 200, None),
    ("qstash", "soketi", 401, "SOKETI_SECRET is not configured"),
    ("qstash", "unsigned", 401, "no Upstash-Signature or X-Pusher-Signature"),
    ("soketi", "qstash", 401, "no QStash keys are configured"),
    ("soketi", "soketi", 200, None),
    ("soketi", "unsigned", 401, "no Upstash-Signature or X-Pusher-Signature"),
    ("both", "qstash", 200, None),
    ("both", "soketi", 200, None),
    ("both", "unsigned", 401, "no Upstash-Signature or X-Pusher-Signature"),
    ("none", "qstash", 500, "QSTASH_CURRENT_SIGNING_KEY is not set"),
    ("none", "soketi", 500, "QSTASH_CURRENT_SIGNING_KEY is not set"),
    ("none", "unsigned", 500, "QSTASH_CURRENT_SIGNING_KEY is not set"),
])
def test_routing_matrix(configured, request_kind, status, reason, monkeypatch, clock, call):
    """The README's matrix: which provider checks a request, and what is refused."""
    clock(T0 + 1)
    if configured in ("qstash", "both"):
        monkeypatch.setenv("QSTASH_CURRENT_SIGNING_KEY", KEY)
        monkeypatch.setenv("QSTASH_NEXT_SIGNING_KEY", NEXT)
    if configured in ("soketi", "both"):
        monkeypatch.setenv("SOKETI_SECRET", SECRET)
    event = {"qstash": qstash_event, "soketi": soketi_event, "unsigned": unsigned_event}[
        request_kind]()
    response, log = call(event)
    assert response["statusCode"] == status, log
    assert reason is None or reason in log["reason"]
    assert log["source"] == (request_kind if status == 200 else None)


def test_both_signature_headers_are_checked_as_qstash(qstash_env, soketi_env, clock, call):
    clock(T0 + 1)
    event = qstash_event()
    event["headers"]["x-pusher-signature"] = "0" * 64
    response, log = call(event)
    assert response["statusCode"] == 200 and log["source"] == "qstash"
    event["headers"]["upstash-signature"] = "x.y.z"
    assert call(event)[0]["statusCode"] == 401


# --- What each malformed event is told, exactly ----------------------------------------------

HTTP_CONTEXT = {"http": {"method": "POST"}}
UNKNOWN_SHAPE = "unknown event shape: not a Function URL, API Gateway, ALB or soketi event"


@pytest.mark.parametrize("event, reason", [
    (None, "event is a NoneType, not a JSON object"),
    (42, "event is a int, not a JSON object"),
    ([], "event is a list, not a JSON object"),
    ({}, UNKNOWN_SHAPE),
    ({"payload": {}}, UNKNOWN_SHAPE),  # soketi's trigger has headers beside its payload
    ({"version": "2.0", "requestContext": 7, "rawPath": "/"}, UNKNOWN_SHAPE),
    ({"requestContext": {}}, UNKNOWN_SHAPE),  # neither payload 2.0, nor ALB, nor REST
    ({"version": "2.0", "requestContext": HTTP_CONTEXT, "rawPath": "/", "body": {"a": 1}},
     "body is a dict, not a string"),
    ({"version": "2.0", "requestContext": HTTP_CONTEXT, "rawPath": "/", "body": "x",
      "isBase64Encoded": "true"}, "isBase64Encoded is 'true', not true or false"),
    ({"version": "2.0", "requestContext": HTTP_CONTEXT, "rawPath": "/", "body": "eA=!=",
      "isBase64Encoded": True}, "body is not valid base64 (isBase64Encoded) or UTF-8"),
    ({"version": "2.0", "requestContext": HTTP_CONTEXT, "rawPath": "/", "body": "e A==",
      "isBase64Encoded": True}, "body is not valid base64 (isBase64Encoded) or UTF-8"),
])
def test_a_malformed_event_is_a_400_that_says_what_is_wrong(event, reason, qstash_env, call,
                                                            received):
    """Each is answered 400, logged with its shape ("unknown" when it has none) and the
    precise reason: base64 is decoded strictly (a character outside the alphabet is refused,
    not skipped)."""
    from signed_webhooks.events import event_shape
    response, log = call(event)
    assert (response["statusCode"], log["reason"]) == (400, reason)
    assert log["shape"] == event_shape(event)
    assert log["shape"] == ("http" if isinstance(event, dict) and "rawPath" in event
                            and isinstance(event["requestContext"], dict) else "unknown")
    assert not received


def test_read_request_finds_the_shape_itself_when_not_given():
    """read_request(event) reads the shape from the event (the pipeline passes the one it
    logged; tools and tests call it alone)."""
    from signed_webhooks.events import read_request
    url = URLS["function-url"]
    assert read_request(DOORS["function-url"](url, {}, b"{}")).shape == "http"
    assert read_request(DOORS["rest"](url, {}, b"{}")).shape == "rest"
    assert read_request(DOORS["alb-multi"](url, {}, b"{}")).shape == "alb-multi"
    soketi = read_request({"payload": {"events": []}, "headers": {}})
    assert (soketi.shape, soketi.body) == ("soketi-invoke", b'{"events":[]}')


def test_an_event_without_a_domain_name_has_no_url_and_uses_the_configured_one(
        qstash_env, clock, call, received, monkeypatch):
    """A payload 2.0 event without requestContext.domainName (a test console's, a direct
    invocation's) says no URL: the token is checked against QSTASH_DESTINATION_URL, and
    without it the request is refused naming the variable."""
    url = URLS["function-url"]
    clock(T0)
    event = DOORS["function-url"](url, qstash_headers(url, b"{}"), b"{}")
    del event["requestContext"]["domainName"]
    response, log = call(event)
    assert response["statusCode"] != 200 and "QSTASH_DESTINATION_URL" in log["reason"], log
    monkeypatch.setenv("QSTASH_DESTINATION_URL", url)
    response, log = call(event)
    assert response["statusCode"] == 200 and len(received) == 1, log


@pytest.mark.parametrize("door", DOORS)
def test_every_response_says_its_body_is_text(door, qstash_env, destination_for, clock, call):
    """isBase64Encoded is false in every answer, accepted or not: the body is JSON text, and
    an integration told otherwise would decode it as base64."""
    url = URLS[door]
    destination_for(door, url)
    clock(T0)
    for headers in (qstash_headers(url, b"{}"), {}):
        response, _ = call(DOORS[door](url, headers, b"{}"))
        assert response["isBase64Encoded"] is False


NAMED_STATUSES = [200, 400, 401, 403, 404, 409, 410, 413, 422, 429, 500, 501, 502, 503, 504]


@pytest.mark.parametrize("status", NAMED_STATUSES + [418, 451, 499, 599])
def test_an_alb_answer_carries_the_status_line_http_gives_it(status):
    """ALB's statusDescription: the receiver's statuses and those handle's answers commonly
    use get their reason phrase as Python's http module (the oracle) names it, or by the name
    RFC 7231 gave it where RFC 9110 renamed it (http follows RFC 9110 from Python 3.13);
    another 4xx or 5xx gets a generic phrase; 489 is QStash's own."""
    import http
    from signed_webhooks.events import respond
    phrases = {"Client Error" if status < 500 else "Server Error"}
    if status in NAMED_STATUSES:
        phrases = {http.HTTPStatus(status).phrase, *RFC_7231_NAMES.get(status, ())}
    for shape in ("alb", "alb-multi"):
        line = respond(shape, status, {}, "{}")["statusDescription"]
        assert line in {"%d %s" % (status, phrase) for phrase in phrases}
    assert respond("alb", 489, {}, "{}")["statusDescription"] == "489 Non-Retryable Error"


RFC_7231_NAMES = {413: ["Payload Too Large"], 422: ["Unprocessable Entity"]}
