"""lambda_handler end to end for Function URL events: real tokens with the clock pinned,
configuration, response codes, what the business logic receives, and the log line."""
import base64
import json
import os

import pytest

import lambda_events as ev
import lambda_function
from conftest import KEY, NEXT, SIGNED_VECTORS
from lambda_function import NonRetryableError

URL = "https://abc123.lambda-url.us-east-1.on.aws/jobs"
T0 = 1_790_000_000


def qstash_request(body=b'{"job":1}', url=URL, key=KEY, now=T0, headers=None, **kw):
    all_headers = {**ev.qstash_headers(key, body, url, now=now, **kw), **(headers or {})}
    return ev.function_url(url=url, headers=all_headers, body=body, now=now)


def vector_event(v):
    return ev.function_url(url=v["url"], body=(v["body"] or "").encode(), headers={
        "Upstash-Signature": v["token"], "Content-Type": "text/plain",
        "Upstash-Message-Id": "msg_vector"})


# --- Real QStash tokens through the handler -----------------------------------------------

@pytest.mark.parametrize("v", SIGNED_VECTORS, ids=lambda v: v["name"])
@pytest.mark.parametrize("order", ["current signed", "next signed"])
def test_real_tokens_pass_the_handler(v, order, monkeypatch, clock, call):
    keys = (v["current_signing_key"], v["next_signing_key"])
    if order == "next signed":
        keys = keys[::-1]  # the console's current key is now wrong; next must carry it
    monkeypatch.setenv("QSTASH_CURRENT_SIGNING_KEY", keys[0])
    monkeypatch.setenv("QSTASH_NEXT_SIGNING_KEY", keys[1])
    clock(v["claims"]["iat"] + 10)
    response, log = call(vector_event(v))
    assert response["statusCode"] == 200, log
    assert json.loads(response["body"]) == {"ok": True, "source": "qstash",
                                            "messageId": "msg_vector"}
    assert log["outcome"] == "accepted" and log["message_id"] == "msg_vector"


@pytest.mark.parametrize("v", SIGNED_VECTORS[:2], ids=lambda v: v["name"])
def test_real_token_today_is_401_expired_not_signature_mismatch(v, monkeypatch, call):
    monkeypatch.setenv("QSTASH_CURRENT_SIGNING_KEY", v["next_signing_key"])
    monkeypatch.setenv("QSTASH_NEXT_SIGNING_KEY", v["current_signing_key"])
    response, log = call(vector_event(v))
    assert response["statusCode"] == 401 and "expired" in log["reason"]
    assert json.loads(response["body"]) == {"error": "invalid signature"}


# --- Bodies --------------------------------------------------------------------------------

def test_binary_body_arrives_base64_and_reaches_handle_as_the_same_bytes(
        qstash_env, clock, call, received):
    clock(T0 + 1)
    body = os.urandom(4096)
    event = qstash_request(body=body, headers={"Content-Type": "application/octet-stream"})
    assert event["isBase64Encoded"] is True
    response, _ = call(event)
    assert response["statusCode"] == 200
    assert received[0].body == body and received[0].json is None


def test_empty_body_has_no_body_key_and_is_still_hash_checked(qstash_env, clock, call):
    clock(T0 + 1)
    event = qstash_request(body=b"")
    assert "body" not in event
    assert call(event)[0]["statusCode"] == 200
    event["body"] = "smuggled"
    response, log = call(event)
    assert response["statusCode"] == 401 and "body hash" in log["reason"]


def test_undecodable_base64_body_is_400(qstash_env, clock, call, received):
    clock(T0 + 1)
    event = qstash_request()
    event["body"], event["isBase64Encoded"] = "not base64!!", True
    response, log = call(event)
    assert response["statusCode"] == 400 and "base64" in log["reason"]
    assert not received


# --- Configuration -------------------------------------------------------------------------

def test_no_keys_at_all_is_500_naming_the_variable(call, received):
    response, log = call(qstash_request())
    assert response["statusCode"] == 500
    assert "QSTASH_CURRENT_SIGNING_KEY" in json.loads(response["body"])["error"]
    assert "QSTASH_CURRENT_SIGNING_KEY" in log["reason"] and not received


@pytest.mark.parametrize("present, missing", [
    ("QSTASH_CURRENT_SIGNING_KEY", "QSTASH_NEXT_SIGNING_KEY"),
    ("QSTASH_NEXT_SIGNING_KEY", "QSTASH_CURRENT_SIGNING_KEY")])
def test_half_a_key_pair_is_500_naming_the_missing_one(present, missing, monkeypatch, clock,
                                                       call):
    monkeypatch.setenv(present, KEY)
    clock(T0 + 1)
    response, log = call(qstash_request())
    assert response["statusCode"] == 500 and missing in response["body"]


