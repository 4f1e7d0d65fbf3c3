"""lambda.zip in AWS's own runtime: the Runtime Interface Emulator running awslambdaric on
the handler string, exactly as Lambda loads it. Responses are read from the body, because
the emulator answers 200 even when a handler raises."""
import json

import jwt
import pytest

import lambda_events as ev
from peers import build_task, lambda_runtime, post
from signer import body_hash

KEYS = {"QSTASH_CURRENT_SIGNING_KEY": "sig_RuntimeCurrentKey0123456789ab",
        "QSTASH_NEXT_SIGNING_KEY": "sig_RuntimeNextKey0123456789abcdef"}
URL = "https://abc123.lambda-url.us-east-1.on.aws/jobs?tenant=7"


def pyjwt_event(body=b'{"job":42}', key=KEYS["QSTASH_NEXT_SIGNING_KEY"]):
    """A Function URL event whose token PyJWT minted just now (the next key, to prove
    rotation works inside the runtime too)."""
    import time
    now = int(time.time())
    token = jwt.encode({"aud": "", "body": body_hash(body), "exp": now + 300, "iat": now,
                        "iss": "Upstash", "jti": "jwt_runtime", "nbf": now, "sub": URL},
                       key, algorithm="HS256")
    return ev.function_url(url=URL, body=body, headers={
        "Upstash-Signature": token, "Content-Type": "application/json",
        "Upstash-Message-Id": "msg_runtime"})


def invoke(runtime, event):
    status, _, raw = post(runtime.url, json.dumps(event).encode())
    assert status == 200, raw
    response = json.loads(raw)
    assert "errorMessage" not in response, response  # the handler must never raise
    return response


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return build_task(tmp_path_factory.mktemp("runtime"))


@pytest.fixture(scope="module")
def runtime(task):
    with lambda_runtime(task, KEYS) as process:
        yield process


def test_fresh_signed_request_is_200_in_the_real_runtime(runtime):
    response = invoke(runtime, pyjwt_event())
    assert response["statusCode"] == 200, response
    assert json.loads(response["body"]) == {"ok": True, "source": "qstash",
                                            "messageId": "msg_runtime"}


def test_tampered_request_is_401_in_the_real_runtime(runtime):
    event = pyjwt_event()
    event["body"] = '{"job":43}'
    response = invoke(runtime, event)
    assert response["statusCode"] == 401
    assert json.loads(response["body"]) == {"error": "invalid signature"}


def test_unsigned_request_is_401_in_the_real_runtime(runtime):
    event = ev.function_url(url=URL, body=b"{}", headers={"Content-Type": "application/json"})
    assert invoke(runtime, event)["statusCode"] == 401


def test_malformed_event_is_400_in_the_real_runtime(runtime):
    assert invoke(runtime, "not an event")["statusCode"] == 400


def test_log_line_reaches_the_runtime_output(runtime):
    invoke(runtime, pyjwt_event())
    log = open(runtime.log.name).read()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith('{"outcome"')]
    assert any(line["outcome"] == "accepted" and line["request_id"] for line in lines)
    assert KEYS["QSTASH_CURRENT_SIGNING_KEY"] not in log and "sig_Runtime" not in log


def test_no_keys_configured_is_500_naming_the_variable(task):
    with lambda_runtime(task, {}) as runtime:
        response = invoke(runtime, pyjwt_event())
    assert response["statusCode"] == 500
    assert "QSTASH_CURRENT_SIGNING_KEY" in json.loads(response["body"])["error"]
