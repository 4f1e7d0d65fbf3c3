"""The deduplication store: the five single-record operations the protocol (dedup.py) needs.

A store keeps records (plain dicts with an `id`, ints and strings) and answers each write
atomically, by its condition. dynamodb.py implements it on a DynamoDB table; a test may
hand the protocol any other implementation. Every failure of the store, whatever its
cause, is a StoreError; a write whose condition did not hold is a ConditionFailedError
carrying the record that failed it.

Every operation takes a `deadline`, a time.monotonic() value: the operation is over by then,
answered or failed (StoreError), whatever pace the store keeps. The protocol derives it from
the time Lambda leaves the invocation, so that the function always answers before it is
stopped.

Record fields the conditions read: `expires_at` (epoch seconds: a record past it counts as
absent), `state` ("in_progress" or "completed"), `owner` (who wrote it) and `lease_until`
(epoch milliseconds: an in-progress record past it may be taken over).
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for type checkers and editors only: no import at cold start
    from typing import Protocol, Union

    Record = dict[str, Union[str, int]]

    class Store(Protocol):
        """What the protocol asks of a store. Each method is one atomic request, over by
        `deadline` (time.monotonic())."""

        def put_if_absent(self, record: Record, now_s: int, deadline: float) -> None:
            """Write `record` unless a live one has its id (absent, or `expires_at` < now_s)."""

        def put_unless_held(self, record: Record, now_s: int, now_ms: int,
                            deadline: float) -> Record | None:
            """Write `record` unless its id is held: writes when there is no live record, or
            when it is in progress with `lease_until` < now_ms (taken over). Returns the record
            it replaced, or None."""

        def complete(self, key: str, owner: str, answer: str, status: int, expires_at: int,
                     deadline: float) -> None:
            """Turn the in-progress record `key` that `owner` holds into a completed one with
            the answer; removes its lease."""

        def release(self, key: str, owner: str, deadline: float) -> None:
            """Delete the in-progress record `key` if `owner` still holds it."""

        def get(self, key: str, deadline: float) -> Record | None:
            """The record (a consistent read), or None."""


class StoreError(Exception):
    """The store could not be used (unreachable, throttled, refused, too slow, answered
    garbage). The text names what happened and never holds a credential, token or
    signature."""


class ConditionFailedError(Exception):
    """A conditional write found the record in another state; `record` is that record, or
    None when the store's answer did not carry it (dynalite)."""

    def __init__(self, record: Record | None) -> None:
        super().__init__("the condition failed")
        self.record = record
