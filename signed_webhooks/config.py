"""The operator's configuration: every environment variable the receiver reads, judged here.

No other module reads `os.environ`. The configuration is read on every request, so a change
takes effect at once, and a broken setting fails every request alike (500 naming the
variable, never its value): no caller can pick a broken key set with a header.

`configuration_errors(environ)` lists every problem at once; `make create`, `make deploy` and
`make serve` call it before deploying or serving.
"""
from __future__ import annotations

import math
import os
import re
from urllib.parse import urlsplit

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for type checkers and editors only: no import at cold start
    from collections.abc import Mapping
    from urllib.parse import SplitResult

CLOCK_TOLERANCE = 5  # seconds of skew allowed on exp, nbf and iat (QSTASH_CLOCK_TOLERANCE)
SOKETI_MAX_AGE = 300  # seconds soketi's time_ms may be off, as Pusher's SDK (SOKETI_MAX_AGE)
MIN_QSTASH_KEY_LENGTH = 20  # real keys are `sig_` + 28 characters; placeholders are shorter
DEDUP_TTL = 7 * 24 * 3600  # seconds a completed message is remembered (DEDUP_TTL); QStash
# retries for up to about 6 hours by default, and for days with custom retry settings
DEDUP_TTL_MIN = 3600  # a shorter memory than QStash's retry schedule would run handle twice
DEDUP_TTL_MAX = 366 * 86400

QSTASH_KEY_NAMES = ("QSTASH_CURRENT_SIGNING_KEY", "QSTASH_NEXT_SIGNING_KEY")
SOKETI_SECRET_NAMES = ("SOKETI_SECRET", "SOKETI_NEXT_SECRET")
REGIONAL_KEY_NAME = re.compile(r"([A-Z0-9_]+)_(QSTASH_(?:CURRENT|NEXT)_SIGNING_KEY)")
DEDUP_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")
ENDPOINT_NAMES = ("AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL")  # the SDKs' order
ENDPOINT_RULE = (" must be https://host[:port] (http:// only to a loopback address, for a local "
                 "store), without path, query, fragment or user name")
ENDPOINT_HOST = re.compile(r"[a-z0-9._:-]+")  # a DNS name, or an IP address without brackets
NAMESPACE_CHARACTERS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_/#: ")

