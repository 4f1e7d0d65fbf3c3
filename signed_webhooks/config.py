"""The operator's configuration: every environment variable the receiver reads, judged here.

No other module reads `os.environ`. The configuration is read on every request, so a change
takes effect at once, and a broken setting fails every request alike (500 naming the
variable, never its value): no caller can pick a broken key set with a header. While the
environment stays the same, the judgement of it is reused, not parsed again (`read`). The
signing keys and app secrets follow the rules in keys.py; the deduplication table's
settings (DEDUP_TABLE, DEDUP_TTL, the AWS credentials, region and endpoints) those in
dedup_config.py, imported only when one of its variables is set.

`configuration_errors(environ)` lists every problem at once; `make create`, `make deploy` and
`make serve` call it before deploying or serving.
"""
from __future__ import annotations

import math
import os
from urllib.parse import urlsplit

from . import keys

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for type checkers and editors only: no import at cold start
    from collections.abc import Mapping
    from typing import Any

    from .dedup_config import DedupSettings

CLOCK_TOLERANCE = 5  # seconds of skew allowed on exp, nbf and iat (QSTASH_CLOCK_TOLERANCE)
SOKETI_MAX_AGE = 300  # seconds soketi's time_ms may be off, as Pusher's SDK (SOKETI_MAX_AGE)
NAMESPACE_CHARACTERS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_/#: ")


class Configuration:
    """The operator's settings, validated. Built by `read` from the environment: `judge`
    sets every field (so none has a default no reader could ever see).

    qstash_keys maps a key set's prefix to its (current, next) keys: "" for the plain set,
    "US_EAST_1" for `US_EAST_1_QSTASH_CURRENT_SIGNING_KEY` and its next key.
    dedup: the table's settings, or None without DEDUP_TABLE.
    metrics_namespace: METRICS_NAMESPACE, or None.
    """

    qstash_keys: dict[str, tuple[str, str]]
    soketi_secrets: list[str]
    soketi_key: str | None
    destination_urls: list[str]
    clock_tolerance: float
    soketi_max_age: float
    dedup: DedupSettings | None
    metrics_namespace: str | None
    function_name: str


def configuration_errors(environ: Mapping[str, str]) -> list[str]:
    """Every problem with the configuration in `environ`, each naming the variable and the
    rule, never the value; [] when the handler would run with it."""
    return read(environ)[1]


def configured_features(environ: Mapping[str, str] | None = None) -> set[str]:
    """The optional features the environment turns on: "dedup", "metrics", "soketi"."""
    environ = os.environ if environ is None else environ
    features = set()
    if environ.get("DEDUP_TABLE"):
        features.add("dedup")
    if environ.get("METRICS_NAMESPACE"):
        features.add("metrics")
    if environ.get("SOKETI_SECRET"):
        features.add("soketi")
    return features


def read(environ: Mapping[str, str] | None = None) -> tuple[Configuration, list[str]]:
    """(the configuration of `os.environ`, or of another mapping; every problem with it).
    With problems, the configuration holds what could be read (the log line still needs
    METRICS_NAMESPACE); the request must then be answered 500 naming the first.

    For `os.environ` (every request), the judgement of an identical environment is reused
    (`_read_process_environment`); the Configuration returned is then shared between
    requests, and nobody changes it."""
    if environ is None:
        return _read_process_environment()
    return judge(environ)


# The process environment last judged (a copy of os.environ's own dict), and its judgement.
_last_read: tuple[dict[Any, Any], Configuration, list[str]] | None = None


def _read_process_environment() -> tuple[Configuration, list[str]]:
    """`judge(os.environ)`, or its result for the identical environment last judged.

    Whether anything changed is told by comparing the whole environment with a copy of the
    one last judged: any variable set, changed or removed, related or not, means a fresh
    judgement, so a change still takes effect on the next request. os.environ keeps its
    variables in a plain dict, `os.environ._data` (CPython's os.py since 3.2: names and
    values encoded with os.fsencode), and comparing two dicts is one C call: 0.5 us for 35
    variables, where merely fetching the 20 variables judged here through os.environ costs
    16 us (each lookup of an unset one raises KeyError inside) and judging them 36 us.
    The judgement is made on that copy, decoded as os.environ decodes it, so what is filed
    under a copy is exactly its judgement, whatever another thread sets meanwhile. A Python
    whose os.environ lacks that dict judges os.environ on every request.
    """
    global _last_read
    environment = getattr(os.environ, "_data", None)
    if type(environment) is not dict:
        return judge(os.environ)
    last = _last_read
    if last is not None and last[0] == environment:
        return last[1], list(last[2])
    snapshot = dict(environment)
    variables = {os.fsdecode(name): os.fsdecode(value) for name, value in snapshot.items()}
    configuration, errors = judge(variables)
    _last_read = (snapshot, configuration, errors)
    return configuration, list(errors)


