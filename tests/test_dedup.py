"""Exactly-once `handle` with DEDUP_TABLE (issue 13), against two independent DynamoDB
implementations started here on loopback: moto_server and dynalite. Every behaviour runs on
both. Round trips are counted by a proxy in front of the peer, not by our own client.

Requests to moto go through the proxy one at a time: moto's threaded server does not make a
conditional write atomic. The races and the soak run on dynalite, whose writes are. Store
faults are the proxy's too, scripted request by request (tests/dynamo.py): answers lost after
the write was applied, trickled, garbled, or followed by forged ones."""
import base64
import hashlib
import json
import math
import os
import re
import time
import subprocess
import sys
import uuid

import pytest

import dynamo
import lambda_events as ev
import lambda_function as lf
from signed_webhooks import dedup, dynamodb, transport
from signed_webhooks.answers import Answer
from signed_webhooks.config import configuration_errors
from signed_webhooks.dedup_config import DEDUP_TTL, DedupSettings
from signed_webhooks.events import Request
from signed_webhooks.message import Message
from signed_webhooks.node_json import node_json
from signed_webhooks.pusher import verify_pusher
from signed_webhooks.qstash import verify
from signed_webhooks.store import ConditionFailedError
from conftest import KEY, NEXT, ROOT, SECRET, self_signed_certificate
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


class LiveContext(Context):
    """A context whose time left runs down, as Lambda's does. Lambda kills an invocation
    that has not answered by `ends_at`: `answered_in_time()` tells whether it would have."""

    def __init__(self, remaining_ms):
        super().__init__(remaining_ms)
        self.ends_at = time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self):
        return max(0, int((self.ends_at - time.monotonic()) * 1000))

    def answered_in_time(self):
        return time.monotonic() < self.ends_at


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
    # DynamoDB answers in milliseconds; a local peer on a loaded two-core CI machine can take
    # a second or more. The invocation's deadline, which the tests set, still bounds it all.
    monkeypatch.setattr(dynamodb, "REQUEST_SECONDS", 10.0)
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
    record = dynamo.message_record(dedup_env.direct, message_id)
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
    assert status == 489 and log["dedup"] == "new", log["reason"]
    status, again, log = deliver(call, delivery(message_id))
    assert status == 489 and again["headers"]["Upstash-NonRetryable-Error"] == "true"
    assert again["body"] == first["body"] and log["dedup"] == "duplicate"


def test_handle_raising_releases_the_record_so_the_retry_runs_it(dedup_env, call, effects):
    message_id = new_id()
    effects.behaviours[message_id] = {"fail": "raise"}
    status, _, log = deliver(call, delivery(message_id))
    assert status == 500 and log["dedup"] == "new" and "handle raised" in log["reason"]
    assert dynamo.message_record(dedup_env.direct, message_id) is None
    effects.behaviours[message_id] = {}
    status, _, log = deliver(call, delivery(message_id))
    assert status == 200 and log["dedup"] == "new", log["reason"]
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
    assert status == 200 and log["dedup"] == "duplicate" and effects == [message_id], log["reason"]


def test_retry_after_is_the_lease_left_in_whole_seconds_rounded_up(dedup_env, effects,
                                                                   monkeypatch):
    """A delivery meeting the message in progress is told to come back when the lease ends:
    the time left, rounded up to whole seconds (never earlier), and at least 1 s."""
    now = int(time.time()) + 0.5
    message_id = new_id()
    waits = []

    def deliver_at(offset):
        monkeypatch.setattr(time, "time", lambda: now + offset)
        response = lf.lambda_handler(delivery(message_id, now=now + offset), Context())
        waits.append((response["statusCode"], response["headers"].get("Retry-After")))

    def later():  # the lease ends 9 s from `now` (8 s left, plus 1 s margin)
        for offset in (0.999, 1.0, 8.5, 9.0):
            deliver_at(offset)
        monkeypatch.setattr(time, "time", lambda: now)
    effects.behaviours[message_id] = {"during": later}
    monkeypatch.setattr(time, "time", lambda: now)
    lf.lambda_handler(delivery(message_id, now=now), Context(remaining_ms=8000))
    assert waits == [(409, "9"), (409, "8"), (409, "1"), (409, "1")]
    assert effects == [message_id]


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
    assert status == 200
    assert log["reason"] == "completion not recorded: another delivery took the message over"
    assert dedup_env.counts["UpdateItem"] == 2  # each delivery's completion, never retried
    record = dynamo.message_record(dedup_env.direct, message_id)
    assert record["state"] == "completed"
    assert effects == [message_id, message_id]  # the first ran past its lease: Lambda stops that


def test_a_record_past_expires_at_counts_as_absent(dedup_env, call, effects, monkeypatch):
    message_id, now = new_id(), time.time()
    monkeypatch.setenv("DEDUP_TTL", "3600")
    assert deliver(call, delivery(message_id))[0] == 200
    monkeypatch.setattr(time, "time", lambda: now + 3601)
    status, _, log = deliver(call, delivery(message_id, now=now + 3601))
    assert status == 200 and log["dedup"] == "new" and effects == [message_id, message_id]


def test_a_record_is_live_until_the_second_past_its_expires_at(dedup_env, effects, capsys,
                                                               monkeypatch):
    """A record counts as absent only once past expires_at. At that very second a completed
    record still answers a duplicate, and an in-progress one whose lease has passed is
    taken over (logged as such), not treated as new."""
    monkeypatch.setenv("DEDUP_TTL", "3600")
    start = int(time.time()) + 0.25
    expires = int(start) + 3600
    done, held = new_id(), new_id()

    def deliver_at(message_id, when, context=None):
        monkeypatch.setattr(time, "time", lambda: when)
        return lf.lambda_handler(delivery(message_id, now=when), context or Context())

    def later():
        effects.behaviours[held] = {}
        deliver_at(held, expires + 0.25)
    effects.behaviours[held] = {"during": later}
    capsys.readouterr()
    assert deliver_at(done, start)["statusCode"] == 200
    assert deliver_at(done, expires + 0.25)["statusCode"] == 200
    deliver_at(held, start, Context(remaining_ms=1000))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["dedup"] for line in lines] == ["new", "duplicate", "taken_over", "new"]
    assert effects == [done, held, held]


@pytest.mark.parametrize("invocation", ["Lambda's context", "no context"])
def test_the_lease_is_the_time_left_plus_a_second_and_the_owner_names_the_request(
        invocation, dedup_env, call, effects, monkeypatch):
    """The in-progress record's lease: the invocation's remaining time plus 1 s for clock
    differences between hosts; without a context (a local call), Lambda's longest timeout,
    900 s, plus that second. Its owner: the request id (`local` without one) and a 48-bit
    nonce, in hex."""
    now = int(time.time()) + 0.5
    monkeypatch.setattr(time, "time", lambda: now)
    context, lease_ms, request_id = None, 901000, "local"
    if invocation == "Lambda's context":
        context = Context(remaining_ms=8000)
        lease_ms, request_id = 9000, context.aws_request_id
    message_id = new_id()
    seen = []
    effects.behaviours[message_id] = {"during": lambda: seen.append(
        dynamo.message_record(dedup_env.direct, message_id))}
    response, log = call(delivery(message_id, now=now), context)
    assert response["statusCode"] == 200 and log["dedup"] == "new"
    assert seen[0]["state"] == "in_progress"
    assert seen[0]["lease_until"] == int(now * 1000) + lease_ms
    assert re.fullmatch(re.escape(request_id) + "/[0-9a-f]{12}", seen[0]["owner"]), seen[0]