# The QStash CLI dev server signs with these published keys, and soketi's default app secret
# is in its docs: anyone can sign with them, so a deployed function refuses them unless
# ALLOW_PUBLIC_DEV_KEYS=1 says this is a local test.
PUBLIC_DEV_KEYS = frozenset({
    "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r",  # QStash dev server, current
    "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs",  # QStash dev server, next
    "app-secret",  # soketi's default SOKETI_DEFAULT_APP_SECRET
})


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
    """The operator's settings, validated. Built by `read` from the environment.

    qstash_keys maps a key set's prefix to its (current, next) keys: "" for the plain set,
    "US_EAST_1" for `US_EAST_1_QSTASH_CURRENT_SIGNING_KEY` and its next key.
    dedup: the table's settings, or None without DEDUP_TABLE.
    metrics_namespace: METRICS_NAMESPACE, or None.
    """

    def __init__(self) -> None:
        self.qstash_keys: dict[str, tuple[str, str]] = {}
        self.soketi_secrets: list[str] = []
        self.soketi_key: str | None = None
        self.destination_urls: list[str] = []
        self.clock_tolerance: float = CLOCK_TOLERANCE
        self.soketi_max_age: float = SOKETI_MAX_AGE
        self.dedup: DedupSettings | None = None
        self.metrics_namespace: str | None = None
        self.function_name: str = ""


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
    METRICS_NAMESPACE); the request must then be answered 500 naming the first."""
    environ = os.environ if environ is None else environ
    configuration = Configuration()
    errors: list[str] = []
    allow_dev_keys = _read_allow_dev_keys(environ, errors)
    _read_qstash_keys(environ, allow_dev_keys, configuration, errors)
    _read_soketi_secrets(environ, allow_dev_keys, configuration, errors)
    if not configuration.qstash_keys and not configuration.soketi_secrets and not errors:
        errors.append("QSTASH_CURRENT_SIGNING_KEY is not set (nor SOKETI_SECRET): "
                      "no request can be verified")
    for url in environ.get("QSTASH_DESTINATION_URL", "").split():
        problem = _destination_url_problem(url)
        if problem:
            errors.append("QSTASH_DESTINATION_URL: " + problem)
        configuration.destination_urls.append(url)
    configuration.clock_tolerance = _read_seconds(
        environ, "QSTASH_CLOCK_TOLERANCE", CLOCK_TOLERANCE, errors)
    configuration.soketi_max_age = _read_seconds(environ, "SOKETI_MAX_AGE", SOKETI_MAX_AGE, errors)
    configuration.dedup = _read_dedup(environ, errors)
    configuration.metrics_namespace = _read_metrics_namespace(environ, errors)
    configuration.function_name = environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
    return configuration, errors


def _read_allow_dev_keys(environ: Mapping[str, str], errors: list[str]) -> bool:
    value = environ.get("ALLOW_PUBLIC_DEV_KEYS", "").lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    errors.append("ALLOW_PUBLIC_DEV_KEYS must be 1 or unset")
    return False


def _read_qstash_keys(environ: Mapping[str, str], allow_dev_keys: bool,
                      configuration: Configuration, errors: list[str]) -> None:
    for prefix in _qstash_key_set_prefixes(environ):
        names = [prefix + "_" + name if prefix else name for name in QSTASH_KEY_NAMES]
        keys = [environ.get(name, "") for name in names]
        missing = [name for name, key in zip(names, keys) if not key]
        if missing:
            errors.append("%s is not set: QStash keys come in pairs (current and next), "
                          "copy both from the console" % missing[0])
            continue
        for name, key in zip(names, keys):
            errors += _secret_errors(name, key, MIN_QSTASH_KEY_LENGTH, allow_dev_keys)
        configuration.qstash_keys[prefix] = (keys[0], keys[1])


def _qstash_key_set_prefixes(environ: Mapping[str, str]) -> list[str]:
    """"" for the plain set when either of its keys is set, and each region whose
    `REGION_QSTASH_..._SIGNING_KEY` is set, in a stable order."""
    prefixes = set()
    for name, value in environ.items():
        if not value:
            continue
        if name in QSTASH_KEY_NAMES:
            prefixes.add("")
            continue
        regional = REGIONAL_KEY_NAME.fullmatch(name)
        if regional:
            prefixes.add(regional.group(1))
    return sorted(prefixes)


def _read_soketi_secrets(environ: Mapping[str, str], allow_dev_keys: bool,
                         configuration: Configuration, errors: list[str]) -> None:
    current_secret = environ.get("SOKETI_SECRET", "")
    next_secret = environ.get("SOKETI_NEXT_SECRET", "")
    if next_secret and not current_secret:
        errors.append("SOKETI_NEXT_SECRET is set but SOKETI_SECRET is not")
    for name, secret in zip(SOKETI_SECRET_NAMES, (current_secret, next_secret)):
        if secret:
            errors += _secret_errors(name, secret, 1, allow_dev_keys)
            configuration.soketi_secrets.append(secret)
    soketi_key = environ.get("SOKETI_KEY", "")
    if soketi_key:
        errors += _secret_errors("SOKETI_KEY", soketi_key, 1, allow_dev_keys=True)
        configuration.soketi_key = soketi_key


def _secret_errors(name: str, value: str, min_length: int, allow_dev_keys: bool) -> list[str]:
    """The rules every key and secret follows; the message never holds the value."""
    if value != value.strip() or value[:1] in "\"'" or value[-1:] in "\"'":
        return ["%s has leading or trailing whitespace or quotes: paste the key alone" % name]
    if len(value) < min_length:
        return ["%s is shorter than %d characters: not a real QStash key (placeholder?)"
                % (name, min_length)]
    if value in PUBLIC_DEV_KEYS and not allow_dev_keys:
        return ["%s is a published development key that anyone can sign with; use your own, "
                "or set ALLOW_PUBLIC_DEV_KEYS=1 for local tests only" % name]
    return []


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
        whole_seconds = text.isascii() and text.isdigit() and len(text) <= 10
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
