"""Exactly-once `handle` with DEDUP_TABLE (issue 13), against two independent DynamoDB
implementations started here on loopback: moto_server and dynalite. Every behaviour runs on
both. Round trips are counted by a proxy in front of the peer, not by our own client.

Requests to moto go through the proxy one at a time: moto's threaded server does not make a
conditional write atomic. The races and the soak run on dynalite, whose writes are."""
import json
import os
import time
import subprocess
import sys
import uuid

import pytest

import dynamo
import lambda_events as ev
import lambda_function as lf
from signed_webhooks import dynamodb
from signed_webhooks.config import DEDUP_TTL
from signed_webhooks.node_json import node_json
from conftest import KEY, NEXT, ROOT, SECRET, need
from signer import sign_pusher

URL = "https://hooks.example.com/dedup"
DUMMY = dynamo.DUMMY_CREDENTIALS


class Context:
    """Lambda's context object: a request id and the time left before Lambda stops us."""

    def __init__(self, remaining_ms=30000):
        self.aws_request_id = str(uuid.uuid4())
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self):
        return self.remaining_ms


@pytest.fixture(scope="module", params=["moto", "dynalite"])
def peer(request):
    """A running peer with the table, behind a counting proxy."""
    with getattr(dynamo, request.param)() as process:
        dynamo.create_table(process.endpoint)
        proxy = dynamo.Proxy(process.endpoint, serialize=request.param == "moto")
        proxy.name, proxy.direct = request.param, process.endpoint
        yield proxy
        proxy.close()


@pytest.fixture
def dedup_env(peer, monkeypatch):
    """The handler configured for QStash and soketi, deduplicating in the peer's table."""
    for name, value in {**DUMMY, "AWS_ENDPOINT_URL": peer.endpoint, "DEDUP_TABLE": "dedup",
                        "QSTASH_CURRENT_SIGNING_KEY": KEY, "QSTASH_NEXT_SIGNING_KEY": NEXT,
                        "QSTASH_URL": URL, "QSTASH_DESTINATION_URL": URL,
                        "SOKETI_SECRET": SECRET}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL_DYNAMODB", "AWS_SESSION_TOKEN", "DEDUP_TTL"):
        monkeypatch.delenv(name, raising=False)
    peer.reset()
    return peer


@pytest.fixture
def effects(monkeypatch):
    """handle replaced by one that counts its effects per message (in this list, a store of
    its own) and behaves as the body asks: {"fail": "raise"|"nonretryable", "during": fn}."""
    applied = Effects()
    behaviours = applied.behaviours

    def handle(message):
        key = message.message_id or message.source
        behaviour = behaviours.get(key, {})
        if "during" in behaviour:
            behaviour["during"]()
        if behaviour.get("fail") == "raise":
            raise RuntimeError("handle failed on purpose")
        if behaviour.get("fail") == "nonretryable":
            raise lf.NonRetryableError("never valid")
        applied.append(key)
        return {"applied": key, "big": "x" * behaviour.get("big", 0)}
    monkeypatch.setattr(lf, "handle", handle)
    return applied


class Effects(list):
    """The effects applied, in order; `behaviours` says how handle acts per message id."""

    def __init__(self):
        super().__init__()
        self.behaviours = {}


def delivery(message_id, body=b'{"job":1}', now=None):
    """A fresh QStash delivery of `message_id` (a new token each time, as a retry has)."""
    headers = ev.qstash_headers(KEY, body, URL, now=now, message_id=message_id)
    return ev.function_url(url=URL, headers=headers, body=body, now=now)


def replay(event, forged_message_id):
    """The same token and body again, under a message id of the replayer's choosing."""
    copy = json.loads(json.dumps(event))
    copy["headers"]["upstash-message-id"] = forged_message_id
    return copy


def deliver(call, event, context=None):
    response, log = call(event, context or Context())
    return response["statusCode"], response, log


@pytest.fixture
def nested(capsys):
    """Run lambda_handler when handle itself triggers other deliveries: (response, the outer
    invocation's log line); the inner ones log first."""
    def run(event, context=None):
        capsys.readouterr()
        response = lf.lambda_handler(event, context or Context())
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        return response["statusCode"], response, lines[-1]
    return run


def new_id():
    return "msg_" + uuid.uuid4().hex


def duplicate_cost(peer, new_message_cost):
    """Requests a duplicate costs: dynalite ignores ReturnValuesOnConditionCheckFailure, so a
    failed condition there costs one GetItem more."""
    return new_message_cost + (1 if peer.name == "dynalite" else 0)


# --- Off by default ------------------------------------------------------------------------