def test_every_store_request_ends_half_a_second_before_the_invocation(dedup_env, monkeypatch):
    """The deadline every store request is given: the invocation's end (its remaining time
    from now, on time.monotonic's clock) less half a second, to answer before Lambda stops
    the function. Measured on the protocol's own object, with the clocks pinned."""
    monkeypatch.setattr(time, "monotonic", lambda: 5000.0)
    body = b'{"job":"deadline"}'
    claims = verify(ev.qstash_headers(KEY, body, URL)["Upstash-Signature"], KEY, body, URL)
    message = Message("qstash", Request("http", "POST", {}, body, URL), claims=claims)
    settings = DedupSettings({**DUMMY, "AWS_ENDPOINT_URL": dedup_env.endpoint}, dynamo.TABLE,
                             3600)
    for remaining_ms in (900000, 1500):
        protocol = dedup.Deduplication(dynamodb.DynamoDBStore(settings), message,
                                       Context(remaining_ms=remaining_ms), "owner", 3600, None)
        assert protocol.deadline == 5000.0 + remaining_ms / 1000 - 0.5


@pytest.mark.parametrize("status, completed", [
    (200, True), (204, True), (299, True), (489, True),
    (199, False), (300, False), (429, False), (488, False), (490, False), (500, False)])
def test_any_2xx_and_489_complete_the_message_and_anything_else_releases_it(
        status, completed, dedup_env):
    """QStash stops retrying on any 2xx and on 489: those answers are kept for duplicates.
    Any other answer deletes the record, so QStash's retry runs handle again."""
    body = b'{"job":"status"}'
    claims = verify(ev.qstash_headers(KEY, body, URL)["Upstash-Signature"], KEY, body, URL)
    message_id = new_id()
    request = Request("http", "POST", {"upstash-message-id": message_id}, body, URL)
    settings = DedupSettings({**DUMMY, "AWS_ENDPOINT_URL": dedup_env.endpoint}, dynamo.TABLE,
                             3600)
    answer = dedup.run_once(Message("qstash", request, claims=claims), Context(),
                            lambda: Answer(status, '{"status": %d}' % status), settings,
                            dynamodb.DynamoDBStore(settings), clock_tolerance=5,
                            soketi_max_age=300)
    assert answer.status == status and answer.dedup == "new"
    record = dynamo.message_record(dedup_env.direct, message_id)
    if completed:
        assert record["state"] == "completed" and record["status"] == status
    else:
        assert record is None


@pytest.mark.parametrize("store", ["answers", "throttles"])
def test_a_note_of_the_table_joins_handles_own_reason(store, dedup_env, call, effects):
    """handle's reason (here NonRetryableError's) stays in the log line; a completion that
    could not be written adds its note after it, and nothing is added when it was."""
    message_id = new_id()
    effects.behaviours[message_id] = {"fail": "nonretryable"}
    if store == "throttles":
        dedup_env.plan("UpdateItem", "throttle", "throttle", "throttle")
    status, _, log = deliver(call, delivery(message_id))
    assert status == 489
    if store == "answers":
        assert log["reason"] == "NonRetryableError: never valid"
    else:
        assert log["reason"] == ("NonRetryableError: never valid; completion not recorded "
                                 "(UpdateItem ProvisionedThroughputExceededException: "
                                 "injected)")


def test_a_replayed_token_never_runs_handle_nor_writes_its_message_id(dedup_env, call, effects):
    message_id, forged = new_id(), new_id()
    event = delivery(message_id)
    status, first, _ = deliver(call, event)
    assert status == 200
    dedup_env.reset()
    status, again, log = deliver(call, replay(event, forged))
    assert status == 200 and again["body"] == first["body"]
    assert log["dedup"] == "replay" and log["outcome"] == "duplicate"
    assert log["reason"] == ("token already used (replay): already processed (first answer "
                             "200), handle not called")
    assert dedup_env.counts.get("UpdateItem", 0) == dedup_env.counts.get("DeleteItem", 0) == 0
    assert dedup_env.total() == duplicate_cost(dedup_env, 2), dedup_env.counts
    assert dynamo.message_record(dedup_env.direct, forged) is None
    status, _, log = deliver(call, replay(event, message_id))  # the same token, same id
    assert status == 200 and log["dedup"] == "replay", log["reason"]
    # the real message with the forged id arrives later: it is not suppressed
    status, _, log = deliver(call, delivery(forged))
    assert status == 200 and log["dedup"] == "new", log["reason"]
    assert effects == [message_id, forged]


def test_a_replay_while_the_first_is_in_progress_is_409(dedup_env, nested, effects):
    message_id, inner = new_id(), []
    event = delivery(message_id)
    effects.behaviours[message_id] = {"during": lambda: inner.append(
        lf.lambda_handler(replay(event, new_id()), Context()))}
    assert nested(event)[0] == 200
    assert inner[0]["statusCode"] == 409 and effects == [message_id]


def test_a_replay_whose_token_record_names_no_message_is_409(dedup_env, call, effects):
    """The token record names the message it claimed; one that names none (edited by hand,
    or gone between the refused write and the read) is a replay all the same: 409, never
    handle."""
    message_id = new_id()
    event = delivery(message_id)
    assert deliver(call, event)[0] == 200
    [token_record] = [record for record in dynamo.items(dedup_env.direct, "qstash:jti:")
                      if record["message"].startswith("qstash:message:%s:" % message_id)]
    dynamo.client(dedup_env.direct).update_item(
        TableName=dynamo.TABLE, Key={"id": {"S": token_record["id"]}},
        UpdateExpression="REMOVE message")
    status, response, log = deliver(call, replay(event, new_id()))
    assert status == 409 and log["dedup"] == "replay"
    assert response["headers"]["Retry-After"] == "1"
    assert log["reason"].startswith("token already used (replay): ")
    assert effects == [message_id]


def test_a_replay_of_a_token_whose_handle_failed_does_not_run_it(dedup_env, call, effects):
    message_id = new_id()
    effects.behaviours[message_id] = {"fail": "raise"}
    event = delivery(message_id)
    assert deliver(call, event)[0] == 500
    effects.behaviours[message_id] = {}
    status, response, log = deliver(call, replay(event, message_id))
    assert status == 409 and log["dedup"] == "replay" and log["outcome"] == "deferred"
    assert response["headers"]["Retry-After"] == "1"  # nothing in progress: soon
    assert effects == []
    assert deliver(call, delivery(message_id))[0] == 200 and effects == [message_id]


# --- A record belongs to one signed body ------------------------------------------------

@pytest.fixture
def bodies(monkeypatch):
    """handle replaced by one that records each effect as (message id, body): which signed
    body ran under which id."""
    applied = []

    def handle(message):
        applied.append((message.message_id, message.body))
        return {"applied": message.body.decode()}
    monkeypatch.setattr(lf, "handle", handle)
    return applied


def test_a_token_used_first_under_another_messages_id_does_not_suppress_that_message(
        dedup_env, call, bodies):
    """Someone holding an unused token presents it first, under the id of a message that has
    not arrived yet. That message, when it comes, is not taken for a duplicate."""
    unused = delivery(new_id(), body=b'{"job":"a"}')
    message_id = new_id()
    status, _, log = deliver(call, replay(unused, message_id))
    assert status == 200 and log["dedup"] == "new", log["reason"]
    status, _, log = deliver(call, delivery(message_id, body=b'{"job":"b"}'))
    assert status == 200 and log["dedup"] == "new", log["reason"]
    assert bodies == [(message_id, b'{"job":"a"}'), (message_id, b'{"job":"b"}')]


