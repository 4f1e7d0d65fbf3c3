"""The path of every request, in order:

    event -> read (events) -> configure (config) -> authenticate -> run once (dedup, only
    with DEDUP_TABLE) -> handle (answers.run_handle) -> respond (events) -> log (+ metrics)

`receive(event, context, handle)` is the whole of it, and never raises: every outcome is a
response in the event's shape and one JSON log line.

Optional features cost nothing unless configured: the modules of deduplication, metrics
and soketi are imported at Init when their variable is set then (so their cost shows in
Init Duration and SnapStart snapshots hold them), else on first use.
"""
from __future__ import annotations

import json
import time

from . import config
from .answers import INTERNAL_ERROR, Answer, answer_for_reject, run_handle
from .authenticate import authenticate
from .errors import Reject, SignatureError
from .events import event_shape, read_request, respond
from .message import header_count

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for type checkers and editors only: no import at cold start
    from collections.abc import Callable
    from typing import Any

    from .events import Request
    from .message import Message

    Handle = Callable[[Message], Any]


def import_configured_features() -> None:
    """Import the modules of the optional features the environment turns on now."""
    features = config.configured_features()
    if "dedup" in features:
        from . import dedup, dedup_config, dynamodb  # noqa: F401
    if "metrics" in features:
        from . import metrics  # noqa: F401
    if "soketi" in features:
        from . import node_json, pusher  # noqa: F401


import_configured_features()

_cold_start = True  # true until this container's first request has been answered


def receive(event: Any, context: Any, handle: Handle) -> dict[str, Any]:
    """Verify the event, run `handle(message)` once for it, and answer: the response for the
    event's shape. Never raises."""
    global _cold_start
    cold_start = _cold_start
    _cold_start = False
    started = time.perf_counter()
    configuration: config.Configuration | None = None  # until it has been read
    shape = event_shape(event)
    request = None
    message = None
    try:
        configuration, problems = config.read()
        request = read_request(event, shape)
        if problems:  # a broken configuration fails every request alike, health checks too
            raise Reject(500, problems[0])
        if request.is_alb_health_check:
            answer = Answer(200, '{"ok": true}', "ALB health check", outcome="health_check")
        else:
            message = authenticate(request, configuration)
            answer = run_once(message, context, handle, configuration)
    except SignatureError as exc:
        answer = Answer(401, '{"error": "invalid signature"}', str(exc))
    except Reject as exc:
        answer = answer_for_reject(exc)
    except Exception as exc:  # noqa: BLE001 - fail closed on anything else, with a response
        answer = Answer(500, INTERNAL_ERROR,
                        "unexpected %s while verifying or deduplicating" % type(exc).__name__)
    milliseconds = (time.perf_counter() - started) * 1000
    line = log_line(answer, shape, request, message, milliseconds, context, cold_start)
    if configuration is not None and configuration.metrics_namespace:
        from . import metrics

        line.update(metrics.metrics_fields(line, configuration.metrics_namespace,
                                           configuration.function_name,
                                           int(time.time() * 1000)))
    print(json.dumps(line, default=str), flush=True)
    return respond(shape, answer.status, answer.headers, answer.body)


def run_once(message: Message, context: Any, handle: Handle,
             configuration: config.Configuration) -> Answer:
    """`handle`'s answer; with DEDUP_TABLE, at most once per message (dedup.py)."""
    def produce_answer() -> Answer:
        return run_handle(handle, message)

    settings = configuration.dedup
    if settings is None:
        return produce_answer()
    from . import dedup, dynamodb

    store = dynamodb.DynamoDBStore(settings)
    return dedup.run_once(message, context, produce_answer, settings, store,
                          clock_tolerance=configuration.clock_tolerance,
                          soketi_max_age=configuration.soketi_max_age)


def log_line(answer: Answer, shape: str, request: Request | None, message: Message | None,
             milliseconds: float, context: Any, cold_start: bool) -> dict[str, Any]:
    """The one JSON log line of a request. Header values are unsigned: on a request that was
    not verified they are logged as `unverified_*`, so nobody mistakes them for facts."""
    headers = request.headers if request else {}
    line: dict[str, Any] = {
        "outcome": answer.outcome,
        "status": answer.status,
        "reason": answer.reason and answer.reason[:600],
        "shape": shape,
        "source": message and message.source,
    }
    claimed_id = headers.get("upstash-message-id", "")[:128] or None
    claimed_retried = header_count(headers.get("upstash-retried"))
    if message:
        line["message_id"] = claimed_id
        line["retried"] = claimed_retried
        line["token_id"] = message.token_id
    else:
        line["unverified_message_id"] = claimed_id
        line["unverified_retried"] = claimed_retried
    line["dedup"] = answer.dedup  # null unless DEDUP_TABLE is set
    if answer.trace:
        line["traceback"] = answer.trace
    line["ms"] = round(milliseconds, 3)
    line["request_id"] = getattr(context, "aws_request_id", None)
    line["cold_start"] = cold_start
    return line