def test_without_dedup_table_nothing_network_is_imported():
    code = ("import sys, lambda_function as lf\n"
            "import lambda_events as ev\n"
            "h = ev.qstash_headers('sig_CurrentKeyForImportTest1', b'{}', 'https://x.example/')\n"
            "lf.lambda_handler(ev.function_url(url='https://x.example/', headers=h, body=b'{}'),"
            " None)\n"
            "print(sorted(m for m in ('urllib.request', 'ssl', 'http.client', 'socket')"
            " if m in sys.modules))\n")
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": "%s:%s/tools" % (ROOT, ROOT),
           "QSTASH_CURRENT_SIGNING_KEY": "sig_CurrentKeyForImportTest1",
           "QSTASH_NEXT_SIGNING_KEY": "sig_NextKeyForImportTest22"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.splitlines()[-1] == "[]", out.stdout
    assert '"status": 200' in out.stdout and '"dedup": null' in out.stdout


# --- The protocol, on both peers ------------------------------------------------------------

def test_new_message_runs_handle_once_and_retries_get_the_first_answer(dedup_env, call, effects):
    message_id = new_id()
    status, first, log = deliver(call, delivery(message_id))
    assert status == 200 and log["dedup"] == "new" and log["outcome"] == "accepted"
    assert dedup_env.total() == 3, dedup_env.counts  # PutItem token, PutItem message, Update
    record = dynamo.item(dedup_env.direct, "qstash:message:" + message_id)
    assert record["state"] == "completed" and record["status"] == 200
    assert record["expires_at"] >= time.time() + DEDUP_TTL - 60
    for retry in range(3):  # QStash's retries: a new token each, the same message id
        dedup_env.reset()
        status, again, log = deliver(call, delivery(message_id))
        assert status == 200 and again["body"] == first["body"]
        assert log["dedup"] == "duplicate" and log["outcome"] == "duplicate"
        assert dedup_env.total() == duplicate_cost(dedup_env, 2), dedup_env.counts
    assert effects == [message_id]


def test_a_489_is_stored_and_a_duplicate_gets_489_again(dedup_env, call, effects):
    message_id = new_id()
    effects.behaviours[message_id] = {"fail": "nonretryable"}
    status, first, log = deliver(call, delivery(message_id))
    assert status == 489 and log["dedup"] == "new"
    status, again, log = deliver(call, delivery(message_id))
    assert status == 489 and again["headers"]["Upstash-NonRetryable-Error"] == "true"
    assert again["body"] == first["body"] and log["dedup"] == "duplicate"


def test_handle_raising_releases_the_record_so_the_retry_runs_it(dedup_env, call, effects):
    message_id = new_id()
    effects.behaviours[message_id] = {"fail": "raise"}
    status, _, log = deliver(call, delivery(message_id))
    assert status == 500 and log["dedup"] == "new" and "handle raised" in log["reason"]
    assert dynamo.item(dedup_env.direct, "qstash:message:" + message_id) is None
    effects.behaviours[message_id] = {}
    status, _, log = deliver(call, delivery(message_id))
    assert status == 200 and log["dedup"] == "new"
    assert effects == [message_id]


def test_a_duplicate_while_in_progress_is_409_with_the_lease_left(
        dedup_env, call, nested, effects):
    message_id, inner = new_id(), []
    effects.behaviours[message_id] = {"during": lambda: inner.append(
        lf.lambda_handler(delivery(message_id), Context(remaining_ms=20000)))}
    status, _, log = nested(delivery(message_id), Context(remaining_ms=8000))
    assert status == 200 and effects == [message_id]
    assert inner[0]["statusCode"] == 409
    assert 8 <= int(inner[0]["headers"]["Retry-After"]) <= 9  # lease: 8 s + 1 s margin
    status, _, log = deliver(call, delivery(message_id))
    assert status == 200 and log["dedup"] == "duplicate" and effects == [message_id]


def test_a_409_is_logged_as_deferred(dedup_env, effects, capsys):
    message_id, captured = new_id(), []
    effects.behaviours[message_id] = {"during": lambda: captured.append(
        lf.lambda_handler(delivery(message_id), Context()))}
    capsys.readouterr()
    lf.lambda_handler(delivery(message_id), Context())
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(x["status"], x["outcome"], x["dedup"]) for x in lines] == [
        (409, "deferred", "in_progress"), (200, "accepted", "new")]


