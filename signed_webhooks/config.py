"""The operator's configuration: every environment variable the receiver reads, judged here.

No other module reads `os.environ`. The configuration is read on every request, so a change
takes effect at once, and a broken setting fails every request alike (500 naming the
variable, never its value): no caller can pick a broken key set with a header. While the
environment stays the same, the judgement of it is reused, not parsed again (`read`). The
signing keys and app secrets follow the rules in keys.py.

`configuration_errors(environ)` lists every problem at once; `make create`, `make deploy` and
`make serve` call it before deploying or serving.
"""
from __future__ import annotations

import math
import os
import re
from urllib.parse import urlsplit

from . import keys

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for type checkers and editors only: no import at cold start
    from collections.abc import Mapping
    from typing import Any
    from urllib.parse import SplitResult

CLOCK_TOLERANCE = 5  # seconds of skew allowed on exp, nbf and iat (QSTASH_CLOCK_TOLERANCE)
SOKETI_MAX_AGE = 300  # seconds soketi's time_ms may be off, as Pusher's SDK (SOKETI_MAX_AGE)
QSTASH_TOKEN_LIFETIME = 300  # seconds from iat to exp in every token QStash signs
DEDUP_TTL = 7 * 24 * 3600  # seconds a completed message is remembered (DEDUP_TTL); QStash
# retries for up to about 6 hours by default, and for days with custom retry settings
DEDUP_TTL_MIN = 3600  # a shorter memory than QStash's retry schedule would run handle twice
DEDUP_TTL_MAX = 366 * 86400

DEDUP_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")
ENDPOINT_NAMES = ("AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL")  # the SDKs' order
ENDPOINT_RULE = (" must be https://host[:port] (http:// only to a loopback address, for a local "
                 "store), without path, query, fragment or user name")
ENDPOINT_HOST = re.compile(r"[a-z0-9._:-]+")  # a DNS name, or an IP address without brackets
NAMESPACE_CHARACTERS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_/#: ")


class DedupSettings:
    """Where the deduplication table is and how to reach it (DEDUP_TABLE is set). endpoint:
    the URL, checked and taken apart, or None when the endpoint variable in use is refused
    (`endpoint_problem` then names it)."""

    def __init__(self, environ: Mapping[str, str], table: str, ttl: int) -> None:
        self.table = table
        self.ttl = ttl
        # What Lambda sets: the function's credentials and region; the endpoint variables are
        # the AWS SDKs' own (AWS_ENDPOINT_URL_DYNAMODB first), for local stores.
        self.region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or \
            "us-east-1"
        self.endpoint: SplitResult | None = urlsplit("https://dynamodb.%s.amazonaws.com"
                                                     % self.region)
        self.endpoint_problem: str | None = None
        for name in ENDPOINT_NAMES:  # the first one set is the one in use
            if environ.get(name):
                self.endpoint = checked_endpoint(environ[name])
                if self.endpoint is None:
                    self.endpoint_problem = name + ENDPOINT_RULE
                break
        self.access_key_id = environ.get("AWS_ACCESS_KEY_ID")
        self.secret_access_key = environ.get("AWS_SECRET_ACCESS_KEY")
        self.session_token = environ.get("AWS_SESSION_TOKEN")


def checked_endpoint(url: str) -> SplitResult | None:
    """The URL's parts, or None when ENDPOINT_RULE refuses it. The scheme is compared
    without case (`HTTPS://` is TLS); plain http would carry the session token in clear
    text, so it may only reach this machine."""
    try:
        parts = urlsplit(url)  # lowercases the scheme and the host
        if parts.port == 0:  # reading the port raises ValueError when it is out of range
            return None
    except ValueError:
        return None
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not ENDPOINT_HOST.fullmatch(host):
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        return None
    if parts.scheme == "http" and not _is_loopback(host):
        return None
    return parts


def _is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost."""
    import ipaddress  # only when an endpoint variable asks for plain http

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


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
    configuration.dedup = _read_dedup(environ, errors)
    errors += _dedup_window_errors(configuration)
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


def _read_dedup(environ: Mapping[str, str], errors: list[str]) -> DedupSettings | None:
    table = environ.get("DEDUP_TABLE", "")
    if table and not DEDUP_TABLE_NAME.fullmatch(table):
        errors.append("DEDUP_TABLE must be a DynamoDB table name: 3 to 255 of "
                      "a-z, A-Z, 0-9, _ . -")
    text = environ.get("DEDUP_TTL", "")
    ttl = DEDUP_TTL
    if text:
        # no more digits than the largest value has: int() of a long string costs more
        whole_seconds = text.isascii() and text.isdigit() and len(text) <= len(str(DEDUP_TTL_MAX))
        if whole_seconds and DEDUP_TTL_MIN <= int(text) <= DEDUP_TTL_MAX:
            ttl = int(text)
        else:
            errors.append("DEDUP_TTL must be whole seconds from %d to %d"
                          % (DEDUP_TTL_MIN, DEDUP_TTL_MAX))
    if not table:
        return None
    settings = DedupSettings(environ, table, ttl)
    if settings.endpoint_problem:
        errors.append(settings.endpoint_problem)
    return settings


def _dedup_window_errors(configuration: Configuration) -> list[str]:
    """With DEDUP_TABLE, a message's record must outlive every copy of it that can still
    verify, or a copy presented after the record expired runs `handle` again. Checked for
    each verifier configured (a tolerance no verifier uses lets nothing through).

    QStash: a token verifies while iat - tolerance <= now < exp + tolerance (verify's
    lifetime checks), so from its first possible use, at iat - tolerance, it stays usable for
    QSTASH_TOKEN_LIFETIME + 2 x QSTASH_CLOCK_TOLERANCE seconds. soketi: a webhook verifies
    while |now - time_ms| <= SOKETI_MAX_AGE, for 2 x SOKETI_MAX_AGE seconds, and forever
    when SOKETI_MAX_AGE is 0 (no age check)."""
    settings = configuration.dedup
    if settings is None:
        return []
    errors = []
    qstash_window = QSTASH_TOKEN_LIFETIME + 2 * configuration.clock_tolerance
    if configuration.qstash_keys and settings.ttl < qstash_window:
        errors.append("DEDUP_TTL is shorter than QStash's token lifetime (%d s) plus twice "
                      "QSTASH_CLOCK_TOLERANCE (%g s in all): a token verifies that long from "
                      "the first moment it can, and would run handle again once its record "
                      "expired; raise DEDUP_TTL or lower QSTASH_CLOCK_TOLERANCE"
                      % (QSTASH_TOKEN_LIFETIME, qstash_window))
    if configuration.soketi_secrets and not configuration.soketi_max_age:
        errors.append("SOKETI_MAX_AGE is 0 (no age check) with DEDUP_TABLE set: a soketi "
                      "webhook then verifies forever and would run handle again once its "
                      "record expired (DEDUP_TTL); set SOKETI_MAX_AGE to at most half of "
                      "DEDUP_TTL")
    soketi_window = 2 * configuration.soketi_max_age
    if configuration.soketi_secrets and settings.ttl < soketi_window:
        errors.append("DEDUP_TTL is shorter than twice SOKETI_MAX_AGE (%g s): a soketi "
                      "webhook verifies that long from the first moment it can, and would run "
                      "handle again once its record expired; raise DEDUP_TTL or lower "
                      "SOKETI_MAX_AGE" % soketi_window)
    return errors


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
