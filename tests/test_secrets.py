"""Secrets stay secret: a few hundred requests of every outcome, each with its own keys,
secrets, tokens and bodies; none of them appears in any log line or response body."""
import base64
import json
import random
import string
import time

import pytest

import lambda_events as ev
import lambda_function
from lambda_function import NonRetryableError
from signer import sign_pusher, sign_qstash

PER_OUTCOME = 200
URL = "https://abc123.lambda-url.us-east-1.on.aws/hook"


def secret(rng, prefix="sig_"):
    return prefix + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(32))


def body(rng):
    return json.dumps({"card": secret(rng, "BODY-"), "note": "h\u00e9llo"}).encode()


def qstash(rng, key, payload, **sign):
    return ev.function_url(url=URL, body=payload, headers={
        "Upstash-Signature": sign_qstash(key, payload, sign.pop("url", URL), **sign),
        "Content-Type": rng.choice(["application/json", "application/octet-stream"]),
        "Upstash-Message-Id": "msg_1"})


def soketi(secret_, payload, when=None):
    data = {"time_ms": int((when or time.time()) * 1000), "events": [
        {"name": "client_event", "data": payload.decode()}]}
    raw = json.dumps(data).encode()
    return ev.function_url(url=URL, body=raw, headers={
        "X-Pusher-Signature": sign_pusher(secret_, raw), "Content-Type": "application/json"})


def raise_non_retryable(message):
    raise NonRetryableError("order not found")


def raise_error(message):
    raise ValueError("could not process this order")


OUTCOMES = {  # name: (expected status, build(rng, cur, nxt, soketi_secret, payload), handle)
    "accepted, current key": (200, lambda r, c, n, s, p: qstash(r, c, p), None),
    "accepted, next key": (200, lambda r, c, n, s, p: qstash(r, n, p), None),
    "accepted, soketi": (200, lambda r, c, n, s, p: soketi(s, p), None),
    "wrong key": (401, lambda r, c, n, s, p: qstash(r, secret(r), p), None),
    "expired": (401, lambda r, c, n, s, p: qstash(r, c, p, now=time.time() - 1000), None),
    "wrong url": (401, lambda r, c, n, s, p: qstash(r, c, p, url=URL + "/x"), None),
    "body altered": (401, lambda r, c, n, s, p: dict(qstash(r, c, p), body=base64.b64encode(
        p + b"!").decode(), isBase64Encoded=True), None),
    "unsigned": (401, lambda r, c, n, s, p: ev.function_url(url=URL, body=p), None),
    "soketi wrong secret": (401, lambda r, c, n, s, p: soketi(secret(r), p), None),
    "soketi stale": (401, lambda r, c, n, s, p: soketi(s, p, when=time.time() - 3600), None),
    "malformed": (400, lambda r, c, n, s, p: dict(qstash(r, c, p), body="%%%",
                                                  isBase64Encoded=True), None),
    "non-retryable": (489, lambda r, c, n, s, p: qstash(r, c, p), raise_non_retryable),
    "handler error": (500, lambda r, c, n, s, p: qstash(r, c, p), raise_error),
}


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_no_secret_token_or_body_in_logs_or_responses(outcome, monkeypatch, capsys):
    status, build, handle = OUTCOMES[outcome]
    if handle:
        monkeypatch.setattr(lambda_function, "handle", handle)
    rng = random.Random(outcome)
    for _ in range(PER_OUTCOME):
        cur, nxt, soketi_secret, payload = secret(rng), secret(rng), secret(rng, "app-"), body(rng)
        monkeypatch.setenv("QSTASH_CURRENT_SIGNING_KEY", cur)
        monkeypatch.setenv("QSTASH_NEXT_SIGNING_KEY", nxt)
        monkeypatch.setenv("SOKETI_SECRET", soketi_secret)
        event = build(rng, cur, nxt, soketi_secret, payload)
        capsys.readouterr()
        response = lambda_function.lambda_handler(event, None)
        seen = capsys.readouterr().out + json.dumps(response)
        assert response["statusCode"] == status, seen
        token = event["headers"].get("upstash-signature") or event["headers"].get(
            "x-pusher-signature")
        forbidden = [cur, nxt, soketi_secret, payload.decode(), json.loads(payload)["card"],
                     base64.b64encode(payload).decode()]
        if token:
            forbidden += [token] + [part for part in token.split(".") if len(part) > 16]
        for value in forbidden:
            assert value not in seen, (outcome, value[:20])


def test_missing_configuration_names_variables_not_values(monkeypatch, capsys):
    rng = random.Random(7)
    for _ in range(PER_OUTCOME):
        cur = secret(rng)
        monkeypatch.setenv("QSTASH_CURRENT_SIGNING_KEY", cur)
        monkeypatch.delenv("QSTASH_NEXT_SIGNING_KEY", raising=False)
        response = lambda_function.lambda_handler(qstash(rng, cur, body(rng)), None)
        seen = capsys.readouterr().out + json.dumps(response)
        assert response["statusCode"] == 500 and "QSTASH_NEXT_SIGNING_KEY" in seen
        assert cur not in seen