def test_after_the_lease_a_delivery_takes_over(dedup_env, nested, effects, monkeypatch):
    """The first delivery's process stops (as a Lambda timeout would): the next delivery
    past its lease runs handle; the first one's late completion is refused and logged."""
    message_id, inner, now = new_id(), [], time.time()

    def later_delivery():  # the clock moves past the 2 s lease (1 s + 1 s margin)
        monkeypatch.setattr(time, "time", lambda: now + 2.5)
        effects.behaviours[message_id] = {}
        inner.append(lf.lambda_handler(delivery(message_id, now=now + 2.5), Context()))
    effects.behaviours[message_id] = {"during": later_delivery}
    monkeypatch.setattr(time, "time", lambda: now)
    status, _, log = nested(delivery(message_id, now=now), Context(remaining_ms=1000))
    assert inner[0]["statusCode"] == 200
    assert status == 200 and "completion not recorded" in log["reason"]
    record = dynamo.item(dedup_env.direct, "qstash:message:" + message_id)
    assert record["state"] == "completed"
    assert effects == [message_id, message_id]  # the first ran past its lease: Lambda stops that


def test_a_record_past_expires_at_counts_as_absent(dedup_env, call, effects, monkeypatch):
    message_id, now = new_id(), time.time()
    monkeypatch.setenv("DEDUP_TTL", "3600")
    assert deliver(call, delivery(message_id))[0] == 200
    monkeypatch.setattr(time, "time", lambda: now + 3601)
    status, _, log = deliver(call, delivery(message_id, now=now + 3601))
    assert status == 200 and log["dedup"] == "new" and effects == [message_id, message_id]


def test_a_replayed_token_never_runs_handle_nor_writes_its_message_id(dedup_env, call, effects):
    message_id, forged = new_id(), new_id()
    event = delivery(message_id)
    status, first, _ = deliver(call, event)
    assert status == 200
    dedup_env.reset()
    status, again, log = deliver(call, replay(event, forged))
    assert status == 200 and again["body"] == first["body"]
    assert log["dedup"] == "replay" and log["outcome"] == "duplicate"
    assert dedup_env.counts.get("UpdateItem", 0) == dedup_env.counts.get("DeleteItem", 0) == 0
    assert dedup_env.total() == duplicate_cost(dedup_env, 2), dedup_env.counts
    assert dynamo.item(dedup_env.direct, "qstash:message:" + forged) is None
    status, _, log = deliver(call, replay(event, message_id))  # the same token, same id
    assert status == 200 and log["dedup"] == "replay"
    # the real message with the forged id arrives later: it is not suppressed
    status, _, log = deliver(call, delivery(forged))
    assert status == 200 and log["dedup"] == "new"
    assert effects == [message_id, forged]


def test_a_replay_while_the_first_is_in_progress_is_409(dedup_env, nested, effects):
    message_id, inner = new_id(), []
    event = delivery(message_id)
    effects.behaviours[message_id] = {"during": lambda: inner.append(
        lf.lambda_handler(replay(event, new_id()), Context()))}
    assert nested(event)[0] == 200
    assert inner[0]["statusCode"] == 409 and effects == [message_id]


def test_a_replay_of_a_token_whose_handle_failed_does_not_run_it(dedup_env, call, effects):
    message_id = new_id()
    effects.behaviours[message_id] = {"fail": "raise"}
    event = delivery(message_id)
    assert deliver(call, event)[0] == 500
    effects.behaviours[message_id] = {}
    status, _, log = deliver(call, replay(event, message_id))
    assert status == 409 and log["dedup"] == "replay" and log["outcome"] == "deferred"
    assert effects == []
    assert deliver(call, delivery(message_id))[0] == 200 and effects == [message_id]


def test_soketi_webhooks_are_deduplicated_on_their_signature(dedup_env, call, effects):
    body = json.dumps({"time_ms": int(time.time() * 1000),
                       "events": [{"name": "channel_occupied", "channel": new_id()}]}).encode()
    headers = {"X-Pusher-Key": "k", "X-Pusher-Signature": sign_pusher(SECRET, body),
               "Content-Type": "application/json"}
    event = ev.function_url(url=URL, headers=headers, body=body)
    status, first, log = deliver(call, event)
    assert status == 200 and log["dedup"] == "new" and dedup_env.total() == 2
    dedup_env.reset()
    status, again, log = deliver(call, event)  # Lambda's own retry of an async invoke
    assert status == 200 and again["body"] == first["body"] and log["dedup"] == "duplicate"
    assert dedup_env.total() == duplicate_cost(dedup_env, 1)
    invoke = {"payload": json.loads(body), "headers": {
        "X-Pusher-Signature": sign_pusher(SECRET, node_json(json.loads(body)))}}
    assert deliver(call, invoke)[0] == 200
    assert deliver(call, invoke)[2]["dedup"] == "duplicate"
    assert effects == ["soketi", "soketi"]  # the HTTP webhook once, the direct invocation once


def test_bodies_over_64_kb_are_replaced_by_a_note(dedup_env, call, effects):
    message_id = new_id()
    effects.behaviours[message_id] = {"big": 70 * 1024}
    status, first, _ = deliver(call, delivery(message_id))
    assert status == 200 and len(first["body"]) > 70 * 1024
    status, again, _ = deliver(call, delivery(message_id))
    assert status == 200 and "over 64 KB" in json.loads(again["body"])["note"]


