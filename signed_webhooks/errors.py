"""The exceptions: what `handle` raises to choose its answer, and what the checks raise.

Raised in `handle` (import them from `lambda_function` or `signed_webhooks`):
    NonRetryableError   489: the message can never succeed; QStash stops and moves it to the DLQ
    RetryLater          429 with Retry-After: the message is fine, but not now
    Reject              a 4xx/5xx of your choice
Raised by the receiver's own checks:
    SignatureError      401: the request is not provably from its sender
    Reject              400 for an event no AWS service sends, 500 for a broken configuration
"""
from __future__ import annotations

import math

RETRY_AFTER_MAX = 86400  # QStash ignores a Retry-After over one day (then: its own backoff)


class SignatureError(Exception):
    """The request is not provably from its sender (401). The message names the failed check."""


class Reject(Exception):
    """Reject(status, reason): stop with that HTTP status (400-599); the reason is logged and
    returned. Raised by the handler's own checks, and usable in `handle`."""


class NonRetryableError(Exception):
    """Raise in `handle` for a message that can never succeed (unknown order, invalid payload):
    the answer is 489 with `Upstash-NonRetryable-Error: true`, QStash stops retrying and moves
    the message to the DLQ (and calls its failure callback, if any).

    Use RetryLater instead when the message is fine but now is the wrong moment; let any other
    exception escape (500) for an unexpected fault, which QStash retries on its own backoff.
    """


class RetryLater(Exception):
    """Raise in `handle` when the message is fine but cannot be processed yet (a rate limit,
    a dependency that is down, a resource still being created): the answer is 429 with
    `Retry-After: <seconds>`, and QStash makes its next attempt after that delay instead of
    its default backoff, min(86400, e^(2.5n)) s after the n-th retry: about 12 s, 2 m 28 s,
    30 m, then 6 h. A 429 is still a failed attempt: it counts against the message's
    retries (3 by default), and after the last one QStash moves the message to the DLQ.

    seconds: int, float, numeric str or datetime.timedelta. Rounded up to whole seconds and
    clamped to 0..86400 (0: retry now; above a day QStash would ignore the header). NaN, an
    unparsable value or None leave `seconds` None: 429 without Retry-After, so QStash uses its
    default backoff. reason: logged, and returned in the 429 body.

    Use NonRetryableError instead when no later attempt can succeed.
    """

    def __init__(self, seconds: object = None, reason: str = "") -> None:
        self.seconds: int | None = retry_after_seconds(seconds)
        self.reason: str = str(reason)
        super().__init__(self.seconds, self.reason)

    def __str__(self) -> str:
        if self.seconds is None:
            return "retry on QStash's default backoff: " + self.reason
        return "retry after %ds: %s" % (self.seconds, self.reason)


def retry_after_seconds(value: object) -> int | None:
    """Whole seconds for Retry-After (RFC 9110: delay-seconds is digits only), rounded up so
    QStash never comes back earlier than asked, clamped to 0..RETRY_AFTER_MAX; None for
    something that is not a number (QStash then uses its default backoff)."""
    if hasattr(value, "total_seconds"):  # datetime.timedelta
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = value if isinstance(value, int) else float(value)  # an int may exceed floats
    except ValueError:
        return None
    if number != number:  # NaN
        return None
    if number <= 0:
        return 0
    if number >= RETRY_AFTER_MAX:
        return RETRY_AFTER_MAX
    return math.ceil(number)


def safe_str(value: object) -> str:
    """str(value), even when its __str__ raises."""
    try:
        return str(value)
    except Exception as exc:  # noqa: BLE001
        return "(str() raised %s)" % type(exc).__name__
