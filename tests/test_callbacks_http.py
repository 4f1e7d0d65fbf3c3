"""RetryLater and callbacks over real HTTP: make serve (which answers as a Function URL does)
runs the real handler with tests/callback_handler.py as `handle`, and a plain HTTP client
signs and sends. Kept apart from test_callbacks.py, which also runs on Pyodide (no
processes there)."""
import base64
import json

import pytest

import lambda_events as ev
from conftest import KEY, NEXT
from test_callbacks import callback_body
from test_local import request, serve


@pytest.fixture(scope="module")
def served():
    context, port = serve({"HANDLER": "callback_handler.handler",
                           "QSTASH_CURRENT_SIGNING_KEY": KEY,
                           "QSTASH_NEXT_SIGNING_KEY": NEXT})
    with context as process:
        process.port = port
        yield process


def post_signed(port, body, extra_headers=()):
    url = "http://127.0.0.1:%d/callbacks" % port
    headers = ev.qstash_headers(KEY, body, url)
    return request(port, "POST", "/callbacks", body,
                   headers=[("Host", "127.0.0.1:%d" % port), *headers.items(), *extra_headers])


def test_retry_after_reaches_a_real_http_client(served):
    status, headers, body = post_signed(served.port, b'{"wait": 42.2}')
    assert status == 429 and dict(headers)["Retry-After"] == "43"
    assert json.loads(body)["retryAfter"] == 43


def test_a_callback_over_real_http_reaches_handle_decoded(served):
    raw = "chinese华语".encode() + bytes(range(256))
    body = callback_body(response_body=raw, dlqId="1725323658779-0", retried=3)
    status, _, answer = post_signed(served.port, body, [
        ("X-Tenant", "acme"), ("Upstash-Topic-Name", "orders"),
        ("Upstash-Caller-Ip", "178.247.74.179")])
    assert status == 200, answer
    answer = json.loads(answer)
    assert base64.b64decode(answer["body"]) == raw
    assert answer["failure"] is True and answer["status"] == 200
    assert answer["forwarded"] == {"x-tenant": "acme"}
    assert (answer["topic"], answer["caller_ip"]) == ("orders", "178.247.74.179")