# --- The store failing ----------------------------------------------------------------------

@pytest.mark.parametrize("breakage", ["no such table", "nothing listening", "no credentials"])
def test_an_unusable_store_is_503_and_handle_is_not_called(
        breakage, dedup_env, call, effects, monkeypatch):
    if breakage == "no such table":
        monkeypatch.setenv("DEDUP_TABLE", "no-such-table")
    elif breakage == "nothing listening":
        monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:%d" % dynamo.free_port())
    else:
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    status, response, log = deliver(call, delivery(new_id()))
    assert status == 503 and response["headers"]["Retry-After"] == "30"
    assert log["dedup"] == "store_error" and log["outcome"] == "deferred"
    assert effects == [] and "handle not called" in log["reason"]
    assert DUMMY["AWS_SECRET_ACCESS_KEY"] not in json.dumps(log)


def test_injected_store_faults_never_double_an_effect(dedup_env, call, effects, monkeypatch):
    """Throttling, 500s, connections dropped before and after the write is applied. QStash
    retries until a 2xx, waiting what Retry-After says (on a simulated clock)."""
    faulty = dynamo.Proxy(dedup_env.direct, serialize=True, fault_rate=0.3, seed=5)
    monkeypatch.setenv("AWS_ENDPOINT_URL", faulty.endpoint)
    clock = [time.time()]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    answers = {}
    try:
        for message_id in [new_id() for _ in range(30)]:
            for attempt in range(40):
                status, response, _ = deliver(call, delivery(message_id, now=clock[0]),
                                              Context(remaining_ms=2000))
                answers[status] = answers.get(status, 0) + 1
                if status == 200:
                    break
                clock[0] += int(response["headers"].get("Retry-After", 1))
            assert status == 200
    finally:
        faulty.close()
    assert sorted(effects) == sorted(set(effects)) and len(effects) == 30
    assert all(faulty.faults.values()), faulty.faults
    assert set(answers) <= {200, 409, 503} and 503 in answers, answers


def test_configuration_errors_are_500_naming_the_variable(dedup_env, call, effects, monkeypatch):
    monkeypatch.setenv("DEDUP_TTL", "soon")
    status, response, _ = deliver(call, delivery(new_id()))
    assert status == 500 and "DEDUP_TTL" in response["body"] and effects == []
    monkeypatch.setenv("DEDUP_TTL", "86400")
    monkeypatch.setenv("DEDUP_TABLE", "a b")
    status, response, _ = deliver(call, delivery(new_id()))
    assert status == 500 and "DEDUP_TABLE" in response["body"] and effects == []


def test_a_token_without_jti_is_refused(dedup_env, call, effects):
    body = b"{}"
    headers = ev.qstash_headers(KEY, body, URL, claims={"jti": None})
    status, _, log = deliver(call, ev.function_url(url=URL, headers=headers, body=body))
    assert status == 400 and "jti" in log["reason"] and effects == []


# --- The transport -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (openssl), to trust through SSL_CERT_FILE."""
    import shutil
    need(shutil.which("openssl"), "openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return str(cert), str(key)


@pytest.mark.parametrize("trusted", [True, False])
def test_https_endpoints_are_verified(trusted, certificate, dedup_env, call, effects,
                                      monkeypatch):
    tls = dynamo.Proxy(dedup_env.direct, serialize=True, tls=certificate)
    monkeypatch.setenv("AWS_ENDPOINT_URL", tls.endpoint)
    monkeypatch.setattr(dynamodb, "_tls", [])  # the next request builds its ssl context anew
    if trusted:
        monkeypatch.setenv("SSL_CERT_FILE", certificate[0])
    else:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    message_id = new_id()
    try:
        status, _, log = deliver(call, delivery(message_id))
        if trusted:
            assert status == 200 and log["dedup"] == "new"
            assert deliver(call, delivery(message_id))[2]["dedup"] == "duplicate"
        else:
            assert status == 503 and "SSLCertVerificationError" in log["reason"]
            assert effects == []
    finally:
        tls.close()


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_answers_in_chunks_or_until_close_are_read(framing, dedup_env, call, effects,
                                                    monkeypatch):
    framed = dynamo.Proxy(dedup_env.direct, serialize=True, framing=framing)
    monkeypatch.setenv("AWS_ENDPOINT_URL", framed.endpoint)
    message_id = new_id()
    try:
        assert deliver(call, delivery(message_id))[2]["dedup"] == "new"
        assert deliver(call, delivery(message_id))[2]["dedup"] == "duplicate"
    finally:
        framed.close()
    assert effects == [message_id] and framed.total() >= 5