def test_empty_variable_counts_as_missing(monkeypatch, call):
    monkeypatch.setenv("QSTASH_CURRENT_SIGNING_KEY", "")
    monkeypatch.setenv("QSTASH_NEXT_SIGNING_KEY", "")
    assert call(qstash_request())[0]["statusCode"] == 500


def test_unsigned_request_is_401(qstash_env, call, received):
    event = ev.function_url(url=URL, body=b"{}", headers={"Content-Type": "application/json"})
    response, log = call(event)
    assert response["statusCode"] == 401 and "no Upstash-Signature" in log["reason"]
    assert not received


def test_warm_container_picks_up_rotated_keys(monkeypatch, clock, call):
    clock(T0 + 1)
    monkeypatch.setenv("QSTASH_CURRENT_SIGNING_KEY", KEY)
    monkeypatch.setenv("QSTASH_NEXT_SIGNING_KEY", NEXT)
    assert call(qstash_request(key=KEY))[0]["statusCode"] == 200
    monkeypatch.setenv("QSTASH_CURRENT_SIGNING_KEY", NEXT)  # the console's "roll"
    monkeypatch.setenv("QSTASH_NEXT_SIGNING_KEY", "sig_BrandNewNextKey0123456789")
    assert call(qstash_request(key=NEXT))[0]["statusCode"] == 200
    assert call(qstash_request(key=KEY))[0]["statusCode"] == 401


def test_region_keys_are_used_for_that_region(qstash_env, monkeypatch, clock, call):
    clock(T0 + 1)
    monkeypatch.setenv("US_EAST_1_QSTASH_CURRENT_SIGNING_KEY", "sig_UsEast1CurrentKey0123456")
    monkeypatch.setenv("US_EAST_1_QSTASH_NEXT_SIGNING_KEY", "sig_UsEast1NextKey0123456789")
    region = {"Upstash-Region": "US-EAST-1"}
    signed_by_region = qstash_request(key="sig_UsEast1NextKey0123456789", headers=region)
    assert call(signed_by_region)[0]["statusCode"] == 200
    assert call(qstash_request(key=KEY, headers=region))[0]["statusCode"] == 401
    eu = {"Upstash-Region": "EU-CENTRAL-1"}  # no EU keys: the plain pair applies
    assert call(qstash_request(key=KEY, headers=eu))[0]["statusCode"] == 200
    assert call(qstash_request(key=KEY))[0]["statusCode"] == 200


def test_half_a_region_pair_is_500_naming_the_missing_one(qstash_env, monkeypatch, call):
    monkeypatch.setenv("EU_CENTRAL_1_QSTASH_CURRENT_SIGNING_KEY", "sig_EuCentral1CurrentKey012")
    response, _ = call(qstash_request(headers={"Upstash-Region": "EU-CENTRAL-1"}))
    assert response["statusCode"] == 500
    assert "EU_CENTRAL_1_QSTASH_NEXT_SIGNING_KEY" in response["body"]


@pytest.mark.parametrize("region", ["../X", "US EAST", "", "\u00e9u-1", "QSTASH"])
def test_odd_region_headers_fall_back_to_the_plain_keys(region, qstash_env, clock, call):
    clock(T0 + 1)
    assert call(qstash_request(headers={"Upstash-Region": region}))[0]["statusCode"] == 200


def test_destination_url_wins_over_the_derived_url(qstash_env, monkeypatch, clock, call):
    """Behind a custom domain the Lambda sees its own domain; the token names the public one."""
    clock(T0 + 1)
    public = "https://hooks.example.com/qstash"
    event = qstash_request(url=public)
    event["requestContext"]["domainName"] = "abc123.lambda-url.us-east-1.on.aws"
    event["rawPath"] = "/"
    response, log = call(event)
    assert response["statusCode"] == 401
    assert public in log["reason"] and "abc123.lambda-url" in log["reason"]
    monkeypatch.setenv("QSTASH_URL", public)  # Upstash's name for its API base: ignored
    assert call(event)[0]["statusCode"] == 401
    monkeypatch.setenv("QSTASH_DESTINATION_URL", public)
    assert call(event)[0]["statusCode"] == 200


def test_derived_url_includes_the_query_string(qstash_env, clock, call):
    clock(T0 + 1)
    assert call(qstash_request(url=URL + "?tenant=7&x=a%20b"))[0]["statusCode"] == 200
    event = qstash_request(url=URL + "?tenant=7")
    event["rawQueryString"] = "tenant=8"
    assert call(event)[0]["statusCode"] == 401


