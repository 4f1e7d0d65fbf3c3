"""Deduplication, the protocol: `handle` runs once per message when DEDUP_TABLE is set.

Imported only when DEDUP_TABLE is set. The pipeline calls one function,
`run_once(message, context, produce_answer, settings, store)`: it decides from the store
whether this delivery runs `handle` (through `produce_answer`), gets the first delivery's
stored answer, or is deferred, and records the result. The store (store.py; dynamodb.py
on a DynamoDB table) is handed in.

Records (one each, all with `expires_at` in epoch seconds, read as absent once past):
  qstash:jti:<jti>          the token was used: `message` = the message record it claimed,
                            `owner` = the request that used it
  qstash:message:<id>       one QStash message (Upstash-Message-Id): `state` in_progress or
                            completed, `owner`, `lease_until` (epoch ms), `answer`
  qstash:jti-message:<jti>  the message record of a QStash delivery without a message id
  soketi:signature:<hex>    one soketi/Pusher webhook: its verified signature identifies it
(an id or jti over 256 characters is replaced by its SHA-256, to bound the key.)

Why two records for QStash. The message id is an unsigned header; the token's `jti` is
signed. A QStash retry carries a new token with the same message id, so the message record
catches retries. A replayed token carries the same `jti` under any message id its sender
likes, so only the `jti` catches replays, and a replay must not write under the id it claims
(it could suppress that real message later). Hence the order, at most 3 requests for a new
message and 2 for a duplicate:
  1. put_if_absent qstash:jti:<jti>: the token is used now. If it exists, this is a
     replay: answer from the message record the token first claimed (get), never write.
  2. put_unless_held the message record as in_progress with our lease. A completed record
     is a duplicate: its answer, no `handle`. An in_progress one with time left: 409 with
     Retry-After.
  3. After `handle`: complete (2xx and 489) or release (anything else, so the retry runs
     `handle` again), each only if we still own the record.
One thing no table can settle: the first use of a token is trusted for its message id, since
nothing signed carries it. Whoever holds a token first can file its effect under another id;
it still runs `handle` once for that token. A token whose delivery never reached the table
(answered 503) stays unused until then.

Leases. The lease is the invocation's remaining time (Lambda kills it by then) plus one
second for clock differences between hosts; 900 s (Lambda's longest timeout) when there is
no context. After a kill, the next delivery past the lease takes the record over.

Failures. The store unreachable, throttled or refusing: 503 with Retry-After, `handle` not
called. The completion write is tried three times; if it still fails after `handle`
succeeded, the answer is the one `handle` gave (the effect happened; a retry would repeat
it) and the failure is logged. The record then stays in progress: duplicates get 409 until
the lease passes, and one arriving after that would run `handle` again (QStash itself stops
at the 2xx). A request whose connection broke is sent once more by the store; every record
carries its writer's owner (the request id and a nonce), so a write that had in fact been
applied is recognised as ours, not as someone else's.
"""
from __future__ import annotations

import hashlib
import json
import os
import time

from .answers import Answer
from .errors import Reject
from .store import ConditionFailedError, StoreError

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for type checkers and editors only: no import at cold start
    from collections.abc import Callable
    from typing import Any

    from .config import DedupSettings
    from .message import Message
    from .store import Record, Store

MAX_STORED_BODY = 64 * 1024  # bytes of answer body kept for duplicates
NO_CONTEXT_LEASE_MS = 900 * 1000  # Lambda's longest timeout
LEASE_MARGIN_MS = 1000  # clock differences between the hosts running deliveries
STORE_RETRY_AFTER = 30  # seconds QStash waits after a 503 (table unavailable)
COMPLETION_ATTEMPTS = 3  # the one write worth retrying: `handle` has had its effect
KEY_PART_MAX = 256  # characters of an id or jti kept as is in a record key
IN_PROGRESS = "in_progress"
COMPLETED = "completed"


