"""What the function answers: one Answer per request, whichever way it ended.

`run_handle` calls `handle` and turns whatever it does (a value, one of the exceptions in
errors.py, any other exception) into an Answer; it never raises. events.respond then gives
the Answer the shape its event came in.
"""
from __future__ import annotations

import json
import os

from .errors import NonRetryableError, Reject, RetryLater, safe_str

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for type checkers and editors only: no import at cold start
    from collections.abc import Callable
    from typing import Any

    from .message import Message

OUTCOMES = {200: "accepted", 400: "rejected", 401: "rejected", 409: "deferred",
            429: "deferred", 489: "dropped", 500: "error", 503: "deferred"}
INTERNAL_ERROR = '{"error": "internal error"}'
PACKAGE_FOLDER = os.path.dirname(os.path.abspath(__file__))
MAX_FRAMES = 20  # of a traceback in the log line, innermost kept


class Answer:
    """What the function answers, and the reason it logs (never sent for a 401).

    outcome: the log line's word for it (accepted, rejected, deferred, dropped, duplicate,
    health_check, error). dedup: what the deduplication table decided, or None. trace: where
    `handle` failed (file:line in function), for the log line.
    """

    def __init__(self, status: int, body: str, reason: str | None = None,
                 headers: dict[str, str] | None = None, outcome: str | None = None,
                 trace: list[str] | None = None, dedup: str | None = None) -> None:
        self.status = status
        self.body = body
        self.reason = reason
        self.headers = headers or {}
        self.outcome = outcome or OUTCOMES.get(status) or _outcome_of_other(status)
        self.trace = trace
        self.dedup = dedup


def _outcome_of_other(status: int) -> str:
    if status < 500:
        return "rejected"
    return "error"


def run_handle(handle: Callable[[Message], Any], message: Message) -> Answer:
    """Call `handle` and turn whatever it does into an answer: it never raises."""
    try:
        result = handle(message)
    except NonRetryableError as exc:
        reason = "NonRetryableError: " + safe_str(exc)
        return Answer(489, json.dumps({"error": safe_str(exc)}), reason,
                      {"Upstash-NonRetryable-Error": "true"})
    except RetryLater as exc:
        headers = {}
        if exc.seconds is not None:  # None: no header, QStash uses its default backoff
            headers["Retry-After"] = str(exc.seconds)
        body = json.dumps({"error": safe_str(exc.reason), "retryAfter": exc.seconds})
        return Answer(429, body, "RetryLater: " + safe_str(exc), headers)
    except Reject as exc:
        return answer_for_reject(exc)
    except Exception as exc:  # QStash retries a 500
        reason = "handle raised %s: %s" % (type(exc).__name__, safe_str(exc))
        return Answer(500, INTERNAL_ERROR, reason, trace=user_frames(exc))
    try:
        body = json.dumps(result, default=str, allow_nan=False)
    except Exception as exc:  # noqa: BLE001 - a value json cannot write, or whose str raises
        reason = "handle returned a value that is not JSON-serializable (%s)" % type(exc).__name__
        return Answer(500, INTERNAL_ERROR, reason)
    return Answer(200, body)


def answer_for_reject(exc: Reject) -> Answer:
    """Reject(status, reason) as an answer; a status outside 400-599 becomes a 500."""
    args = exc.args
    status = args[0] if args else None
    reason = "rejected"
    if len(args) > 1:
        reason = safe_str(args[1])
    if type(status) is not int or not 400 <= status <= 599:
        reason = "Reject with status %.20r, not 400-599: %s" % (status, reason)
        status = 500
    return Answer(status, json.dumps({"error": reason}), reason)


def user_frames(exc: BaseException) -> list[str]:
    """Where `handle` failed: file:line in function for every frame outside this package
    (your lambda_function.py, your own modules, the libraries they call), innermost last.
    No source lines, no locals, no message: nothing of the body, a key or a token."""
    frames = []
    traceback = exc.__traceback__
    while traceback is not None:
        code = traceback.tb_frame.f_code
        if os.path.dirname(os.path.abspath(code.co_filename)) != PACKAGE_FOLDER:
            name = os.path.basename(code.co_filename)
            frames.append("%s:%s in %s" % (name, traceback.tb_lineno, code.co_name))
        traceback = traceback.tb_next
    return frames[-MAX_FRAMES:]