def test_clock_tolerance_setting(qstash_env, monkeypatch, clock, call):
    clock(T0 + 300 + 20)  # 20 s past exp
    assert call(qstash_request())[0]["statusCode"] == 401
    monkeypatch.setenv("QSTASH_CLOCK_TOLERANCE", "30")
    assert call(qstash_request())[0]["statusCode"] == 200


@pytest.mark.parametrize("value", ["abc", "-1", "nan", "inf", "1e9"])
def test_bad_clock_tolerance_is_500_naming_it(value, qstash_env, monkeypatch, call):
    monkeypatch.setenv("QSTASH_CLOCK_TOLERANCE", value)
    response, _ = call(qstash_request())
    assert response["statusCode"] == 500 and "QSTASH_CLOCK_TOLERANCE" in response["body"]


# --- Business logic outcomes ---------------------------------------------------------------

def test_non_retryable_error_is_489_with_the_qstash_header(qstash_env, monkeypatch, clock,
                                                            call):
    def poison(message):
        raise NonRetryableError("order 42 does not exist")
    monkeypatch.setattr(lambda_function, "handle", poison)
    clock(T0 + 1)
    response, log = call(qstash_request())
    assert response["statusCode"] == 489
    assert response["headers"]["Upstash-NonRetryable-Error"] == "true"
    assert json.loads(response["body"]) == {"error": "order 42 does not exist"}
    assert log["outcome"] == "dropped"


def test_exception_in_handle_is_500_and_logged_without_detail_to_the_caller(
        qstash_env, monkeypatch, clock, call):
    def broken(message):
        raise KeyError("customer")
    monkeypatch.setattr(lambda_function, "handle", broken)
    clock(T0 + 1)
    response, log = call(qstash_request())
    assert response["statusCode"] == 500
    assert json.loads(response["body"]) == {"error": "internal error"}
    assert log["outcome"] == "error" and "KeyError" in log["reason"]


def test_return_value_of_handle_is_the_200_json_body(qstash_env, monkeypatch, clock, call):
    monkeypatch.setattr(lambda_function, "handle", lambda m: {"n": m.json["job"], "t": m.text})
    clock(T0 + 1)
    response, _ = call(qstash_request())
    assert response["statusCode"] == 200
    assert response["headers"]["content-type"] == "application/json"
    assert json.loads(response["body"]) == {"n": 1, "t": '{"job":1}'}


def test_message_carries_qstash_headers_and_verified_claims(qstash_env, clock, call, received):
    clock(T0 + 1)
    event = qstash_request(headers={"Upstash-Retried": "2", "Upstash-Schedule-Id": "scd_1",
                                    "Upstash-Region": "EU-CENTRAL-1",
                                    "Upstash-Message-Id": "msg_abc"})
    call(event)
    m = received[0]
    assert (m.source, m.message_id, m.retried, m.schedule_id, m.region) == (
        "qstash", "msg_abc", 2, "scd_1", "EU-CENTRAL-1")
    assert m.claims["sub"] == URL and m.claims["iss"] == "Upstash"
    assert m.json == {"job": 1} and m.body == b'{"job":1}' and m.events == []
    assert m.headers["user-agent"] == "Upstash-QStash"  # lowercased names


# --- The log line --------------------------------------------------------------------------

def test_one_json_log_line_with_the_operational_fields(qstash_env, clock, call):
    clock(T0 + 1)

    class Context:
        aws_request_id = "req-123"
    _, log = call(qstash_request(headers={"Upstash-Retried": "3",
                                          "Upstash-Message-Id": "msg_1"}), Context())
    assert {"outcome", "status", "reason", "message_id", "retried", "ms", "shape", "source",
            "request_id"} <= set(log)
    assert (log["status"], log["retried"], log["message_id"], log["request_id"]) == (
        200, 3, "msg_1", "req-123")
    assert isinstance(log["ms"], float)


def test_log_and_response_hold_no_key_token_or_body(qstash_env, clock, capsys):
    clock(T0 + 1)
    body = b'{"card":"4242-SECRET-BODY"}'
    outputs = []
    for event in (qstash_request(body=body), qstash_request(body=body, key="sig_Wrong"),
                  qstash_request(body=body, now=T0 - 999)):
        token = event["headers"]["upstash-signature"]
        response = lambda_function.lambda_handler(event, None)
        outputs.append((capsys.readouterr().out + json.dumps(response), token))
    for text, token in outputs:
        for secret in (KEY, NEXT, token, token.split(".")[2], "4242-SECRET-BODY",
                       base64.b64encode(body).decode()):
            assert secret not in text