@pytest.mark.parametrize("differs", ["body", "url"])
def test_a_token_under_a_completed_messages_id_gets_neither_its_answer_nor_its_silence(
        differs, dedup_env, call, bodies, monkeypatch):
    """A token whose signed body (or URL) is not the completed message's, presented under
    that message's id: it is not that message. Its own body runs, once; QStash's own
    delivery with that token then gets that body's answer, not the other message's."""
    other_url = URL + "/other"
    monkeypatch.setenv("QSTASH_DESTINATION_URL", URL + " " + other_url)
    completed = new_id()
    assert deliver(call, delivery(completed, body=b'{"job":"b"}'))[0] == 200
    body = b'{"job":"a"}'
    url = URL
    if differs == "url":
        body = b'{"job":"b"}'
        url = other_url
    headers = ev.qstash_headers(KEY, body, url, message_id=new_id())
    token = ev.function_url(url=URL, headers=headers, body=body)
    status, first, log = deliver(call, replay(token, completed))
    assert status == 200 and log["dedup"] == "new", log["reason"]
    assert json.loads(first["body"]) == {"applied": body.decode()}
    status, again, log = deliver(call, token)  # the same token, under its real id
    assert status == 200 and log["dedup"] == "replay" and again["body"] == first["body"]
    assert bodies == [(completed, b'{"job":"b"}'), (completed, body)]


def test_a_message_record_holds_what_the_token_signed_and_is_checked_on_every_read(
        dedup_env, call, bodies):
    """The record stores the token's body hash and a digest of its URL. A record whose
    fields disagree with the delivery reading it (a table edited by hand, a bug) is never
    an answer: the store is in doubt, so 503 and handle is not called."""
    message_id = new_id()
    body = b'{"job":"checked"}'
    assert deliver(call, delivery(message_id, body=body))[0] == 200
    record = dynamo.message_record(dedup_env.direct, message_id)
    signed_hash = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=")
    assert record["body_hash"] == signed_hash.decode()
    assert record["sub_sha256"] == hashlib.sha256(URL.encode()).hexdigest()
    dynamo.client(dedup_env.direct).update_item(
        TableName=dynamo.TABLE, Key={"id": {"S": record["id"]}},
        UpdateExpression="SET body_hash = :other",
        ExpressionAttributeValues={":other": {"S": "another-body"}})
    status, response, log = deliver(call, delivery(message_id, body=body))
    assert status == 503 and log["dedup"] == "store_error" and "handle not called" in log["reason"]
    assert bodies == [(message_id, body)]


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


@pytest.mark.parametrize("kind", ["256 characters", "257 characters", "not ASCII",
                                  "not printable"])
def test_an_id_is_kept_in_its_key_up_to_256_printable_characters_and_hashed_beyond(
        kind, dedup_env, call, effects):
    """A record key holds the message id and jti as they are when they are at most 256
    printable ASCII characters (readable in the table), and their SHA-256 otherwise, so no
    caller's header can make a key too long for DynamoDB (2048 bytes) or unreadable."""
    length = 257 if kind == "257 characters" else 256
    message_id = (new_id() + "-" * length)[:length]
    jti = ("jwt_" + uuid.uuid4().hex + "-" * length)[:length]
    if kind == "not ASCII":
        message_id = message_id[:20] + "\u00e9"
        jti = jti[:20] + "\u00e9"
    elif kind == "not printable":
        message_id = message_id[:20] + "\t"
        jti = jti[:20] + "\t"
    body = b'{"job":"long id"}'
    headers = ev.qstash_headers(KEY, body, URL, message_id=message_id, claims={"jti": jti})
    assert deliver(call, ev.function_url(url=URL, headers=headers, body=body))[0] == 200
    kept = {"message": message_id, "jti": jti}
    if kind != "256 characters":
        kept = {name: "sha256:" + hashlib.sha256(value.encode()).hexdigest()
                for name, value in kept.items()}
    assert len(dynamo.items(dedup_env.direct, "qstash:message:%s:" % kept["message"])) == 1
    assert len(dynamo.items(dedup_env.direct, "qstash:jti:%s:" % kept["jti"])) == 1
    assert effects == [message_id]


@pytest.mark.parametrize("size, stored", [(64 * 1024, True), (64 * 1024 + 1, False)])
def test_a_body_is_stored_up_to_64_kb_exactly(size, stored, dedup_env, call, effects):
    """A duplicate gets the first answer's body when it is at most 65536 bytes; beyond,
    a note saying how long it was."""
    message_id = new_id()
    empty = json.dumps({"applied": message_id, "big": ""})
    effects.behaviours[message_id] = {"big": size - len(empty)}
    status, first, _ = deliver(call, delivery(message_id))
    assert status == 200 and len(first["body"].encode()) == size
    status, again, log = deliver(call, delivery(message_id))
    assert status == 200 and log["dedup"] == "duplicate"
    if stored:
        assert again["body"] == first["body"]
    else:
        assert json.loads(again["body"]) == {
            "note": "the first answer's body (65537 bytes) was over 64 KB and is not stored"}


def test_bodies_over_64_kb_are_replaced_by_a_note(dedup_env, call, effects):
    message_id = new_id()
    effects.behaviours[message_id] = {"big": 70 * 1024}
    status, first, _ = deliver(call, delivery(message_id))
    assert status == 200 and len(first["body"]) > 70 * 1024
    status, again, _ = deliver(call, delivery(message_id))
    assert status == 200 and "over 64 KB" in json.loads(again["body"])["note"]


# --- Records outlive their tokens ----------------------------------------------------------
# The protocol is called as the pipeline calls it, with the tolerances passed explicitly:
# the configuration may refuse DEDUP_TTL shorter than a token's life, but the records must
# be safe whatever it allows.

def run_protocol(message, settings, **tolerances):
    """(answer, [message ids handle ran for]) of one delivery through run_once."""
    ran = []

    def produce_answer():
        ran.append(message.message_id)
        return Answer(200, '{"ok": true}')
    store = dynamodb.DynamoDBStore(settings)
    return dedup.run_once(message, Context(), produce_answer, settings, store,
                          **tolerances), ran


def test_a_token_record_lives_until_the_token_can_no_longer_verify(dedup_env, monkeypatch):
    """QSTASH_CLOCK_TOLERANCE=86400 with DEDUP_TTL=3600: two hours on, the token still
    verifies, so its record must still be there: replayed under another id, it is a replay."""
    tolerance = 86400
    now = time.time()
    settings = DedupSettings({**DUMMY, "AWS_ENDPOINT_URL": dedup_env.endpoint}, dynamo.TABLE,
                             3600)
    body = b'{"job":"long-lived"}'
    token = ev.qstash_headers(KEY, body, URL, now=now)["Upstash-Signature"]

    def message_at(when):
        claims = verify(token, KEY, body, URL, clock_tolerance=tolerance, now=when)
        request = Request("http", "POST", {"upstash-message-id": new_id()}, body, URL)
        return Message("qstash", request, claims=claims)
    monkeypatch.setattr(time, "time", lambda: now)
    first = message_at(now)
    answer, ran = run_protocol(first, settings, clock_tolerance=tolerance, soketi_max_age=300)
    assert answer.status == 200 and answer.dedup == "new" and ran == [first.message_id]
    later = now + 2 * 3600
    monkeypatch.setattr(time, "time", lambda: later)
    answer, ran = run_protocol(message_at(later), settings, clock_tolerance=tolerance,
                               soketi_max_age=300)
    assert answer.dedup == "replay" and ran == []
    [record] = dynamo.items(dedup_env.direct, "qstash:jti:" + first.token_id + ":")
    assert record["expires_at"] >= first.claims["exp"] + tolerance