def run_once(message: Message, context: Any, produce_answer: Callable[[], Answer],
             settings: DedupSettings, store: Store) -> Answer:
    """Run `produce_answer()` (which calls `handle`) at most once per message.

    The answer's `dedup` tells what the table decided: "new", "taken_over", "duplicate"
    (the stored answer), "in_progress" (409), "replay" (a used token: the stored answer or
    409), "store_error" (503).
    """
    # The owner of the records this invocation writes: the request id (for the reader of the
    # table) and a nonce, since Lambda retries an asynchronous invoke under the same id.
    request_id = getattr(context, "aws_request_id", None) or "local"
    owner = "%s/%s" % (request_id, os.urandom(6).hex())
    try:
        return Deduplication(store, message, context, owner, settings.ttl).run(produce_answer)
    except StoreError as exc:
        reason = "dedup table unavailable, handle not called: %s" % exc
        return Answer(503, json.dumps({"error": "deduplication store unavailable"}), reason,
                      {"Retry-After": str(STORE_RETRY_AFTER)}, outcome="deferred",
                      dedup="store_error")


def key_part(value: str) -> str:
    """An id as it goes into a record key: itself, or its SHA-256 when long or not ASCII."""
    if len(value) <= KEY_PART_MAX and value.isascii() and value.isprintable():
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def delivery_keys(message: Message) -> tuple[str | None, str]:
    """(token record key or None, message record key) for a verified Message.
    Reject(400) when a QStash token has no jti (QStash always sends one)."""
    if message.source == "soketi":
        return None, "soketi:signature:" + key_part(message.headers["x-pusher-signature"])
    jti = message.claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise Reject(400, "the QStash token has no jti claim: it cannot be deduplicated")
    token_key = "qstash:jti:" + key_part(jti)
    if message.message_id:
        return token_key, "qstash:message:" + key_part(message.message_id)
    return token_key, "qstash:jti-message:" + key_part(jti)


