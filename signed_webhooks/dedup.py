"""Deduplication, the protocol: `handle` runs once per message when DEDUP_TABLE is set.

Imported only when DEDUP_TABLE is set. The pipeline calls `run_once`: it decides from the
store (store.py; dynamodb.py on a DynamoDB table) whether this delivery runs `handle`
(through `produce_answer`), gets the first delivery's stored answer, or is deferred, and
records the result (records.py: the records' keys, fields and lifetimes). At most 3
requests for a new message and 2 for a duplicate:
  1. put_if_absent the token record. If it exists, a replay: answer from the record the
     token first claimed (get), never write.
  2. put_unless_held the message record, in_progress with our lease. Completed: a
     duplicate, its answer, no `handle`. In progress with time left: 409 with Retry-After.
  3. After `handle`: complete (2xx and 489) or release (anything else, so a retry runs
     `handle` again), each only if the record is still ours.
Every message record read is checked against what this delivery's token signed: one that
disagrees with its key (a table edited by hand, a bug) is a store error, never an answer.

Time. The lease is the invocation's remaining time plus 1 s for clock differences between
hosts (900 s without a context); after it, the next delivery takes the record over. Every
store request ends by one deadline, the invocation's end less DEADLINE_MARGIN_S: the function
answers before Lambda kills it (killed after `handle`'s effect, it would be retried, and the
retry after the lease would run `handle` again). A completion attempt that has no time to
finish is not started.

Failures. The store unusable before `handle`: 503 without Retry-After, so that QStash's own
backoff (12 s, 2 min 28 s, 30 min, 6 h) outlasts an outage, whatever it makes of the header;
`handle` is not called. After `handle`, its answer stands (a retry would repeat its effect):
the completion write is tried three times, with pauses, and a failure is logged; the record
then stays in progress, 409 until its lease passes. A request whose connection broke is sent
again by the store; every record carries its writer's `owner` (request id and nonce), so a
write that was in fact applied is recognised as ours.
"""
from __future__ import annotations

import json
import math
import os
import time

from .answers import Answer
from .records import delivery_keys, number, signed_fields, stored_answer, verifiable_until
from .store import ConditionFailedError, StoreError

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for type checkers and editors only: no import at cold start
    from collections.abc import Callable
    from typing import Any

    from .dedup_config import DedupSettings
    from .message import Message
    from .store import Record, Store

MAX_STORED_BODY = 64 * 1024  # bytes of answer body kept for duplicates
NO_CONTEXT_LEASE_MS = 900 * 1000  # Lambda's longest timeout
LEASE_MARGIN_MS = 1000  # clock differences between the hosts running deliveries
DEADLINE_MARGIN_S = 0.5  # kept after the last store request, to answer before Lambda's end
COMPLETION_PAUSES = (0.0, 0.05, 0.1)  # seconds before each attempt of the completion write
ATTEMPT_MIN_S = 0.1  # an attempt with less time than this before the deadline is not started
IN_PROGRESS = "in_progress"
COMPLETED = "completed"


def run_once(message: Message, context: Any, produce_answer: Callable[[], Answer],
             settings: DedupSettings, store: Store, *, clock_tolerance: float,
             soketi_max_age: float) -> Answer:
    """Run `produce_answer()` (which calls `handle`) at most once per message.

    clock_tolerance, soketi_max_age: how long past its own time a signature still verifies
    (QSTASH_CLOCK_TOLERANCE, SOKETI_MAX_AGE), so its record outlives it. The answer's
    `dedup` tells what the table decided: "new", "taken_over", "duplicate" (the stored
    answer), "in_progress" (409), "replay" (a used token: the stored answer or 409),
    "store_error" (503).
    """
    # The owner of the records this invocation writes: the request id (for the reader of the
    # table) and a nonce, since Lambda retries an asynchronous invoke under the same id.
    request_id = getattr(context, "aws_request_id", None) or "local"
    owner = "%s/%s" % (request_id, os.urandom(6).hex())
    signed_until = verifiable_until(message, clock_tolerance, soketi_max_age)
    try:
        return Deduplication(store, message, context, owner, settings.ttl,
                             signed_until).run(produce_answer)
    except StoreError as exc:
        reason = "dedup table unavailable, handle not called: %s" % exc
        return Answer(503, json.dumps({"error": "deduplication store unavailable"}), reason,
                      outcome="deferred", dedup="store_error")