def test_a_soketi_record_lives_until_its_webhook_can_no_longer_verify(dedup_env, monkeypatch):
    """SOKETI_MAX_AGE=86400 with DEDUP_TTL=3600: the same webhook two hours later still
    verifies, and is still a duplicate."""
    max_age = 86400
    now = time.time()
    settings = DedupSettings({**DUMMY, "AWS_ENDPOINT_URL": dedup_env.endpoint}, dynamo.TABLE,
                             3600)
    body = json.dumps({"time_ms": int(now * 1000), "events": [
        {"name": "channel_occupied", "channel": new_id()}]}).encode()
    signature = sign_pusher("test-app-secret", body)

    def message_at(when):
        payload = verify_pusher(signature, "test-app-secret", body, max_age=max_age, now=when)
        request = Request("http", "POST", {"x-pusher-signature": signature}, body, URL)
        return Message("soketi", request, payload=payload)
    monkeypatch.setattr(time, "time", lambda: now)
    answer, ran = run_protocol(message_at(now), settings, clock_tolerance=5,
                               soketi_max_age=max_age)
    assert answer.dedup == "new" and len(ran) == 1
    [record] = dynamo.items(dedup_env.direct, "soketi:signature:" + signature)
    assert record["expires_at"] == math.ceil(int(now * 1000) / 1000 + max_age)  # to the second
    later = now + 2 * 3600
    monkeypatch.setattr(time, "time", lambda: later)
    answer, ran = run_protocol(message_at(later), settings, clock_tolerance=5,
                               soketi_max_age=max_age)
    assert answer.dedup == "duplicate" and answer.status == 200 and ran == []


def test_a_soketi_record_without_an_age_check_lives_dedup_ttl(dedup_env, monkeypatch):
    """SOKETI_MAX_AGE=0 turns the age check off (the configuration refuses it beside
    DEDUP_TABLE; the protocol stays sound without that): no bound is known from the
    signature, so the record lives DEDUP_TTL from now, whatever time_ms the webhook carries,
    and a duplicate within it is a duplicate."""
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now)
    settings = DedupSettings({**DUMMY, "AWS_ENDPOINT_URL": dedup_env.endpoint}, dynamo.TABLE,
                             3600)
    for sent in (now - 86400, now + 10 * 365 * 86400):
        body = json.dumps({"time_ms": int(sent * 1000), "events": [
            {"name": "channel_occupied", "channel": new_id()}]}).encode()
        signature = sign_pusher(SECRET, body)
        payload = verify_pusher(signature, SECRET, body, max_age=0, now=now)
        request = Request("http", "POST", {"x-pusher-signature": signature}, body, URL)
        message = Message("soketi", request, payload=payload)
        answer, ran = run_protocol(message, settings, clock_tolerance=5, soketi_max_age=0)
        assert answer.dedup == "new" and len(ran) == 1
        [record] = dynamo.items(dedup_env.direct, "soketi:signature:" + signature)
        assert record["expires_at"] == int(now * 1000) // 1000 + 3600
        answer, ran = run_protocol(message, settings, clock_tolerance=5, soketi_max_age=0)
        assert answer.dedup == "duplicate" and ran == []


# --- The store failing ----------------------------------------------------------------------

@pytest.mark.parametrize("breakage", ["no such table", "nothing listening", "no secret key",
                                      "no access key"])
def test_an_unusable_store_is_503_and_handle_is_not_called(
        breakage, dedup_env, call, effects, monkeypatch):
    if breakage == "no such table":
        monkeypatch.setenv("DEDUP_TABLE", "no-such-table")
    elif breakage == "nothing listening":
        monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:%d" % dynamo.free_port())
    elif breakage == "no secret key":
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    else:
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    status, response, log = deliver(call, delivery(new_id()))
    if breakage.endswith(" key"):  # said as such, before any request
        assert log["reason"] == ("dedup table unavailable, handle not called: no AWS "
                                 "credentials in the environment (AWS_ACCESS_KEY_ID, "
                                 "AWS_SECRET_ACCESS_KEY)")
        assert dedup_env.total() == 0
    # No Retry-After: QStash's own backoff (12 s, 2 min 28 s, 30 min, 6 h) outlasts an outage
    # whether or not it honours the header on a 503; 30 s three times would not.
    assert status == 503 and "Retry-After" not in response["headers"]
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


@pytest.mark.parametrize("garbage", sorted(dynamo.GARBAGE))
def test_a_garbage_answer_is_a_store_error_before_and_after_handle(
        garbage, dedup_env, call, effects):
    """Not JSON; a Content-Length of 10**20 or 10**12, or a chunk of 2**80 bytes (once
    OverflowError and MemoryError); 2 MB of valid JSON, longer than any answer of DynamoDB's.
    Before handle: 503, handle not called. After it: handle's own answer, since its effect
    has happened (a 500 would have QStash retry, and a retry after the lease run it again)."""
    dedup_env.plan("PutItem", garbage, garbage)  # a cut answer is sent again, once
    status, _, log = deliver(call, delivery(new_id()))
    assert status == 503 and log["dedup"] == "store_error" and effects == []
    dedup_env.reset()
    message_id = new_id()
    dedup_env.plan("UpdateItem", *[garbage] * 6)  # three attempts, each perhaps sent twice
    status, response, log = deliver(call, delivery(message_id))
    assert status == 200 and json.loads(response["body"])["applied"] == message_id
    assert "completion not recorded" in log["reason"] and effects == [message_id]


def test_a_kept_connection_the_store_closed_while_idle_is_replaced_not_counted(
        dedup_env, call, effects, monkeypatch):
    """A server closes idle connections when it likes; its close can race the check made
    before a kept connection is reused (modelled here: the check passes). The request then
    fails before any answer and goes again on a new connection, without using up the
    client's one retry, which a cut answer right after still gets."""
    first = new_id()
    assert deliver(call, delivery(first))[2]["dedup"] == "new"  # a connection is kept
    dedup_env.close_idle()
    monkeypatch.setattr(transport.Connection, "clean", lambda connection: True)
    second = new_id()
    dedup_env.plan("PutItem", "drop_after")
    status, _, log = deliver(call, delivery(second))
    assert status == 200 and log["dedup"] == "new", log["reason"]
    assert effects == [first, second]


def test_a_failed_condition_carries_the_record_but_never_says_it():
    """ConditionFailedError hands the record that failed the condition to the protocol; its
    text is fixed, so the record (a stored answer, an owner) never reaches a log line or a
    reason through it."""
    record = {"id": "qstash:message:m", "answer": '{"status": 200, "body": "private"}'}
    failed = ConditionFailedError(record)
    assert failed.record is record and str(failed) == "the condition failed"
    assert ConditionFailedError(None).record is None


# --- The store's fault paths, one test each ---------------------------------------------------