def remaining_ms(context: Any) -> int:
    """The invocation's remaining time, or Lambda's longest timeout without a context."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return NO_CONTEXT_LEASE_MS
    return int(remaining())


def seconds_to_wait(wait_ms: int) -> int:
    """Whole seconds, rounded up, for Retry-After."""
    whole, part = divmod(wait_ms, 1000)
    if part:
        return whole + 1
    return whole


class Deduplication:
    """The protocol for one delivery (see the module's docstring)."""

    def __init__(self, store: Store, message: Message, context: Any, owner: str,
                 ttl: int) -> None:
        self.store = store
        self.message = message
        self.owner = owner
        self.now_ms = int(time.time() * 1000)
        self.now_s = self.now_ms // 1000
        self.lease_until = self.now_ms + remaining_ms(context) + LEASE_MARGIN_MS
        self.expires_at = self.now_s + ttl

    def run(self, produce_answer: Callable[[], Answer]) -> Answer:
        token_key, message_key = delivery_keys(self.message)
        if token_key is not None:
            used = self.use_token(token_key, message_key)
            if used is not None:
                return self.answer_replay(used)
        previous, acquired = self.acquire(message_key)
        if not acquired:
            return self.answer_duplicate(previous)
        dedup = "new"
        if previous is not None:
            dedup = "taken_over"
        try:
            answer = produce_answer()
        except BaseException:
            self.release(message_key)
            raise
        if 200 <= answer.status < 300 or answer.status == 489:
            note = self.complete(message_key, answer.status, answer.body, answer.headers)
        else:
            note = self.release(message_key)
        if note and answer.reason:
            answer.reason = "%s; %s" % (answer.reason, note)
        elif note:
            answer.reason = note
        answer.dedup = dedup
        return answer

    def use_token(self, token_key: str, message_key: str) -> Record | None:
        """Step 1: record the token as used. None when it is fresh; when it was used before
        (a replay), the record of that first use ({} if it vanished meanwhile)."""
        record: Record = {"id": token_key, "message": message_key, "owner": self.owner,
                          "expires_at": self.expires_at}
        try:
            self.store.put_if_absent(record, self.now_s)
        except ConditionFailedError as failed:
            used = failed.record or self.store.get(token_key) or {}
            if used.get("owner") == self.owner:
                return None  # our own write, applied before its connection broke
            return used
        return None

    def acquire(self, message_key: str) -> tuple[Record | None, bool]:
        """Step 2: (the record that was there or None, whether we now own the message)."""
        record: Record = {"id": message_key, "state": IN_PROGRESS, "owner": self.owner,
                          "lease_until": self.lease_until, "expires_at": self.expires_at}
        try:
            previous = self.store.put_unless_held(record, self.now_s, self.now_ms)
        except ConditionFailedError as failed:
            current = failed.record or self.store.get(message_key)
            if current is not None and current.get("owner") == self.owner:
                return None, True  # our own write, applied before its connection broke
            return current, False
        if previous is None or int(previous.get("expires_at", 0)) < self.now_s:
            return None, True  # absent, or expired: counts as absent
        return previous, True  # its lease had passed: taken over

    def answer_duplicate(self, record: Record | None, dedup: str = "duplicate") -> Answer:
        """The stored answer of a completed message; 409 while another delivery holds it."""
        if record is not None and record.get("state") == COMPLETED and \
                int(record.get("expires_at", 0)) >= self.now_s:
            stored = json.loads(str(record["answer"]))
            reason = "already processed (first answer %d), handle not called" % stored["status"]
            return Answer(stored["status"], stored["body"], reason, stored["headers"],
                          outcome="duplicate", dedup=dedup)
        wait_ms = 1000
        if record is not None and record.get("state") == IN_PROGRESS:
            wait_ms = max(1000, int(record.get("lease_until", 0)) - self.now_ms)
        seconds = seconds_to_wait(wait_ms)
        reason = "in progress in another delivery, handle not called; retry in %ds" % seconds
        if dedup == "duplicate":
            dedup = "in_progress"
        return Answer(409, json.dumps({"error": "this message is being processed; retry later"}),
                      reason, {"Retry-After": str(seconds)}, outcome="deferred", dedup=dedup)

    def answer_replay(self, used: Record) -> Answer:
        """A used token: never runs `handle`, never writes. The answer of the message the
        token first claimed when it is complete, else 409 (a genuine QStash delivery then
        comes back with a fresh token)."""
        claimed = used.get("message")
        record = None
        if claimed:
            record = self.store.get(str(claimed))
        answer = self.answer_duplicate(record, "replay")
        answer.reason = "token already used (replay): %s" % answer.reason
        return answer

    def complete(self, message_key: str, status: int, body: str,
                 headers: dict[str, str]) -> str | None:
        """Step 3 after success: the record becomes completed with the answer, if still ours.
        Returns a note for the log when it could not be written."""
        encoded = (body or "").encode("utf-8", "surrogatepass")
        if len(encoded) > MAX_STORED_BODY:
            body = json.dumps({"note": "the first answer's body (%d bytes) was over 64 KB and "
                                       "is not stored" % len(encoded)})
        answer = json.dumps({"status": status, "body": body, "headers": headers or {}})
        failure = None
        for attempt in range(COMPLETION_ATTEMPTS):
            try:
                self.store.complete(message_key, self.owner, answer, status, self.expires_at)
                return None
            except ConditionFailedError as failed:
                current = failed.record or self.get_or_none(message_key)
                if current and current.get("owner") == self.owner and \
                        current.get("state") == COMPLETED:
                    return None  # our own write, applied before its connection broke
                return "completion not recorded: another delivery took the message over"
            except StoreError as exc:  # worth retrying: a lost completion means a 409 until
                failure = exc  # the lease passes, and a duplicate after it runs again
                time.sleep(0.05 * (attempt + 1))
        return "completion not recorded (%s)" % failure

    def release(self, message_key: str) -> str | None:
        """Step 3 after a failure: delete the record, if still ours, so a retry runs again."""
        try:
            self.store.release(message_key, self.owner)
        except ConditionFailedError:
            return "release skipped: the record is no longer ours"
        except StoreError as exc:
            return "release failed (%s): a retry waits for the lease" % exc
        return None

    def get_or_none(self, key: str) -> Record | None:
        """The record, or None also when the store cannot be read (for log notes only)."""
        try:
            return self.store.get(key)
        except StoreError:
            return None