def judge(environ: Mapping[str, str]) -> tuple[Configuration, list[str]]:
    """The configuration of `environ` and every problem with it, judged afresh (see `read`)."""
    configuration = Configuration()
    errors: list[str] = []
    allow_dev_keys = keys.read_allow_dev_keys(environ, errors)
    configuration.qstash_keys = keys.read_qstash_keys(environ, allow_dev_keys, errors)
    configuration.soketi_secrets = keys.read_soketi_secrets(environ, allow_dev_keys, errors)
    configuration.soketi_key = keys.read_soketi_key(environ, errors)
    if not configuration.qstash_keys and not configuration.soketi_secrets and not errors:
        errors.append("QSTASH_CURRENT_SIGNING_KEY is not set (nor SOKETI_SECRET): "
                      "no request can be verified")
    configuration.destination_urls = environ.get("QSTASH_DESTINATION_URL", "").split()
    for url in configuration.destination_urls:
        problem = _destination_url_problem(url)
        if problem:
            errors.append("QSTASH_DESTINATION_URL: " + problem)
    configuration.clock_tolerance = _read_seconds(
        environ, "QSTASH_CLOCK_TOLERANCE", CLOCK_TOLERANCE, errors)
    configuration.soketi_max_age = _read_seconds(environ, "SOKETI_MAX_AGE", SOKETI_MAX_AGE, errors)
    configuration.dedup = _read_dedup(configuration, environ, errors)
    configuration.metrics_namespace = _read_metrics_namespace(environ, errors)
    configuration.function_name = environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
    return configuration, errors


def _destination_url_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return "a value is not a URL"
    if parts.scheme not in ("http", "https") or not host:
        return "each value must be an absolute http(s) URL, as given to QStash"
    if host == "upstash.io" or host.endswith(".upstash.io"):
        return ("a value is QStash's own API (%s), not this function's URL: "
                "set the URL QStash delivers to" % host)
    return None


def _read_seconds(environ: Mapping[str, str], name: str, default: float,
                  errors: list[str]) -> float:
    text = environ.get(name, "")
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 86400:  # also false for NaN
        errors.append("%s must be a number of seconds from 0 to 86400" % name)
        return default
    return value


def _read_dedup(configuration: Configuration, environ: Mapping[str, str],
                errors: list[str]) -> DedupSettings | None:
    """The deduplication table's settings (dedup_config.py, imported only when one of its
    variables is set), or None without DEDUP_TABLE."""
    if not environ.get("DEDUP_TABLE") and not environ.get("DEDUP_TTL"):
        return None
    from . import dedup_config

    settings = dedup_config.read(environ, errors)
    if settings is not None:
        errors += dedup_config.window_errors(
            settings.ttl, qstash=bool(configuration.qstash_keys),
            clock_tolerance=configuration.clock_tolerance,
            soketi=bool(configuration.soketi_secrets),
            soketi_max_age=configuration.soketi_max_age)
    return settings


def _read_metrics_namespace(environ: Mapping[str, str], errors: list[str]) -> str | None:
    namespace = environ.get("METRICS_NAMESPACE", "")
    if not namespace:
        return None
    problem = metrics_namespace_error(namespace)
    if problem:
        errors.append(problem)
        return None
    return namespace


def metrics_namespace_error(namespace: str) -> str | None:
    """Why METRICS_NAMESPACE cannot name a CloudWatch namespace, or None when it can. CloudWatch
    drops the metrics of a line whose namespace breaks its rules, silently, so check first.
    The rules are CloudWatch's ("Namespaces" in its concepts guide)."""
    if len(namespace) > 255 or not namespace.strip() or \
            not set(namespace) <= NAMESPACE_CHARACTERS:
        return ("METRICS_NAMESPACE must be 1 to 255 letters, digits, spaces or . - _ / # : "
                "characters, not all spaces")
    if namespace.startswith("AWS/"):
        return "METRICS_NAMESPACE must not start with AWS/ (reserved for AWS's own metrics)"
    return None