def test_fault_token_write_applied_but_its_answer_lost(dedup_env, call, effects):
    """Step 1's write reaches the table, its answer does not: the client sends it again, the
    condition fails on the record just written, and the protocol knows it for its own.
    Someone else's use of the token stays a replay."""
    message_id = new_id()
    event = delivery(message_id)
    dedup_env.plan("PutItem", "drop_after")
    status, _, log = deliver(call, event)
    assert status == 200 and log["dedup"] == "new" and effects == [message_id], log["reason"]
    assert dedup_env.counts["PutItem"] == 3  # the token's write twice, the message's once
    status, _, log = deliver(call, replay(event, new_id()))
    assert status == 200 and log["dedup"] == "replay" and effects == [message_id], log["reason"]


def test_fault_message_write_applied_but_its_answer_lost(dedup_env, call, nested, effects):
    """Step 2's write reaches the table, its answer does not: on the second try the record
    in progress is ours, so handle runs. Another delivery meeting it meanwhile gets 409."""
    message_id = new_id()
    inner = []
    effects.behaviours[message_id] = {"during": lambda: inner.append(
        lf.lambda_handler(delivery(message_id), Context()))}
    dedup_env.plan("PutItem", "pass", "drop_after")
    status, _, log = nested(delivery(message_id))
    assert status == 200 and log["dedup"] == "new" and effects == [message_id], log["reason"]
    assert inner[0]["statusCode"] == 409
    assert dynamo.message_record(dedup_env.direct, message_id)["state"] == "completed"


@pytest.mark.parametrize("refusal", ["with the record", "without the record"])
def test_fault_completion_applied_but_its_answer_lost(refusal, dedup_env, call, effects):
    """Step 3's write reaches the table, its answer does not: the second try finds the record
    completed by us, which is success, not another delivery's takeover. The refusal of the
    second try carries the record (DynamoDB's ReturnValuesOnConditionCheckFailure), or not
    (dynalite ignores it): then one GetItem reads it, no more."""
    message_id = new_id()
    dedup_env.plan("UpdateItem", "drop_after", "pass" if refusal == "with the record" else
                   "no_item")
    status, first, log = deliver(call, delivery(message_id))
    assert status == 200 and not log["reason"] and dedup_env.counts["UpdateItem"] == 2
    reads = 0 if refusal == "with the record" and dedup_env.name == "moto" else 1
    assert dedup_env.counts.get("GetItem", 0) == reads, dedup_env.counts
    status, again, log = deliver(call, delivery(message_id))
    assert log["dedup"] == "duplicate" and again["body"] == first["body"]
    assert effects == [message_id]


@pytest.mark.parametrize("raised", ["RuntimeError", "SystemExit"])
def test_fault_release_after_handle_raises(raised, dedup_env, call, effects):
    """handle raises (an exception, or SystemExit, which no answer catches): the record is
    deleted at once, so QStash's retry runs handle without waiting for the lease."""
    message_id = new_id()

    def fail():
        if raised == "SystemExit":
            raise SystemExit(3)
        raise RuntimeError("handle failed on purpose")
    effects.behaviours[message_id] = {"during": fail}
    if raised == "SystemExit":
        with pytest.raises(SystemExit):
            lf.lambda_handler(delivery(message_id), Context())
    else:
        assert deliver(call, delivery(message_id))[0] == 500
    assert dedup_env.counts["DeleteItem"] == 1
    assert dynamo.message_record(dedup_env.direct, message_id) is None
    effects.behaviours[message_id] = {}
    status, _, log = deliver(call, delivery(message_id))
    assert status == 200 and log["dedup"] == "new" and effects == [message_id], log["reason"]


@pytest.mark.parametrize("fault", ["taken over", "throttled"])
def test_fault_release_after_handle_raises_is_noted_when_it_cannot_be_done(
        fault, dedup_env, nested, effects, monkeypatch):
    """handle raises, but the record cannot be deleted: another delivery took it over past
    the lease (its record stays, untouched), or the store refuses the delete (the record
    stays in progress; a retry waits for the lease). handle's own reason stays first."""
    message_id, now = new_id(), time.time()
    raised = "handle raised RuntimeError: handle failed on purpose; "

    def later_delivery():  # past the 2 s lease (1 s + 1 s margin), completes the message
        monkeypatch.setattr(time, "time", lambda: now + 2.5)
        effects.behaviours[message_id] = {}
        assert lf.lambda_handler(delivery(message_id, now=now + 2.5), Context())[
            "statusCode"] == 200
    behaviour = {"fail": "raise"}
    if fault == "taken over":
        behaviour["during"] = later_delivery
    else:
        dedup_env.plan("DeleteItem", "throttle")
    effects.behaviours[message_id] = behaviour
    monkeypatch.setattr(time, "time", lambda: now)
    status, _, log = nested(delivery(message_id, now=now), Context(remaining_ms=1000))
    assert status == 500 and dedup_env.counts["DeleteItem"] == 1
    record = dynamo.message_record(dedup_env.direct, message_id)
    if fault == "taken over":
        assert log["reason"] == raised + "release skipped: the record is no longer ours"
        assert record["state"] == "completed" and effects == [message_id]
    else:
        assert log["reason"] == raised + ("release failed (DeleteItem ProvisionedThroughput"
                                          "ExceededException: injected): a retry waits for "
                                          "the lease")
        assert record["state"] == "in_progress" and effects == []


def test_a_completion_attempt_with_exactly_its_minimum_time_left_is_made(
        dedup_env, call, effects, monkeypatch):
    """An attempt is made when the time left is ATTEMPT_MIN_S exactly (the minimum is
    raised to 5 s here, so that the request has real seconds to finish; the clock is
    simulated, and handle returns 5 s before the deadline)."""
    monkeypatch.setattr(dedup, "ATTEMPT_MIN_S", 5.0)
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    message_id = new_id()
    deadline = 1000.0 + 30 - dedup.DEADLINE_MARGIN_S
    effects.behaviours[message_id] = {"during": lambda: clock.__setitem__(0, deadline - 5.0)}
    status, _, log = deliver(call, delivery(message_id), Context(remaining_ms=30000))
    assert status == 200 and not log["reason"] and dedup_env.counts["UpdateItem"] == 1
    assert dynamo.message_record(dedup_env.direct, message_id)["state"] == "completed"


def test_a_completion_attempt_is_not_started_when_its_pause_leaves_too_little_time(
        dedup_env, call, effects, monkeypatch):
    """Each completion attempt must have 0.1 s left before the deadline once its pause is
    over, or it is not started. On a simulated clock (time.sleep moves it; requests take no
    simulated time): handle returns 0.2 s before the deadline, the store throttles; the
    first attempt and the one 50 ms later are made, the one 100 ms after that is not."""
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(time, "sleep", lambda seconds: clock.__setitem__(0, clock[0] + seconds))
    message_id = new_id()
    deadline = 1000.0 + 30 - dedup.DEADLINE_MARGIN_S  # Context(): 30 s left
    effects.behaviours[message_id] = {"during": lambda: clock.__setitem__(0, deadline - 0.2)}
    dedup_env.plan("UpdateItem", "throttle", "throttle", "throttle")
    status, _, log = deliver(call, delivery(message_id), Context(remaining_ms=30000))
    assert status == 200 and effects == [message_id]
    assert dedup_env.counts["UpdateItem"] == 2
    assert log["reason"] == ("completion not recorded (UpdateItem ProvisionedThroughput"
                             "ExceededException: injected)")