def remaining_ms(context: Any) -> int:
    """The invocation's remaining time, or Lambda's longest timeout without a context."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return NO_CONTEXT_LEASE_MS
    return int(remaining())


class Deduplication:
    """The protocol for one delivery (see the module's docstring)."""

    def __init__(self, store: Store, message: Message, context: Any, owner: str, ttl: int,
                 signed_until: int | None) -> None:
        self.store = store
        self.message = message
        self.owner = owner
        self.signed: Record = {}  # what the token signed, stored in and checked against records
        if message.source == "qstash":
            self.signed = signed_fields(message)
        self.now_ms = int(time.time() * 1000)
        self.now_s = self.now_ms // 1000
        remaining = remaining_ms(context)
        self.lease_until = self.now_ms + remaining + LEASE_MARGIN_MS
        self.deadline = time.monotonic() + remaining / 1000 - DEADLINE_MARGIN_S
        self.expires_at = self.now_s + ttl
        self.token_expires_at = self.expires_at  # a record outlives its signature
        if signed_until is not None:
            self.token_expires_at = max(self.expires_at, signed_until)
        if message.source == "soketi":  # its signature is its token: one record is both
            self.expires_at = self.token_expires_at

    def run(self, produce_answer: Callable[[], Answer]) -> Answer:
        token_key, message_key = delivery_keys(self.message, self.signed)
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
                          "expires_at": self.token_expires_at}
        try:
            self.store.put_if_absent(record, self.now_s, self.deadline)
        except ConditionFailedError as failed:
            used = failed.record or self.store.get(token_key, self.deadline) or {}
            if used.get("owner") == self.owner:
                return None  # our own write, applied before its connection broke
            return used
        return None

    def acquire(self, message_key: str) -> tuple[Record | None, bool]:
        """Step 2: (the record that was there or None, whether we now own the message)."""
        record: Record = {"id": message_key, "state": IN_PROGRESS, "owner": self.owner,
                          "lease_until": self.lease_until, "expires_at": self.expires_at,
                          **self.signed}
        try:
            previous = self.store.put_unless_held(record, self.now_s, self.now_ms,
                                                  self.deadline)
        except ConditionFailedError as failed:
            current = self.checked(failed.record or self.store.get(message_key, self.deadline))
            if current is not None and current.get("owner") == self.owner:
                return None, True  # our own write, applied before its connection broke
            return current, False
        if previous is None or number(previous, "expires_at") < self.now_s:
            return None, True  # absent, or expired: counts as absent
        return previous, True  # its lease had passed: taken over

    def checked(self, record: Record | None) -> Record | None:
        """`record`, once it is seen to hold what this delivery's token signed; StoreError
        when it holds another body or URL than its key names."""
        for name, value in self.signed.items():
            if record is not None and record.get(name) != value:
                raise StoreError("a message record holds another signed %s than its key "
                                 "names" % name)
        return record

    def answer_duplicate(self, record: Record | None, dedup: str = "duplicate") -> Answer:
        """The stored answer of a completed message; 409 while another delivery holds it."""
        if record is not None and record.get("state") == COMPLETED and \
                number(record, "expires_at") >= self.now_s:
            answer = stored_answer(record)
            answer.reason = "already processed (first answer %d), handle not called" % (
                answer.status)
            answer.outcome = "duplicate"
            answer.dedup = dedup
            return answer
        seconds = 1  # nothing in progress (a replay of a message not done): soon
        if record is not None and record.get("state") == IN_PROGRESS:  # when its lease ends
            lease_left_ms = number(record, "lease_until") - self.now_ms
            seconds = max(1, math.ceil(lease_left_ms / 1000))
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
            record = self.checked(self.store.get(str(claimed), self.deadline))
        answer = self.answer_duplicate(record, "replay")
        answer.reason = "token already used (replay): %s" % answer.reason
        return answer

    def complete(self, message_key: str, status: int, body: str,
                 headers: dict[str, str]) -> str | None:
        """Step 3 after success: the record becomes completed with the answer, if still ours.
        Each attempt only when it has time to finish before the deadline. Returns a note for
        the log when it could not be written."""
        encoded = (body or "").encode("utf-8", "surrogatepass")
        if len(encoded) > MAX_STORED_BODY:
            body = json.dumps({"note": "the first answer's body (%d bytes) was over 64 KB and "
                                       "is not stored" % len(encoded)})
        answer = json.dumps({"status": status, "body": body, "headers": headers or {}})
        note = "completion not recorded (no time left before the invocation ends)"
        for pause in COMPLETION_PAUSES:
            if time.monotonic() + pause + ATTEMPT_MIN_S > self.deadline:
                return note
            if pause:
                time.sleep(pause)
            try:
                self.store.complete(message_key, self.owner, answer, status, self.expires_at,
                                    self.deadline)
                return None
            except ConditionFailedError as failed:
                current = failed.record or self.get_or_none(message_key)
                if current and current.get("owner") == self.owner and \
                        current.get("state") == COMPLETED:
                    return None  # our own write, applied before its connection broke
                return "completion not recorded: another delivery took the message over"
            except StoreError as exc:  # worth retrying: a lost completion means a 409 until
                note = "completion not recorded (%s)" % exc  # the lease passes, and more
        return note

    def release(self, message_key: str) -> str | None:
        """Step 3 after a failure: delete the record, if still ours, so a retry runs again."""
        try:
            self.store.release(message_key, self.owner, self.deadline)
        except ConditionFailedError:
            return "release skipped: the record is no longer ours"
        except StoreError as exc:
            return "release failed (%s): a retry waits for the lease" % exc
        return None

    def get_or_none(self, key: str) -> Record | None:
        """The record, or None also when the store cannot be read (for log notes only)."""
        try:
            return self.store.get(key, self.deadline)
        except StoreError:
            return None
