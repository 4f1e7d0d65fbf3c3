"""Metrics: CloudWatch Embedded Metric Format on the request's one log line.

Imported only when METRICS_NAMESPACE is set (config.py checks it against CloudWatch's
rules). The log line then also carries an `_aws` block, and CloudWatch Logs turns that line
into metrics: no API call, no extra line. Unset, the line has no `_aws` block and nothing is
billed.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for type checkers and editors only: no import at cold start
    from typing import Any

METRIC_OUTCOMES = ("accepted", "duplicate", "rejected", "deferred", "dropped", "error")
METRIC_DIMENSIONS = [["function_name"], ["function_name", "source"]]


def metrics_fields(log: dict[str, Any], namespace: str, function_name: str,
                   now_ms: int) -> dict[str, Any]:
    """The members to merge into the log line `log` so that CloudWatch extracts metrics from it.

    `log` must hold `outcome`, `ms`, `source` and `cold_start`. Every outcome is a Count metric
    of its own name, 1 for this request's outcome and 0 for the others: an alarm on `rejected`
    then sees zeros while requests go well, rather than missing data, and any outcome's
    SampleCount is the number of requests, for rates. `latency` is `ms` (Milliseconds) and
    `cold_starts` is 1 on a cold start (Count). Each metric is published twice: per function,
    the one to alarm on, and per function and source, to break it down.
    """
    fields: dict[str, Any] = {
        "_aws": {
            "Timestamp": now_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": METRIC_DIMENSIONS,
                "Metrics": [{"Name": name, "Unit": "Count"} for name in METRIC_OUTCOMES] + [
                    {"Name": "latency", "Unit": "Milliseconds"},
                    {"Name": "cold_starts", "Unit": "Count"},
                ],
            }],
        },
        # A dimension's value must be a non-empty string: outside Lambda the function has no
        # name, and a request refused before verification has no proven source.
        "function_name": function_name or "unknown",
        "source": log["source"] or "none",
        "latency": log["ms"],
        "cold_starts": 1 if log["cold_start"] else 0,
    }
    for name in METRIC_OUTCOMES:
        fields[name] = 1 if log["outcome"] == name else 0
    return fields