def test_fault_takeover_at_exactly_the_lease_end(dedup_env, effects, capsys, monkeypatch):
    """A delivery at the lease's last millisecond still finds it held (409); one a
    millisecond later takes the message over."""
    message_id = new_id()
    now = time.time()
    inner = []

    def at(epoch_ms):
        monkeypatch.setattr(time, "time", lambda: (epoch_ms + 0.5) / 1000)
        response = lf.lambda_handler(delivery(message_id, now=epoch_ms / 1000), Context())
        inner.append(response["statusCode"])

    def later_deliveries():
        lease_until = dynamo.message_record(dedup_env.direct, message_id)["lease_until"]
        effects.behaviours[message_id] = {}
        at(lease_until)
        at(lease_until + 1)
    effects.behaviours[message_id] = {"during": later_deliveries}
    monkeypatch.setattr(time, "time", lambda: now)
    capsys.readouterr()
    lf.lambda_handler(delivery(message_id, now=now), Context(remaining_ms=1000))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert inner == [409, 200]
    assert [line["dedup"] for line in lines] == ["in_progress", "taken_over", "new"]
    assert effects == [message_id, message_id]  # the first ran past its lease: Lambda stops that


def test_fault_completion_write_is_retried_after_a_pause(dedup_env, call, effects):
    """The completion write is the one worth retrying (handle's effect has happened): after a
    throttle and a 500 it is tried again, 50 ms and then 100 ms later, and succeeds."""
    message_id = new_id()
    dedup_env.plan("UpdateItem", "throttle", "server_error")
    status, first, log = deliver(call, delivery(message_id))
    assert status == 200 and not log["reason"]
    times = dedup_env.times("UpdateItem")
    assert len(times) == 3 and times[1] - times[0] >= 0.05 and times[2] - times[1] >= 0.1
    status, again, log = deliver(call, delivery(message_id))
    assert log["dedup"] == "duplicate" and again["body"] == first["body"]
    assert effects == [message_id]


def test_fault_a_completion_attempt_without_time_to_finish_is_not_started(
        dedup_env, call, effects):
    """handle returns with less time before the deadline than a completion attempt needs:
    none is started; the answer is handle's, in time."""
    message_id = new_id()
    context = LiveContext(remaining_ms=1500)
    deadline = context.ends_at - dedup.DEADLINE_MARGIN_S
    effects.behaviours[message_id] = {"during": lambda: time.sleep(
        max(0.0, deadline - 0.05 - time.monotonic()))}
    status, _, log = deliver(call, delivery(message_id), context)
    assert status == 200 and effects == [message_id] and context.answered_in_time()
    assert "UpdateItem" not in dedup_env.counts and "no time left" in log["reason"]


def test_configuration_errors_are_500_naming_the_variable(dedup_env, call, effects, monkeypatch):
    monkeypatch.setenv("DEDUP_TTL", "soon")
    status, response, _ = deliver(call, delivery(new_id()))
    assert status == 500 and "DEDUP_TTL" in response["body"] and effects == []
    monkeypatch.setenv("DEDUP_TTL", "86400")
    monkeypatch.setenv("DEDUP_TABLE", "a b")
    status, response, _ = deliver(call, delivery(new_id()))
    assert status == 500 and "DEDUP_TABLE" in response["body"] and effects == []
    monkeypatch.setenv("DEDUP_TABLE", "dedup")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://192.0.2.7:8000")
    status, response, _ = deliver(call, delivery(new_id()))
    assert status == 500 and "AWS_ENDPOINT_URL" in response["body"] and effects == []
    assert "192.0.2.7" not in response["body"]


@pytest.mark.parametrize("variable", ["AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL"])
@pytest.mark.parametrize("endpoint, accepted", [
    ("https://dynamodb.eu-west-1.amazonaws.com", True),
    ("HTTPS://dynamodb.eu-west-1.amazonaws.com:443/", True),
    ("http://127.0.0.1:8000", True), ("HTTP://127.0.0.1:8000", True),
    ("http://127.8.9.10", True), ("http://[::1]:8000", True), ("http://localhost:8000", True),
    ("http://dynamodb.eu-west-1.amazonaws.com", False), ("http://192.0.2.7:8000", False),
    ("http://127.0.0.1.nip.io:8000", False), ("http://[::ffff:c000:207]:8000", False),
    ("https://ddb.example/prefix", False), ("https://ddb.example/?a=1", False),
    ("https://ddb.example#part", False), ("https://user:hunter2@ddb.example", False),
    ("ftp://127.0.0.1", False), ("ddb.example:443", False), ("https://ddb.example:99999", False),
    ("https://ddb example", False)])
def test_endpoint_variables_are_checked(variable, endpoint, accepted):
    """https only, the scheme in any case; plain http only to a loopback address (a local
    store); no path, query, fragment or credentials. A refusal names the variable, never its
    value."""
    environ = {"QSTASH_CURRENT_SIGNING_KEY": KEY, "QSTASH_NEXT_SIGNING_KEY": NEXT,
               "DEDUP_TABLE": "dedup", variable: endpoint}
    errors = configuration_errors(environ)
    if accepted:
        assert errors == []
    else:
        assert len(errors) == 1 and errors[0].startswith(variable + " "), errors
        assert endpoint not in errors[0] and "hunter2" not in errors[0]


def test_only_the_endpoint_in_use_is_checked():
    """AWS_ENDPOINT_URL_DYNAMODB wins over AWS_ENDPOINT_URL (as in the AWS SDKs); neither is
    read without DEDUP_TABLE."""
    keys = {"QSTASH_CURRENT_SIGNING_KEY": KEY, "QSTASH_NEXT_SIGNING_KEY": NEXT}
    assert configuration_errors({**keys, "DEDUP_TABLE": "dedup",
                                 "AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:8000",
                                 "AWS_ENDPOINT_URL": "http://192.0.2.7"}) == []
    assert configuration_errors({**keys, "AWS_ENDPOINT_URL": "http://192.0.2.7"}) == []


@pytest.mark.parametrize("jti", [None, "", 5, ["jwt_1"]])
def test_a_token_without_a_jti_string_is_refused(jti, dedup_env, call, effects):
    """QStash always sends a jti; a token without one (or with an empty or non-string one)
    has no token record to catch its replay: 400, before any table request."""
    body = b"{}"
    headers = ev.qstash_headers(KEY, body, URL, claims={"jti": jti})
    status, _, log = deliver(call, ev.function_url(url=URL, headers=headers, body=body))
    assert status == 400 and effects == [] and dedup_env.total() == 0
    assert log["reason"] == "the QStash token has no jti claim: it cannot be deduplicated"


@pytest.mark.parametrize("missing", ["sub", "body"])
def test_a_message_whose_token_signed_no_url_or_body_is_refused(missing, dedup_env):
    """verify() without a URL accepts a token without sub; the protocol keys records on what
    the token signed, so such a Message is refused (400), before any table request."""
    body = b'{"job":"unkeyed"}'
    token = ev.qstash_headers(KEY, body, URL, claims={missing: None})["Upstash-Signature"]
    if missing == "sub":
        claims = verify(token, KEY, body, None)
    else:  # verify refuses a token without a body hash: the claims as a caller may build them
        claims = {**verify(ev.qstash_headers(KEY, body, URL)["Upstash-Signature"], KEY, body,
                           URL), "body": None}
    request = Request("http", "POST", {"upstash-message-id": new_id()}, body, URL)
    settings = DedupSettings({**DUMMY, "AWS_ENDPOINT_URL": dedup_env.endpoint}, dynamo.TABLE,
                             3600)
    with pytest.raises(lf.Reject) as refused:
        run_protocol(Message("qstash", request, claims=claims), settings, clock_tolerance=5,
                     soketi_max_age=300)
    assert refused.value.args == (400, "the QStash token has no sub or body claim: it cannot "
                                       "be deduplicated")
    assert dedup_env.total() == 0


def test_a_delivery_without_a_message_id_is_deduplicated_on_its_token(dedup_env, call,
                                                                      effects):
    """Upstash-Message-Id is missing (a direct call with a QStash-shaped token): the message
    record is filed under the token's jti, so the same token, with or without an id, runs
    handle once."""
    body = b'{"job":"no id"}'
    jti = "jwt_" + uuid.uuid4().hex
    headers = ev.qstash_headers(KEY, body, URL, claims={"jti": jti})
    del headers["Upstash-Message-Id"]
    event = ev.function_url(url=URL, headers=headers, body=body)
    status, first, log = deliver(call, event)
    assert status == 200 and log["dedup"] == "new" and effects == ["qstash"]
    assert len(dynamo.items(dedup_env.direct, "qstash:jti-message:%s:" % jti)) == 1
    status, again, log = deliver(call, event)
    assert status == 200 and log["dedup"] == "replay" and again["body"] == first["body"]
    assert effects == ["qstash"]


CREDENTIAL_ERRORS = ["InvalidSignatureException", "UnrecognizedClientException",
                     "ExpiredTokenException", "MissingAuthenticationTokenException",
                     "InvalidClientTokenId", "CredentialsError"]


@pytest.mark.parametrize("error, said", [
    ("xml_throttle", "PutItem ThrottlingException: Rate exceeded"),
    ("html_502", "PutItem HTTP 502: (no message)"),
    ("json_without_type", "PutItem HTTP 503: (no message)"),
    ("json_not_an_object", "PutItem HTTP 500: (no message)"),
    ("long_message", "PutItem ValidationException: " + "v" * 200),
    ("two_lines", "PutItem InternalServerError: first line"),
    *[(kind, "PutItem %s: (message withheld: it is about the credentials)" % kind)
      for kind in CREDENTIAL_ERRORS],
])
def test_an_error_answer_is_a_store_error_saying_what_it_safely_can(error, said, dedup_env,
                                                                     call, effects):
    """An error answer is a store error (503, handle not called) whose reason names the
    operation and the error: DynamoDB's JSON `__type` and message (either spelling, its
    first line, 200 characters at most), a gateway's XML <Code> and <Message>, or the HTTP
    status when neither says. A message about the signature or the credentials is withheld:
    it can echo the canonical request, and with it the session token."""
    dedup_env.plan("PutItem", error)
    status, response, log = deliver(call, delivery(new_id()))
    assert status == 503 and effects == [] and dedup_env.counts["PutItem"] == 1
    assert log["reason"] == "dedup table unavailable, handle not called: " + said
    assert dynamo.ECHOED_SECRET not in json.dumps(log) + json.dumps(response)


@pytest.mark.parametrize("step", ["before handle", "after handle"])
def test_a_200_whose_json_is_not_an_object_is_a_store_error(step, dedup_env, call, effects):
    """DynamoDB answers every success with a JSON object; `[1, 2]` (or any other JSON) with
    status 200 is not taken for a success: before handle a 503, after it a completion not
    recorded (tried three times)."""
    message_id = new_id()
    if step == "before handle":
        dedup_env.plan("PutItem", "json_list")
    else:
        dedup_env.plan("UpdateItem", "json_list", "json_list", "json_list")
    status, _, log = deliver(call, delivery(message_id))
    if step == "before handle":
        assert status == 503 and effects == []
        assert log["reason"] == ("dedup table unavailable, handle not called: PutItem: the "
                                 "answer is not a JSON object")
    else:
        assert status == 200 and effects == [message_id]
        assert log["reason"] == ("completion not recorded (UpdateItem: the answer is not a "
                                 "JSON object)")


def test_a_record_with_an_attribute_of_another_type_is_a_store_error(dedup_env, call, effects):
    """The records hold strings and numbers only; a record with another type of attribute
    (a boolean, added by hand) cannot be read: 503, handle not called again."""
    message_id = new_id()
    assert deliver(call, delivery(message_id))[0] == 200
    record = dynamo.message_record(dedup_env.direct, message_id)
    dynamo.client(dedup_env.direct).update_item(
        TableName=dynamo.TABLE, Key={"id": {"S": record["id"]}},
        UpdateExpression="SET flagged = :yes", ExpressionAttributeValues={":yes": {"BOOL": True}})
    status, _, log = deliver(call, delivery(message_id))
    assert status == 503 and effects == [message_id]
    operation = "PutItem"  # the refused write's answer carries the record
    if dedup_env.name == "dynalite":  # dynalite's does not: it is read
        operation = "GetItem"
    assert log["reason"] == ("dedup table unavailable, handle not called: %s: the answer could "
                             "not be read (ValueError)" % operation)


def test_one_request_that_hangs_is_given_up_after_2_s_leaving_time_for_another(
        dedup_env, call, effects, monkeypatch):
    """A request is given at most REQUEST_SECONDS (2 s), however long the invocation has
    left: the first completion attempt, never answered, is given up then, and the next one
    records the completion well within the invocation's 8 s."""
    monkeypatch.setattr(dynamodb, "REQUEST_SECONDS", 2.0)  # as shipped (dedup_env gives 10)
    message_id = new_id()
    dedup_env.plan("UpdateItem", "hang")
    context = LiveContext(remaining_ms=8000)
    status, _, log = deliver(call, delivery(message_id), context)
    assert status == 200 and not log["reason"] and effects == [message_id]
    assert dedup_env.counts["UpdateItem"] == 2
    assert dynamo.message_record(dedup_env.direct, message_id)["state"] == "completed"


def test_every_read_is_strongly_consistent(dedup_env, call, effects):
    """A replay reads the message record its token claimed: with ConsistentRead, so a
    completion written a moment before is seen (DynamoDB's default read may miss it)."""
    event = delivery(new_id())
    assert deliver(call, event)[0] == 200
    dedup_env.reset()
    assert deliver(call, replay(event, new_id()))[2]["dedup"] == "replay"
    reads = [asked for operation, asked in dedup_env.asked if operation == "GetItem"]
    assert reads and all(asked["ConsistentRead"] is True for asked in reads), reads


def test_a_store_on_a_refused_endpoint_never_connects(dedup_env):
    """Settings whose endpoint variable was refused (the configuration answers 500 then,
    before any store is made): a store built on them anyway fails every request as a
    StoreError, connecting nowhere."""
    settings = DedupSettings({**DUMMY, "AWS_ENDPOINT_URL": "http://192.0.2.7:8000"},
                             dynamo.TABLE, 3600)
    assert settings.endpoint is None
    with pytest.raises(dynamodb.StoreError, match="the endpoint variable is refused"):
        dynamodb.DynamoDBStore(settings).get("qstash:message:x", time.monotonic() + 1)


# --- Records the protocol cannot read ----------------------------------------------------------

def completed_record(dedup_env, call, **fields):
    """A message delivered once, then its completed record's `fields` overwritten in the
    table (as a hand edit or another program might): (the message id, its delivery)."""
    message_id = new_id()
    event = delivery(message_id)
    assert deliver(call, event)[0] == 200
    record = dynamo.message_record(dedup_env.direct, message_id)
    names = {"#f%d" % index: name for index, name in enumerate(fields)}
    values = {":v%d" % index: {"N": str(value)} if isinstance(value, int) else {"S": value}
              for index, value in enumerate(fields.values())}
    update = "SET " + ", ".join("#f%d = :v%d" % (index, index) for index in range(len(fields)))
    dynamo.client(dedup_env.direct).update_item(
        TableName=dynamo.TABLE, Key={"id": {"S": record["id"]}}, UpdateExpression=update,
        ExpressionAttributeNames=names, ExpressionAttributeValues=values)
    return message_id, event


@pytest.mark.parametrize("answer", [
    "not json", "[]", '{"status": 200, "body": ""}',
    '{"status": "200", "body": "", "headers": {}}', '{"status": true, "body": "", "headers": {}}',
    '{"status": 200, "body": 1, "headers": {}}', '{"status": 200, "body": "", "headers": []}',
    '{"status": 200, "body": "", "headers": {"a": 1}}',
])
def test_a_stored_answer_that_cannot_be_read_is_a_store_error(answer, dedup_env, call, effects):
    """A completed record whose answer is not what the protocol writes (JSON with an int
    status, a text body, text headers) is never sent as the answer: the store is in doubt,
    503, and handle is not called again."""
    message_id, _ = completed_record(dedup_env, call, answer=answer)
    status, response, log = deliver(call, delivery(message_id))
    assert status == 503 and log["dedup"] == "store_error", log
    assert "a completed record's answer is not readable" in log["reason"]
    assert effects == [message_id]


@pytest.mark.parametrize("field, state", [("expires_at", "completed"),
                                          ("lease_until", "in_progress")])
def test_a_record_whose_number_is_text_is_a_store_error(field, state, dedup_env, call, effects):
    """expires_at and lease_until are numbers; text there (a hand edit) is a store error,
    503, never an exception or a guess. (Read by a replay of the first token, which reads
    the record without a conditional write: moto answers 500 to a condition comparing
    text with a number.)"""
    message_id, event = completed_record(dedup_env, call, state=state, **{field: "soon"})
    status, response, log = deliver(call, replay(event, new_id()))
    assert status == 503 and log["dedup"] == "store_error", log
    assert "a record's %s is not a number" % field in log["reason"]
    assert effects == [message_id]


# --- The transport -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (openssl), to trust through SSL_CERT_FILE."""
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.mark.parametrize("trusted", [True, False])
def test_https_endpoints_are_verified(trusted, certificate, dedup_env, call, effects,
                                      monkeypatch):
    tls = dynamo.Proxy(dedup_env.direct, serialize=True, tls=certificate)
    monkeypatch.setenv("AWS_ENDPOINT_URL", tls.endpoint)
    monkeypatch.setattr(transport, "_tls", None)  # the next request builds its ssl context anew
    if trusted:
        monkeypatch.setenv("SSL_CERT_FILE", certificate[0])
    else:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    message_id = new_id()
    try:
        status, _, log = deliver(call, delivery(message_id))
        if trusted:
            assert status == 200 and log["dedup"] == "new", log["reason"]
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


def test_an_https_endpoint_spelled_in_capitals_is_still_tls(certificate, dedup_env, call,
                                                            effects, monkeypatch):
    """`HTTPS://` is https: the credentials never go out in plain text."""
    tls = dynamo.Proxy(dedup_env.direct, serialize=True, tls=certificate)
    monkeypatch.setenv("AWS_ENDPOINT_URL", tls.endpoint.replace("https://", "HTTPS://"))
    monkeypatch.setattr(transport, "_tls", None)
    monkeypatch.setenv("SSL_CERT_FILE", certificate[0])
    try:
        status, _, log = deliver(call, delivery(new_id()))
    finally:
        tls.close()
    assert status == 200 and log["dedup"] == "new" and tls.total() == 3


@pytest.mark.parametrize("step", ["before handle", "after handle"])
def test_a_trickling_store_is_cut_off_before_the_invocation_ends(step, dedup_env, call,
                                                                 effects):
    """The store sends its answer one byte every 50 ms (seconds in all), each byte within
    any per-read timeout. Every request stops at the invocation's deadline, so the function
    answers before Lambda's end (which would kill it after handle's effect, and QStash's
    retry after the lease would run handle again). Before handle: 503; after: its answer."""
    message_id = new_id()
    context = LiveContext(remaining_ms=1500)
    if step == "before handle":
        dedup_env.plan("PutItem", "trickle")
    else:
        dedup_env.plan("UpdateItem", "trickle", "trickle", "trickle")
    status, _, log = deliver(call, delivery(message_id), context)
    assert context.answered_in_time()
    if step == "before handle":
        assert status == 503 and effects == []
    else:
        assert status == 200 and effects == [message_id]
        assert "completion not recorded" in log["reason"]


@pytest.mark.parametrize("fault", ["continue", "folded"])
def test_answers_are_read_as_http_1_1_says(fault, dedup_env, call, effects):
    """A `100 Continue` before the answer (RFC 9110 15.2.1), and Content-Length folded onto
    a continuation line (RFC 9112 5.2): both read as HTTP/1.1 says."""
    message_id = new_id()
    dedup_env.plan("PutItem", fault, fault)
    dedup_env.plan("UpdateItem", fault)
    assert deliver(call, delivery(message_id))[2]["dedup"] == "new"
    dedup_env.plan("PutItem", fault, fault)
    dedup_env.plan("GetItem", fault)
    assert deliver(call, delivery(message_id))[2]["dedup"] == "duplicate"
    assert effects == [message_id]


@pytest.mark.parametrize("size, read", [(2 ** 20, True), (2 ** 20 + 1, False)])
def test_an_answer_is_read_up_to_1_mib_and_refused_beyond(size, read, dedup_env, call, effects):
    """An answer is read up to 1 MiB, whatever length it claims (DynamoDB's never come
    near: an item is at most 400 KB); one byte more is a store error, and handle is not
    called. Here the token's write is applied and its answer padded with spaces."""
    message_id = new_id()
    dedup_env.plan("PutItem", "pad_to_%d" % size)
    status, _, log = deliver(call, delivery(message_id))
    if read:
        assert status == 200 and log["dedup"] == "new" and effects == [message_id]
    else:
        assert status == 503 and effects == [] and dedup_env.counts["PutItem"] == 1
        assert log["reason"] == ("dedup table unavailable, handle not called: PutItem failed "
                                 "on its way (AnswerTooLarge)")


@pytest.mark.parametrize("when", ["right behind", "50 ms later"])
def test_bytes_after_an_answer_are_never_read_as_the_next_answer(when, dedup_env, call, effects):
    """The store sends a forged `200 {}` after one of its answers, right behind it or a
    little later, on the kept-alive connection. Read as the answer to the next request (a
    write the table refuses: this message is done), it would run handle a second time."""
    message_id = new_id()
    if when == "right behind":
        assert deliver(call, delivery(message_id))[0] == 200
        dedup_env.plan("PutItem", "stale")
    else:  # after the completion's answer, before the next delivery reuses the connection
        dedup_env.plan("UpdateItem", "stale_later")
        assert deliver(call, delivery(message_id))[0] == 200
        time.sleep(0.2)
    status, _, log = deliver(call, delivery(message_id))
    assert status == 200 and log["dedup"] == "duplicate" and effects == [message_id], log["reason"]
