"""Signed webhooks for AWS Lambda: QStash and soketi/Pusher, standard library only.

Deploy this one file. Every invocation takes one path, in the order of this file:

    event -> read_request -> load_configuration -> authenticate -> run_once -> handle -> respond
             (section 2)     (section 1)           (sections 3-6)   (6c)        (7)       (8, 9)

Sections: 0 limits and exceptions; 1 configuration; 2 event -> request; 3 the QStash token;
4 Node's JSON.stringify, rebuilt for soketi's direct invocations; 5 the soketi signature;
6 Message, 6b QStash callbacks, 6c deduplication (only with DEDUP_TABLE); 7 `handle`, the one
function you edit; 8 metrics (only with METRICS_NAMESPACE); 9 answer, log line, response and
`lambda_handler`.

Nothing reaches `handle` unless its signature, claims and body hash check out. What decides
trust comes only from three places: fields AWS sets (`requestContext.domainName`), what a
signature covers (the token's claims, the signed body), and the operator's configuration
(environment variables, read on every request; README.md, "Configuration"). Headers, paths and
queries are the caller's words: they never decide that a request is accepted.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import os
import re
import time
from urllib.parse import parse_qsl, urlsplit

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for type checkers and editors only: no import at cold start
    from collections.abc import Callable, Iterator, Mapping, Sequence
    from typing import Any, Union

# --- 0. Limits and exceptions ------------------------------------------------------------

CLOCK_TOLERANCE = 5  # seconds of skew allowed on exp, nbf and iat (QSTASH_CLOCK_TOLERANCE)
SOKETI_MAX_AGE = 300  # seconds soketi's time_ms may be off, as Pusher's SDK (SOKETI_MAX_AGE)
MAX_TOKEN_LENGTH = 8192  # characters of Upstash-Signature, checked before any decoding
MAX_INVOKE_PAYLOAD = 6 * 1024 * 1024  # Lambda's synchronous invocation payload limit, bytes
MAX_NESTING = 500  # levels of a directly invoked payload; the rebuild recurses per level
MIN_QSTASH_KEY_LENGTH = 20  # real keys are `sig_` + 28 characters; placeholders are shorter

# The QStash CLI dev server signs with these published keys, and soketi's default app secret
# is in its docs: anyone can sign with them, so a deployed function refuses them unless
# ALLOW_PUBLIC_DEV_KEYS=1 says this is a local test.
PUBLIC_DEV_KEYS = frozenset({
    "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r",  # QStash dev server, current
    "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs",  # QStash dev server, next
    "app-secret",  # soketi's default SOKETI_DEFAULT_APP_SECRET
})


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


RETRY_AFTER_MAX = 86400  # QStash ignores a Retry-After over one day (then: its own backoff)


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
        self.seconds: int | None = _retry_after_seconds(seconds)
        self.reason: str = str(reason)
        super().__init__(self.seconds, self.reason)

    def __str__(self) -> str:
        if self.seconds is None:
            return "retry on QStash's default backoff: " + self.reason
        return "retry after %ds: %s" % (self.seconds, self.reason)


def _retry_after_seconds(value: object) -> int | None:
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


# --- 1. Configuration: read once per request, judged whatever the request says ----------

QSTASH_KEY_NAMES = ("QSTASH_CURRENT_SIGNING_KEY", "QSTASH_NEXT_SIGNING_KEY")
SOKETI_SECRET_NAMES = ("SOKETI_SECRET", "SOKETI_NEXT_SECRET")
REGIONAL_KEY_NAME = re.compile(r"([A-Z0-9_]+)_(QSTASH_(?:CURRENT|NEXT)_SIGNING_KEY)")
DEDUP_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")


class Configuration:
    """The operator's settings, validated. Built by `load_configuration` from the environment.

    qstash_keys maps a key set's prefix to its (current, next) keys: "" for the plain set,
    "US_EAST_1" for `US_EAST_1_QSTASH_CURRENT_SIGNING_KEY` and its next key.
    """

    def __init__(self) -> None:
        self.qstash_keys: dict[str, tuple[str, str]] = {}
        self.soketi_secrets: list[str] = []
        self.soketi_key: str | None = None
        self.destination_urls: list[str] = []
        self.clock_tolerance: float = CLOCK_TOLERANCE
        self.soketi_max_age: float = SOKETI_MAX_AGE


def configuration_errors(environ: Mapping[str, str]) -> list[str]:
    """Every problem with the configuration in `environ`, each naming the variable and the
    rule, never the value; [] when the handler would run with it. `make create` and
    `make deploy` call this before deploying."""
    return _read_configuration(environ)[1]


def load_configuration(environ: Mapping[str, str]) -> Configuration:
    """The configuration, or Reject(500) naming the first problem: a broken setting fails
    every request alike, so no caller can pick a broken key set with a header."""
    configuration, errors = _read_configuration(environ)
    if errors:
        raise Reject(500, errors[0])
    return configuration


def _read_configuration(environ: Mapping[str, str]) -> tuple[Configuration, list[str]]:
    configuration = Configuration()
    errors: list[str] = []
    allow_dev_keys = _read_allow_dev_keys(environ, errors)

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

    current_secret, next_secret = (environ.get(name, "") for name in SOKETI_SECRET_NAMES)
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

    if not configuration.qstash_keys and not configuration.soketi_secrets and not errors:
        errors.append("QSTASH_CURRENT_SIGNING_KEY is not set (nor SOKETI_SECRET): "
                      "no request can be verified")

    destinations = environ.get("QSTASH_DESTINATION_URL", "")
    for url in destinations.split():
        problem = _destination_url_problem(url)
        if problem:
            errors.append("QSTASH_DESTINATION_URL: " + problem)
        configuration.destination_urls.append(url)

    configuration.clock_tolerance = _read_seconds(
        environ, "QSTASH_CLOCK_TOLERANCE", CLOCK_TOLERANCE, errors)
    configuration.soketi_max_age = _read_seconds(environ, "SOKETI_MAX_AGE", SOKETI_MAX_AGE, errors)
    _check_optional_features(environ, errors)
    return configuration, errors


def _read_allow_dev_keys(environ: Mapping[str, str], errors: list[str]) -> bool:
    value = environ.get("ALLOW_PUBLIC_DEV_KEYS", "")
    if value.lower() in ("", "0", "false", "no"):
        return False
    if value.lower() in ("1", "true", "yes"):
        return True
    errors.append("ALLOW_PUBLIC_DEV_KEYS must be 1 or unset")
    return False


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


def _check_optional_features(environ: Mapping[str, str], errors: list[str]) -> None:
    table = environ.get("DEDUP_TABLE", "")
    if table and not DEDUP_TABLE_NAME.fullmatch(table):
        errors.append("DEDUP_TABLE must be a DynamoDB table name: 3 to 255 of "
                      "a-z, A-Z, 0-9, _ . -")
    ttl = environ.get("DEDUP_TTL", "")
    # At least an hour: a shorter memory than QStash's retry schedule would run handle twice.
    if ttl and not (ttl.isascii() and ttl.isdigit() and 3600 <= int(ttl) <= 366 * 86400):
        errors.append("DEDUP_TTL must be whole seconds from 3600 to 31622400")
    namespace = environ.get("METRICS_NAMESPACE", "")
    namespace_problem = metrics_namespace_error(namespace) if namespace else None
    if namespace_problem:
        errors.append(namespace_problem)


# --- 2. Event -> request: every door Lambda has, normalized once ------------------------

SOKETI_INVOKE = "soketi-invoke"
ALB_SHAPES = ("alb", "alb-multi")


class Request:
    """One request however Lambda delivered it. Built by `read_request`; trusted inside.

    shape: "http" (Function URL, HTTP API), "rest", "alb", "alb-multi" or "soketi-invoke".
    headers: lowercased names, repeats joined with ",". body: the raw bytes.
    url: the public URL derived from fields AWS sets, or None when the event cannot tell it
    (ALB: its Host header is the caller's; REST or HTTP events without a domainName).
    query_pairs: REST's parsed query parameters, decoded (the raw query string is not given).
    """

    def __init__(self, shape: str, method: str, headers: dict[str, str], body: bytes,
                 url: str | None = None,
                 query_pairs: list[tuple[str, str]] | None = None) -> None:
        self.shape = shape
        self.method = method
        self.headers = headers
        self.body = body
        self.url = url
        self.query_pairs = query_pairs

    @property
    def is_alb_health_check(self) -> bool:
        """ALB target-group health checks are GETs with this User-Agent. They are answered
        200 without reaching `handle`; nothing is accepted by it."""
        user_agent = self.headers.get("user-agent", "")
        return (self.shape in ALB_SHAPES and self.method == "GET"
                and user_agent.startswith("ELB-HealthChecker/"))


def event_shape(event: Any) -> str:
    """Which door the event came through, from its structure alone (no field is trusted)."""
    if not isinstance(event, dict):
        return "unknown"
    context = event.get("requestContext")
    if context is None and "payload" in event and "headers" in event:
        return SOKETI_INVOKE  # soketi's Lambda trigger: {"payload": ..., "headers": ...}
    if not isinstance(context, dict):
        return "unknown"
    if event.get("version") == "2.0":
        return "http"
    if "elb" in context:
        return "alb-multi" if "multiValueHeaders" in event else "alb"
    if "httpMethod" in event:
        return "rest"
    return "unknown"


def read_request(event: Any, shape: str | None = None) -> Request:
    """Normalize the event; Reject(400) naming what is wrong for anything no AWS door sends."""
    shape = shape or event_shape(event)
    if shape == "unknown":
        if not isinstance(event, dict):
            raise Reject(400, "event is a %s, not a JSON object" % type(event).__name__)
        raise Reject(400, "unknown event shape: not a Function URL, API Gateway, ALB or "
                     "soketi event")
    try:
        if shape == SOKETI_INVOKE:
            return _read_soketi_invoke(event)
        return _read_http_event(event, shape)
    except (KeyError, AttributeError, TypeError, ValueError, RecursionError) as exc:
        raise Reject(400, "malformed %s event: %s %.80s"
                     % (shape, type(exc).__name__, _safe_str(exc))) from None


def _read_http_event(event: dict[str, Any], shape: str) -> Request:
    context = event["requestContext"]
    headers = _join_headers(event.get("multiValueHeaders") or event.get("headers"))
    body = _read_body(event)
    if shape == "http":  # Function URL, HTTP API (payload 2.0): rawPath carries the stage
        method = context["http"]["method"]
        domain = context.get("domainName")
        url = None
        if domain:
            query = event.get("rawQueryString") or ""
            url = "https://" + domain + event["rawPath"] + ("?" + query if query else "")
        return Request(shape, method, headers, body, url)
    method = event["httpMethod"]
    if shape == "rest":  # API Gateway REST (1.0): requestContext.path has the stage
        domain = context.get("domainName")
        stage_path = context.get("path")
        url = None
        if domain and stage_path:
            url = "https://" + domain + stage_path
        return Request(shape, method, headers, body, url, _query_pairs(event))
    return Request(shape, method, headers, body)  # ALB: nothing in it says the public URL


def _read_body(event: dict[str, Any]) -> bytes:
    encoded = event.get("isBase64Encoded", False)
    if encoded is not True and encoded is not False:  # no AWS door sends anything else
        raise Reject(400, "isBase64Encoded is %.20r, not true or false" % (encoded,))
    body = event.get("body") or ""
    if not isinstance(body, str):
        raise Reject(400, "body is a %s, not a string" % type(body).__name__)
    try:
        if encoded:
            return base64.b64decode(body, validate=True)
        return body.encode()
    except ValueError:
        raise Reject(400, "body is not valid base64 (isBase64Encoded) or UTF-8") from None


def _join_headers(raw: Any) -> dict[str, str]:
    """Lowercase names once, here; repeats (lists, names differing in case) join with ","."""
    joined: dict[str, list[str]] = {}
    for name, value in (raw or {}).items():
        if not isinstance(value, str):
            value = ",".join(value)
        joined.setdefault(name.lower(), []).append(value)
    return {name: ",".join(values) for name, values in joined.items()}


def _query_pairs(event: dict[str, Any]) -> list[tuple[str, str]]:
    """REST's decoded query parameters as (name, value) pairs, repeats kept."""
    multi = event.get("multiValueQueryStringParameters")
    if multi:
        return [(name, value) for name, values in multi.items() for value in values]
    single = event.get("queryStringParameters") or {}
    return [(name, value) for name, value in single.items()]


def _read_soketi_invoke(event: dict[str, Any]) -> Request:
    """soketi signed Node's JSON.stringify(payload); rebuild those bytes (section 4). The
    size is bounded first, so no rebuild is paid for what Lambda itself would refuse."""
    payload = event["payload"]
    if _json_size_at_least(payload) > MAX_INVOKE_PAYLOAD:
        raise Reject(400, "payload is larger than Lambda's 6 MB invocation limit")
    headers = _join_headers(event["headers"])
    return Request(SOKETI_INVOKE, "INVOKE", headers, node_json(payload))


def _json_values(value: Any) -> Iterator[Any]:
    """`value` and everything inside it, depth first. The walk keeps one iterator per level
    of nesting, so it holds nothing per item; Reject(400) past MAX_NESTING levels."""
    levels = [iter([value])]
    while levels:
        for item in levels[-1]:
            yield item
            kind = type(item)
            if kind is dict:
                levels.append(iter(item.values()))
                break
            if kind is list:
                levels.append(iter(item))
                break
        else:
            levels.pop()
            continue
        if len(levels) > MAX_NESTING:
            raise Reject(400, "payload is nested deeper than %d levels" % MAX_NESTING)


def _json_size_at_least(value: Any) -> int:
    """A lower bound of the JSON text's size in bytes, without building it."""
    size = 0
    for item in _json_values(value):
        kind = type(item)
        if kind is str:
            size += len(item) + 2
        elif kind is dict:
            size += 1 + len(item) + sum(map(len, item)) + 2 * len(item)  # keys quoted
        elif kind is list:
            size += 1 + len(item)  # brackets and commas
        else:
            size += 1  # numbers, true, false, null
    return size


# --- 3. QStash: the Upstash-Signature token ----------------------------------------------

HS256_HEADER = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"  # {"alg":"HS256","typ":"JWT"}, QStash's


class DestinationURL:
    """A URL a token's `sub` claim may name.

    Without `query_pairs` the whole string is compared, one trailing slash of difference
    allowed outside a query. With them (API Gateway REST hands over parsed parameters, not the
    raw query), scheme, host and path are compared exactly and the query as a multiset of
    decoded name/value pairs, so `?a=1&b=2&a=3`, `?flag`, `?q=a+b` and `?p=%2F` all match.
    """

    def __init__(self, url: str, query_pairs: list[tuple[str, str]] | None = None) -> None:
        self.url = url
        self.query_pairs = query_pairs

    def matches(self, sub: str) -> bool:
        if self.query_pairs is None:
            if sub == self.url:
                return True
            if "?" in self.url:  # a query is compared exactly
                return False
            return sub == self.url + "/" or sub + "/" == self.url
        base, _, query = sub.partition("?")
        if base != self.url and base.rstrip("/") + "/" != self.url.rstrip("/") + "/":
            return False
        return sorted(parse_qsl(query, keep_blank_values=True)) == sorted(self.query_pairs)

    def __str__(self) -> str:
        return loggable_url(self.url)


if TYPE_CHECKING:  # what `verify` and `check_claims` take as `url`
    UrlArgument = Union[None, str, DestinationURL, Sequence[Union[str, DestinationURL]]]


def verify(jwt_token: str, signing_key: str | Sequence[str], body: bytes | str | None,
           url: UrlArgument, *, clock_tolerance: float = CLOCK_TOLERANCE,
           now: float | None = None) -> dict[str, Any]:
    """Check a QStash `Upstash-Signature` token; return its claims, or raise SignatureError
    naming the failed check.

    signing_key: a key, or the (current, next) pair: any may match the MAC, and the claims
    are then checked once, so an expired token is reported as expired. body: the raw body
    (bytes, str as UTF-8, None as empty). url: the URL QStash was told to deliver to, or a
    list of them (any may match); None skips that check. now: pins the clock (seconds).
    """
    if not isinstance(jwt_token, str) or len(jwt_token) > MAX_TOKEN_LENGTH or \
            not jwt_token.isascii():
        raise SignatureError("token is not an ASCII string of at most %d chars" % MAX_TOKEN_LENGTH)
    segments = jwt_token.split(".")
    if len(segments) != 3:
        raise SignatureError("token has %d segments, not 3" % len(segments))
    header_b64, claims_b64, signature_b64 = segments
    if header_b64 != HS256_HEADER:  # QStash's exact header is the fast path; else read it
        _check_header(_json_segment(header_b64, "header"))
    keys = (signing_key,) if isinstance(signing_key, str) else signing_key
    signed_part = (header_b64 + "." + claims_b64).encode()
    signature = _unb64url(signature_b64, "signature")
    for key in keys:  # current, then next: any may have signed it
        if hmac.compare_digest(_mac(key, signed_part), signature):
            break
    else:
        raise SignatureError("signature does not match the signing key(s)")
    if _b64url(signature) != signature_b64.encode():  # the same MAC, spelled another way
        raise SignatureError("signature is not canonical unpadded base64url")
    claims = _json_segment(claims_b64, "claims")
    if isinstance(body, str):
        body = body.encode()
    check_claims(claims, body or b"", url, clock_tolerance, time.time() if now is None else now)
    return claims


def _check_header(header: dict[str, Any]) -> None:
    if header.get("alg") != "HS256":  # the algorithm is pinned: never taken from the token
        raise SignatureError("header alg %r is not HS256" % str(header.get("alg"))[:16])
    if "crit" in header:  # RFC 7515 4.1.11: refuse extensions not understood
        raise SignatureError("header lists crit extensions, which QStash never sends")


_key_pads: dict[str, tuple[Any, Any]] = {}
_TO_STANDARD_B64 = bytes.maketrans(b"-_", b"+/")
_TO_URLSAFE_B64 = bytes.maketrans(b"+/", b"-_")
_JSON_DECODER = json.JSONDecoder()
_INNER_PAD = bytes(byte ^ 0x36 for byte in range(256))
_OUTER_PAD = bytes(byte ^ 0x5C for byte in range(256))


def _mac(key: str, message: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104, exactly what hmac.digest computes) with the key's inner and
    outer pad states hashed once per key and copied per call: a second key costs ~1 us."""
    pads = _key_pads.get(key)
    if pads is None:
        if len(_key_pads) > 8:
            _key_pads.clear()
        block = key.encode()
        if len(block) > 64:
            block = hashlib.sha256(block).digest()
        block = block.ljust(64, b"\0")
        pads = (hashlib.sha256(block.translate(_INNER_PAD)),
                hashlib.sha256(block.translate(_OUTER_PAD)))
        _key_pads[key] = pads
    inner = pads[0].copy()
    inner.update(message)
    outer = pads[1].copy()
    outer.update(inner.digest())
    return outer.digest()


def _b64url(raw: bytes) -> bytes:
    return binascii.b2a_base64(raw, newline=False).translate(_TO_URLSAFE_B64).rstrip(b"=")


def _unb64url(text: str, what: str) -> bytes:
    """Lenient base64url decoding (padding optional). Only for MAC-checked or re-encoded text."""
    try:
        return binascii.a2b_base64(text.encode().translate(_TO_STANDARD_B64) + b"==")
    except ValueError:
        raise SignatureError(what + " segment is not base64url") from None


def _json_segment(text: str, what: str) -> dict[str, Any]:
    """A base64url segment holding one JSON object and nothing after it."""
    try:
        decoded = _unb64url(text, what).decode()
        value, end = _JSON_DECODER.raw_decode(decoded)
    except (ValueError, RecursionError, SignatureError):
        raise SignatureError(what + " segment is not base64url JSON") from None
    if end != len(decoded) or not isinstance(value, dict):
        raise SignatureError(what + " segment is not one JSON object")
    return value


def check_claims(claims: dict[str, Any], body: bytes, url: UrlArgument, tolerance: float,
                 now: float) -> None:
    """The checks after the MAC, in order: issuer, lifetime, subject URL, body hash."""
    if claims.get("iss") != "Upstash":
        raise SignatureError("claim iss is not 'Upstash'")
    _check_lifetime(claims, tolerance, now)
    if url is not None:
        _check_subject(claims.get("sub"), _destinations(url))
    claimed_hash = claims.get("body")
    if not isinstance(claimed_hash, str):
        raise SignatureError("claim body is missing or not a string")
    # QStash pads the hash, the SDKs' own tests do not: compare without padding.
    body_hash = _b64url(hashlib.sha256(body).digest())
    if not hmac.compare_digest(body_hash, claimed_hash.rstrip("=").encode()):
        raise SignatureError("body hash does not match claim body (the body was altered)")


def _check_lifetime(claims: dict[str, Any], tolerance: float, now: float) -> None:
    expires = _time_claim(claims, "exp")
    not_before = _time_claim(claims, "nbf")  # QStash sends Go's zero time, -62135596800
    issued = _time_claim(claims, "iat")
    if expires is None:
        raise SignatureError("claim exp is missing")
    if now >= expires + tolerance:
        raise SignatureError("token expired at %d (now %d, tolerance %gs)"
                             % (expires, now, tolerance))
    if (not_before or 0) > now + tolerance:
        raise SignatureError("claim nbf is in the future (now %d)" % now)
    if (issued or 0) > now + tolerance:
        raise SignatureError("claim iat is in the future (now %d)" % now)


def _time_claim(claims: dict[str, Any], name: str) -> float | None:
    """A time claim: None when absent, else a finite number (bool and null refused)."""
    if name not in claims:
        return None
    value = claims[name]
    if type(value) not in (int, float) or not abs(value) < 1e16:
        raise SignatureError("claim %s is not a number" % name)
    return value


def _destinations(url: UrlArgument) -> list[DestinationURL]:
    candidates = [url] if isinstance(url, (str, DestinationURL)) else list(url or [])
    return [c if isinstance(c, DestinationURL) else DestinationURL(c) for c in candidates]


def _check_subject(sub: Any, destinations: list[DestinationURL]) -> None:
    if not isinstance(sub, str):
        raise SignatureError("claim sub is missing or not a string")
    if any(destination.matches(sub) for destination in destinations):
        return
    expected = " or ".join(str(destination) for destination in destinations[:4])
    raise SignatureError("claim sub %.300s is not this request's URL %.300s "
                         "(QSTASH_DESTINATION_URL sets the URL QStash calls)"
                         % (loggable_url(sub), expected or "(none configured)"))


def loggable_url(url: str) -> str:
    """Scheme, host and path only: a URL's query and userinfo can carry secrets."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = ":%d" % parts.port if parts.port else ""
    except ValueError:
        return "(not a URL)"
    if not parts.scheme:
        return "(not a URL)"
    return "%s://%s%s%s%s" % (parts.scheme, host, port, parts.path,
                              "?..." if parts.query else "")


# --- 4. Node's JSON.stringify, rebuilt: the bytes soketi signed for a direct invocation ---
#
# soketi signs JSON.stringify(payload) in Node, and a Lambda trigger hands us the parsed
# payload, not those bytes. json.dumps with compact separators matches Node except for floats
# (Node writes 1e-7, 5, 0 where Python writes 1e-07, 5.0, -0.0) and lone surrogates (Node
# escapes them). Memory stays within about twice the output: text is encoded to bytes in
# pieces of bounded size, and long strings are written in slices.

_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_SURROGATE = re.compile("[\ud800-\udbff][\udc00-\udfff]|[\ud800-\udfff]")
_SLICE = 65536  # characters of a long string, or items of a long list, written at once
_SMALL = 4096  # characters of a float-free object or list encoded in one call


def node_json(value: Any) -> bytes:
    """The UTF-8 bytes of Node's JSON.stringify(value), exactly, for a value parsed from JSON
    that Node wrote (so its keys are already in JavaScript's order)."""
    writer = _NodeJsonWriter()
    writer.write_value(value)
    return writer.getvalue()


def _small_without_floats(value: Any, limit: int) -> bool:
    """True when the value holds no float and its JSON stays under `limit` characters (a
    rough count), so encoding it at once is exact and costs little memory."""
    size = 0
    for item in _json_values(value):
        kind = type(item)
        if kind is float:
            return False
        size += 2
        if kind is str:
            size += len(item)
        elif kind is dict:
            size += sum(map(len, item))
        if size > limit:
            return False
    return True


class _NodeJsonWriter:
    """Collects JSON text in small str parts and turns them into UTF-8 bytes every 4096
    characters (or 256 parts), so memory holds the output about twice, never one object
    per item."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.buffered = 0  # characters in `parts`
        self.pieces: list[bytes] = []

    def write(self, text: str) -> None:
        self.parts.append(text)
        self.buffered += len(text)
        if self.buffered >= 4096 or len(self.parts) >= 256:
            self.flush()

    def flush(self) -> None:
        self.pieces.append(_utf8("".join(self.parts)))
        self.parts.clear()
        self.buffered = 0

    def getvalue(self) -> bytes:
        self.flush()
        return b"".join(self.pieces)

    def write_value(self, value: Any) -> None:
        kind = type(value)
        # (each member takes at least 2 characters, so a long container is never small)
        if kind in (dict, list) and len(value) * 2 < _SMALL and \
                _small_without_floats(value, _SMALL):
            self.write(_COMPACT.encode(value))  # a small float-free part: one encoder call
            return
        if kind is dict:
            self.write("{")
            for index, (key, item) in enumerate(value.items()):
                comma = "," if index else ""
                self.write(comma + _COMPACT.encode(key) + ":")
                self.write_value(item)
            self.write("}")
        elif kind is list:
            self.write("[")
            for start in range(0, len(value), 64):
                if start:
                    self.write(",")
                self.write_items(value[start:start + 64])
            self.write("]")
        elif kind is str and len(value) > _SLICE:
            self.write_long_string(value)
        else:
            self.write(_js_scalar(value))

    def write_items(self, items: list[Any]) -> None:
        """Up to 64 list items, comma-separated: plain scalars in one encoder call."""
        plain = all(type(item) in (str, int, bool, type(None)) for item in items)
        if plain and not any(type(item) is str and len(item) > _SLICE for item in items):
            self.write(_COMPACT.encode(items)[1:-1])
            return
        if all(type(item) is float for item in items):
            self.write(",".join(map(js_number, items)))
            return
        for index, item in enumerate(items):
            if index:
                self.write(",")
            self.write_value(item)

    def write_long_string(self, text: str) -> None:
        """A long string in slices, each escaped on its own and encoded at once."""
        self.write('"')
        start = 0
        while start < len(text):
            end = start + _SLICE
            if "\ud800" <= text[end - 1:end] <= "\udbff":
                end += 1  # never split a surrogate pair between two slices
            self.write(_COMPACT.encode(text[start:end])[1:-1])
            self.flush()
            start = end
        self.write('"')


def _js_scalar(value: Any) -> str:
    if type(value) is float:
        return js_number(value)
    return _COMPACT.encode(value)


def _utf8(text: str) -> bytes:
    """UTF-8 bytes of JSON text; lone surrogates become \\uXXXX escapes as Node writes them."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return _SURROGATE.sub(_escape_lone_surrogate, text).encode()


def _escape_lone_surrogate(match: re.Match[str]) -> str:
    found = match.group()
    if len(found) == 2:  # a high and a low surrogate: one character, written as itself
        return (found.encode("utf-16-le", "surrogatepass")).decode("utf-16-le")
    return "\\u%04x" % ord(found)


def js_number(value: float) -> str:
    """ECMAScript's Number::toString for a float: the shortest round-trip digits (the same
    digits as Python's repr), positional for decimal exponents -7 < n <= 21, else d.ddde+N."""
    text = float.__repr__(value)
    if "e" not in text and "n" not in text:  # repr is positional for 1e-4 <= |x| < 1e16
        if text.endswith(".0"):
            text = text[:-2]
        return "0" if text == "-0" else text
    if not math.isfinite(value):
        return "null"
    mantissa, _, exponent_text = text.lstrip("-").partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).rstrip("0")
    point = len(whole) + int(exponent_text or 0)  # the decimal point's position in `digits`
    sign = "-" if value < 0 else ""
    if len(digits) <= point <= 21:
        return sign + digits + "0" * (point - len(digits))
    if 0 < point <= 21:
        return sign + digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return sign + "0." + "0" * -point + digits
    fraction_part = "." + digits[1:] if len(digits) > 1 else ""
    return "%s%s%se%+d" % (sign, digits[0], fraction_part, point - 1)


# --- 5. soketi and Pusher: the X-Pusher-Signature HMAC -----------------------------------


def verify_pusher(signature: str, secret: str | Sequence[str], body: bytes | str | None,
                  *, max_age: float = SOKETI_MAX_AGE, now: float | None = None
                  ) -> dict[str, Any]:
    """Check a soketi/Pusher webhook's `X-Pusher-Signature` (lowercase hex HMAC-SHA256 of the
    body); return the payload parsed from those signed bytes, or raise SignatureError naming
    the failed check.

    secret: the app secret, or several (rotation). max_age: how far `time_ms` may be from now,
    in seconds (0: unchecked).
    """
    if not isinstance(signature, str) or len(signature) != 64 or not signature.isascii():
        raise SignatureError("X-Pusher-Signature is not 64 hex characters")
    if isinstance(body, str):
        body = body.encode()
    body = body or b""
    secrets = (secret,) if isinstance(secret, str) else secret
    if not any(hmac.compare_digest(hmac.new(key.encode(), body, hashlib.sha256).hexdigest(),
                                   signature) for key in secrets):
        raise SignatureError("X-Pusher-Signature does not match the app secret(s)")
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        payload = None
    if not isinstance(payload, dict) or not isinstance(payload.get("events"), list):
        raise SignatureError("signed body is not a webhook payload with an events list")
    if max_age:
        _check_time_ms(payload.get("time_ms"), max_age, time.time() if now is None else now)
    return payload


def _check_time_ms(sent: Any, max_age: float, now: float) -> None:
    in_window = (type(sent) in (int, float) and abs(sent) < 1e16
                 and abs(now - sent / 1000) <= max_age)
    if not in_window:
        raise SignatureError("time_ms %.20r is not within %gs of now (SOKETI_MAX_AGE)"
                             % (sent, max_age))


# --- 6. Authenticated message: what `handle` receives ------------------------------------


class Message:
    """A request whose signature checked out: what `handle` receives.

    Signed (covered by the QStash token or the soketi HMAC; trust these):
      source       "qstash" or "soketi" (which check passed)
      body         the raw body bytes; `text` and `json` read it
      claims       the QStash token's claims ({} for soketi)
      token_id     the token's `jti`: unique per delivery attempt (None for soketi)
      payload      soketi's payload, parsed from the signed bytes; `events` is its list
    Unsigned (headers: anyone who can reach the URL can write them; hints, not proof):
      headers      every header, names lowercased
      message_id   Upstash-Message-Id     retried      Upstash-Retried (int)
      schedule_id  Upstash-Schedule-Id    region       Upstash-Region
      topic_name   Upstash-Topic-Name     caller_ip    Upstash-Caller-Ip
      forwarded_headers  the publisher's `Upstash-Forward-*` headers, as they arrive
    Read from the signed body:
      callback     a Callback (section 6b) when this delivery is a QStash callback or
                   failure callback, else None
    Delivery is at least once: set DEDUP_TABLE, or deduplicate on message_id yourself.
    """

    def __init__(self, source: str, request: Request, claims: dict[str, Any] | None = None,
                 payload: dict[str, Any] | None = None) -> None:
        headers = request.headers
        self.source = source
        self.body: bytes = request.body
        self.claims: dict[str, Any] = claims or {}
        jti = self.claims.get("jti")
        self.token_id: str | None = jti if isinstance(jti, str) else None
        self.payload = payload
        self.events: list[Any] = payload["events"] if payload else []
        self.headers: dict[str, str] = headers
        self.message_id: str | None = headers.get("upstash-message-id")
        self.retried: int | None = _header_count(headers.get("upstash-retried"))
        self.schedule_id: str | None = headers.get("upstash-schedule-id")
        self.region: str | None = headers.get("upstash-region")
        self.topic_name: str | None = headers.get("upstash-topic-name")
        self.caller_ip: str | None = headers.get("upstash-caller-ip")
        is_qstash = source == "qstash"
        self.forwarded_headers: dict[str, str] = forwarded_headers(headers) if is_qstash else {}
        self.callback: Callback | None = parse_callback(headers, self.body) if is_qstash \
            else None
        self._json = payload

    @property
    def text(self) -> str:
        """The body as text (UTF-8; undecodable bytes replaced)."""
        return self.body.decode("utf-8", "replace")

    @property
    def json(self) -> Any:
        """The body parsed as JSON, or None when it is not JSON."""
        if self._json is None:
            try:
                self._json = json.loads(self.body)
            except (ValueError, RecursionError):
                pass
        return self._json


def _header_count(value: str | None) -> int | None:
    if value and len(value) < 9 and value.isascii() and value.isdigit():
        return int(value)
    return None


# --- 6b. QStash callbacks: a delivery that describes another delivery -------------------
# A callback (`Upstash-Callback` at publish time) or failure callback
# (`Upstash-Failure-Callback`) is an ordinary signed QStash delivery to the callback URL whose
# JSON body describes another message's delivery. QStash marks it with no header: its docs
# list the same delivery headers for every message, and Upstash's own workflow SDK knows its
# callbacks only by a header it forwards itself (`Upstash-Callback-Forward-...`). So a body
# is a callback only when it has the documented shape: the fields every callback carries,
# every documented field present with QStash's type, both bodies valid base64. Anything
# else, including user JSON that merely has a `sourceMessageId` key, or a callback-like body
# with a broken field, is an ordinary message (README.md, "Callbacks").

CALLBACK_KEY = b'"sourceMessageId"'  # QStash writes its keys unescaped: a cheap first test


class Callback:
    """A QStash callback or failure callback in Python form: `message.callback`.

    About the destination's answer to the original message:
      status: its HTTP status. header: its headers (lowercased name -> list of values).
      body: its body, base64-decoded once: the exact bytes, binary or text (for UTF-8 text,
      `callback.body.decode()`; QStash may truncate a body over the plan's message size).
      retried: retries before that attempt (0 on the first). max_retries: retries allowed.
    About the original message:
      source_message_id, url, method, source_header (as `header`), source_body (bytes),
      topic_name (URL group), endpoint_name, schedule_id, caller_ip (its publisher),
      not_before, created_at (Unix milliseconds).
    dlq_id: its Dead Letter Queue id; present on failure callbacks only.
    Optional fields QStash left out (or sent empty) are None.
    """

    def __init__(self, *, status: int, header: dict[str, list[str]], body: bytes,
                 retried: int, max_retries: int, source_message_id: str, url: str,
                 method: str, source_header: dict[str, list[str]], source_body: bytes,
                 topic_name: str | None = None, endpoint_name: str | None = None,
                 schedule_id: str | None = None, caller_ip: str | None = None,
                 not_before: int | None = None, created_at: int | None = None,
                 dlq_id: str | None = None) -> None:
        self.status: int = status
        self.header: dict[str, list[str]] = header
        self.body: bytes = body
        self.retried: int = retried
        self.max_retries: int = max_retries
        self.source_message_id: str = source_message_id
        self.url: str = url
        self.method: str = method
        self.source_header: dict[str, list[str]] = source_header
        self.source_body: bytes = source_body
        self.topic_name: str | None = topic_name
        self.endpoint_name: str | None = endpoint_name
        self.schedule_id: str | None = schedule_id
        self.caller_ip: str | None = caller_ip
        self.not_before: int | None = not_before
        self.created_at: int | None = created_at
        self.dlq_id: str | None = dlq_id

    @property
    def is_failure(self) -> bool:
        """True for a failure callback: every retry failed, the message is in the DLQ."""
        return self.dlq_id is not None

    @property
    def last_attempt(self) -> bool:
        """True when no retry follows (QStash's docs: `retried == maxRetries`). A callback
        with a 2xx status is final as well: QStash retries only failed attempts."""
        return self.retried == self.max_retries

    def __repr__(self) -> str:
        return "Callback(status=%d, source_message_id=%r, retried=%d/%d, failure=%s)" % (
            self.status, self.source_message_id, self.retried, self.max_retries,
            self.is_failure)


def parse_callback(headers: dict[str, str], body: bytes) -> Callback | None:
    """The Callback this verified QStash delivery carries, or None for an ordinary message.

    headers: the request's headers, lowercased names. body: the raw (signed) body. A body
    without the callback shape, or with one field broken (bad base64, a wrong type), is
    ordinary: QStash would resend the same signed bytes on every retry, so refusing it could
    never succeed, and `message.json` still holds all of it for `handle`.
    """
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    if CALLBACK_KEY not in body:
        return None
    try:
        document = json.loads(body)
        callback = _callback_from(document)
    except (ValueError, RecursionError):
        return None
    if callback.source_message_id == headers.get("upstash-message-id"):
        return None  # a callback is a new message: it cannot describe its own delivery
    return callback


def _callback_from(document: Any) -> Callback:
    """Build a Callback from the parsed body; ValueError naming the first field that does
    not have QStash's shape. Field names and types: QStash's docs, "Callbacks"."""
    if not isinstance(document, dict):
        raise ValueError("body is not a JSON object")
    status = _callback_integer(document, "status")
    if status is None or not 0 <= status <= 999:
        raise ValueError("status is not an HTTP status")
    return Callback(
        status=status,
        header=_callback_headers(document, "header"),
        body=_callback_base64(document, "body"),
        retried=_callback_integer(document, "retried") or 0,  # left out on a first attempt
        max_retries=_callback_integer(document, "maxRetries") or 0,
        source_message_id=_callback_required_text(document, "sourceMessageId"),
        url=_callback_required_text(document, "url"),
        method=_callback_required_text(document, "method"),
        source_header=_callback_headers(document, "sourceHeader"),
        source_body=_callback_base64(document, "sourceBody"),
        topic_name=_callback_text(document, "topicName"),
        endpoint_name=_callback_text(document, "endpointName"),
        schedule_id=_callback_text(document, "scheduleId"),
        caller_ip=_callback_text(document, "callerIP"),
        not_before=_callback_integer(document, "notBefore"),
        created_at=_callback_integer(document, "createdAt"),
        dlq_id=_callback_text(document, "dlqId"),
    )


def _callback_required_text(document: dict[str, Any], name: str) -> str:
    """A string field every callback carries."""
    value = _callback_text(document, name)
    if value is None:
        raise ValueError(name + " is missing")
    return value


def _callback_text(document: dict[str, Any], name: str) -> str | None:
    """A string field; None when absent, null or empty (Go writes "" for an unset string)."""
    value = document.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(name + " is not a string")
    return value


def _callback_integer(document: dict[str, Any], name: str) -> int | None:
    """An integer field. QStash's docs show the times as strings of digits ("1701198458025")
    and its SDK's docs as numbers: both are read."""
    value = document.get(name)
    if value is None or value == "":
        return None
    if type(value) is int:  # not bool, not float
        return value
    if isinstance(value, str) and len(value) <= 19 and value.isascii() and value.isdigit():
        return int(value)
    raise ValueError(name + " is not an integer")


def _callback_headers(document: dict[str, Any], name: str) -> dict[str, list[str]]:
    """A header map: Go's http.Header (name -> list of values); a single string value, as
    QStash's docs show for sourceHeader, becomes a list of one. Names lowercased, as
    `message.headers`."""
    value = document.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(name + " is not an object")
    headers: dict[str, list[str]] = {}
    for header_name, values in value.items():
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValueError(name + " values are not strings")
        headers.setdefault(header_name.lower(), []).extend(values)
    return headers


def _callback_base64(document: dict[str, Any], name: str) -> bytes:
    """A body field, base64-decoded once to the exact bytes. QStash writes Go's padded
    standard base64; it is read as JavaScript's atob reads it (WHATWG "forgiving-base64"),
    the decoder behind the official SDK's decodeBase64: ASCII whitespace ignored, one or two
    final `=` optional, nothing outside the standard alphabet (no URL-safe `-` or `_`)."""
    value = document.get(name)
    if value is None:
        return b""
    if not isinstance(value, str) or not value.isascii():
        raise ValueError(name + " is not a base64 string")
    text = value.translate(_ASCII_WHITESPACE)
    if len(text) % 4 == 0 and text.endswith("="):
        text = text[:-2] if text.endswith("==") else text[:-1]
    if len(text) % 4 == 1 or "=" in text:
        raise ValueError(name + " is not valid base64")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except ValueError:  # binascii.Error: a character outside the standard alphabet
        raise ValueError(name + " is not valid base64") from None


_ASCII_WHITESPACE = str.maketrans("", "", "\t\n\f\r ")  # the set atob skips


# Headers on a QStash delivery that its publisher did not forward: QStash's own (its docs,
# "Receiving Messages": User-Agent, Content-Type and Upstash-*), HTTP's, and those AWS's
# front doors (Function URL, API Gateway and its CloudFront edge, ALB) add on the way.
NOT_FORWARDED = frozenset((
    "user-agent", "content-type", "content-length", "host", "accept-encoding", "connection",
    "transfer-encoding", "te", "expect", "via", "forwarded"))
NOT_FORWARDED_PREFIXES = ("upstash-", "x-forwarded-", "x-amz-", "x-amzn-", "cloudfront-")


def forwarded_headers(headers: dict[str, str]) -> dict[str, str]:
    """The publisher's `Upstash-Forward-*` headers as they arrive (QStash strips the prefix,
    so `Upstash-Forward-X-Tenant: a` arrives as `x-tenant: a`; for a callback, its
    `Upstash-Callback-Forward-*` ones): every header except QStash's own and those HTTP and
    AWS add. A forwarded header whose name is one of those is indistinguishable from it and
    stays only in `message.headers`."""
    return {name: value for name, value in headers.items()
            if name not in NOT_FORWARDED and not name.startswith(NOT_FORWARDED_PREFIXES)}


def authenticate(request: Request, configuration: Configuration) -> Message:
    """Route on the signature header, verify with the configured secrets, return a Message.
    The header only picks which check runs; the check alone decides."""
    headers = request.headers
    if "upstash-signature" in headers and request.shape != SOKETI_INVOKE:
        return _authenticate_qstash(request, configuration)
    if "x-pusher-signature" in headers:
        return _authenticate_soketi(request, configuration)
    raise SignatureError("no Upstash-Signature or X-Pusher-Signature header")


def _authenticate_qstash(request: Request, configuration: Configuration) -> Message:
    keys = _qstash_keys_for(request.headers.get("upstash-region"), configuration)
    claims = verify(request.headers["upstash-signature"], keys, request.body,
                    _expected_destinations(request, configuration),
                    clock_tolerance=configuration.clock_tolerance)
    return Message("qstash", request, claims=claims)


def _qstash_keys_for(region: str | None, configuration: Configuration) -> tuple[str, str]:
    """Upstash-Region picks a configured regional set, else the plain set. It is unsigned:
    it can only choose among sets the operator configured, all of them valid."""
    sets = configuration.qstash_keys
    if not sets:
        raise SignatureError("QStash request, but no QStash keys are configured here")
    if region:
        prefix = region.replace("-", "_").upper()
        if prefix in sets:
            return sets[prefix]
    if "" in sets:
        return sets[""]
    shown = re.sub(r"[^A-Za-z0-9_-]", "?", region or "")[:32] or "(none)"
    raise SignatureError("no QStash keys for region %s" % shown)


def _expected_destinations(request: Request,
                           configuration: Configuration) -> list[DestinationURL]:
    """The URLs the token may name: the operator's QSTASH_DESTINATION_URL when set (the event
    then plays no part), else the URL AWS's own fields give."""
    if configuration.destination_urls:
        return [DestinationURL(url) for url in configuration.destination_urls]
    if request.shape in ALB_SHAPES:
        raise Reject(500, "QSTASH_DESTINATION_URL is not set: behind an ALB the Host header "
                     "is the caller's, so the URL QStash signed must be configured")
    if request.url is None:
        raise Reject(400, "the event has no requestContext.domainName (or path), so the URL "
                     "QStash signed cannot be derived: set QSTASH_DESTINATION_URL")
    return [DestinationURL(request.url, request.query_pairs)]


def _authenticate_soketi(request: Request, configuration: Configuration) -> Message:
    headers = request.headers
    if not configuration.soketi_secrets:
        raise SignatureError("soketi request, but SOKETI_SECRET is not configured here")
    if configuration.soketi_key is not None:
        claimed_key = headers.get("x-pusher-key", "").encode("utf-8", "surrogatepass")
        if not hmac.compare_digest(configuration.soketi_key.encode(), claimed_key):
            raise SignatureError("X-Pusher-Key is not SOKETI_KEY")
    payload = verify_pusher(headers["x-pusher-signature"], configuration.soketi_secrets,
                            request.body, max_age=configuration.soketi_max_age)
    return Message("soketi", request, payload=payload)


# --- 6c. Deduplication (optional: DEDUP_TABLE): handle runs once per message -----------
"""Exactly-once `handle`, when DEDUP_TABLE names a DynamoDB table (partition key `id`, a
string; TTL attribute `expires_at`). Unset: nothing here runs, nothing is imported, no cost.

The handler calls one function: `run_once(message, context, produce_answer)`. It decides
from the table whether this delivery runs `handle` (through `produce_answer`, which is
`run_handle`), gets the first delivery's stored answer, or is deferred, and records the
result.

Records (one item each, all with `expires_at` in epoch seconds, read as absent once past):
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
  1. PutItem qstash:jti:<jti>, if absent: the token is used now. If it exists, this is a
     replay: answer from the message record the token first claimed (GetItem), never write.
  2. PutItem the message record as in_progress with our lease, if absent, expired, or
     in_progress with its lease passed (taken over). A completed record is a duplicate: its
     answer, no `handle`. An in_progress one with time left: 409 with Retry-After.
  3. After `handle`: UpdateItem to completed with the answer, if we still own it (2xx and
     489); or DeleteItem, if we still own it, so the retry runs `handle` again (anything
     else).
A failed condition returns the item that failed it (ReturnValuesOnConditionCheckFailure),
saving a read; dynalite ignores that option, so an answer without the item costs a GetItem
(a duplicate then takes 3 requests). One thing no table can settle: the first use of a
token is trusted for its message id, since nothing signed carries it. Whoever holds a token
first can file its effect under another id; it still runs `handle` once for that token. A
token whose delivery never reached the table (answered 503) stays unused until then.

Leases. The lease is the invocation's remaining time (Lambda kills it by then) plus one
second for clock differences between hosts; 900 s (Lambda's longest timeout) when there is
no context. After a kill, the next delivery past the lease takes the record over.

Failures. The table unreachable, throttled or refusing: 503 with Retry-After, `handle` not
called (QStash retries, then keeps the message in its DLQ). The completion write is tried
three times; if it still fails after `handle` succeeded, the answer is the one `handle` gave
(the effect happened; a retry would repeat it) and the failure is logged. The record then
stays in progress: duplicates get 409 until the lease passes, and one arriving after that
would run `handle` again (QStash itself stops at the 2xx). A request whose connection broke
is sent once more; every record carries its writer's owner (the request id and a nonce), so
a write that had in fact been applied is recognised as ours, not as someone else's.

The client: DynamoDB's JSON API (POST /, X-Amz-Target) as HTTP/1.1 over a socket (TLS for
https, verified against the system's CA certificates), kept alive across warm invocations.
Not urllib.request or http.client: they parse every answer's headers with the email
package, which costs more CPU than the rest of a call and more import time than the rest of
the module. Signed with Signature Version 4 (below) from AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN and AWS_REGION, which Lambda sets. Endpoint:
AWS_ENDPOINT_URL_DYNAMODB, else AWS_ENDPOINT_URL (the SDKs' convention), else
https://dynamodb.<region>.amazonaws.com. No credential, token or
signature ever reaches a log line or an exception's text.
"""

DEDUP_TTL = 7 * 24 * 3600  # seconds a completed message is remembered (DEDUP_TTL); QStash
# retries for up to about 6 hours by default, and for days with custom retry settings
DEDUP_MAX_STORED_BODY = 64 * 1024  # bytes of answer body kept for duplicates
DEDUP_NO_CONTEXT_LEASE_MS = 900 * 1000  # Lambda's longest timeout
DEDUP_LEASE_MARGIN_MS = 1000  # clock differences between the hosts running deliveries
DEDUP_STORE_RETRY_AFTER = 30  # seconds QStash waits after a 503 (table unavailable)
DEDUP_COMPLETION_ATTEMPTS = 3  # the one write worth retrying: `handle` has had its effect
DEDUP_TIMEOUT = 2.0  # seconds for connecting and for each answer; DynamoDB answers in ms
DEDUP_KEY_PART_MAX = 256  # characters of an id or jti kept as is in a record key
DYNAMODB_TARGET = "DynamoDB_20120810."
DYNAMODB_CONTENT_TYPE = "application/x-amz-json-1.0"


class StoreError(Exception):
    """The table could not be used (unreachable, throttled, refused). The text names what
    happened and never holds a credential, token or signature."""


class ConditionFailed(Exception):
    """A conditional write found the item in another state; `item` is that item (plain
    values), or None when the answer did not carry it (dynalite)."""

    def __init__(self, item):
        super().__init__("the condition failed")
        self.item = item


def run_once(message: Message, context: Any,
             produce_answer: Callable[[], Answer]) -> Answer:
    """Run `produce_answer()` (which calls `handle`) at most once per message, when
    DEDUP_TABLE is set; otherwise just run it.

    The answer's `dedup` tells what the table decided: None (no table), "new",
    "taken_over", "duplicate" (the stored answer), "in_progress" (409), "replay" (a used
    token: the stored answer or 409), "store_error" (503).
    """
    table = os.environ.get("DEDUP_TABLE")
    if not table:
        return produce_answer()
    store = DynamoTable(table)
    # The owner of the records this invocation writes: the request id (for the reader of the
    # table) and a nonce, since Lambda retries an asynchronous invoke under the same id.
    owner = "%s/%s" % (getattr(context, "aws_request_id", None) or "local",
                       os.urandom(6).hex())
    try:
        return Deduplication(store, message, context, owner).run(produce_answer)
    except StoreError as exc:
        reason = "dedup table unavailable, handle not called: %s" % exc
        return Answer(503, json.dumps({"error": "deduplication store unavailable"}), reason,
                      {"Retry-After": str(DEDUP_STORE_RETRY_AFTER)}, outcome="deferred",
                      dedup="store_error")


def _key_part(value):
    """An id as it goes into a record key: itself, or its SHA-256 when long or not ASCII."""
    if len(value) <= DEDUP_KEY_PART_MAX and value.isascii() and value.isprintable():
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def delivery_keys(message):
    """(token record key or None, message record key) for a verified Message.
    Reject(400) when a QStash token has no jti (QStash always sends one)."""
    if message.source == "soketi":
        return None, "soketi:signature:" + _key_part(message.headers["x-pusher-signature"])
    jti = message.claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise Reject(400, "the QStash token has no jti claim: it cannot be deduplicated")
    token_key = "qstash:jti:" + _key_part(jti)
    if message.message_id:
        return token_key, "qstash:message:" + _key_part(message.message_id)
    return token_key, "qstash:jti-message:" + _key_part(jti)


class Deduplication:
    """The protocol for one delivery (see the section's docstring)."""

    def __init__(self, store, message, context, owner):
        self.store, self.message, self.owner = store, message, owner
        self.now_ms = int(time.time() * 1000)
        remaining = DEDUP_NO_CONTEXT_LEASE_MS
        with_remaining = getattr(context, "get_remaining_time_in_millis", None)
        if with_remaining is not None:
            remaining = with_remaining()
        self.lease_until = self.now_ms + int(remaining) + DEDUP_LEASE_MARGIN_MS
        ttl = int(os.environ.get("DEDUP_TTL") or DEDUP_TTL)
        self.expires_at = self.now_ms // 1000 + ttl

    def run(self, produce_answer):
        token_key, message_key = delivery_keys(self.message)
        if token_key is not None:
            used = self.use_token(token_key, message_key)
            if used is not None:
                return self.answer_replay(used)
        previous, acquired = self.acquire(message_key)
        if not acquired:
            return self.answer_duplicate(previous)
        dedup = "taken_over" if previous is not None else "new"
        try:
            answer = produce_answer()
        except BaseException:
            self.release(message_key)
            raise
        if 200 <= answer.status < 300 or answer.status == 489:
            note = self.complete(message_key, answer.status, answer.body, answer.headers)
        else:
            note = self.release(message_key)
        if note:
            answer.reason = "%s; %s" % (answer.reason, note) if answer.reason else note
        answer.dedup = dedup
        return answer

    def use_token(self, token_key, message_key):
        """Step 1: record the token as used. None when it is fresh; when it was used before
        (a replay), the record of that first use ({} if it vanished meanwhile)."""
        item = {"id": token_key, "message": message_key, "owner": self.owner,
                "expires_at": self.expires_at}
        try:
            self.store.put(item, "attribute_not_exists(id) OR expires_at < :now",
                           {":now": self.now_ms // 1000})
        except ConditionFailed as failed:
            used = failed.item or self.store.get(token_key) or {}
            if used.get("owner") == self.owner:
                return None  # our own write, applied before its connection broke
            return used
        return None

    def acquire(self, message_key):
        """Step 2: (the item that was there or None, whether we now own the message)."""
        item = {"id": message_key, "state": "in_progress", "owner": self.owner,
                "lease_until": self.lease_until, "expires_at": self.expires_at}
        condition = ("attribute_not_exists(id) OR expires_at < :now_s OR "
                     "(#state = :in_progress AND lease_until < :now_ms)")
        values = {":now_s": self.now_ms // 1000, ":now_ms": self.now_ms,
                  ":in_progress": "in_progress"}
        try:
            previous = self.store.put(item, condition, values, names={"#state": "state"})
        except ConditionFailed as failed:
            current = failed.item or self.store.get(message_key)
            if current is not None and current.get("owner") == self.owner:
                return None, True  # our own write, applied before its connection broke
            return current, False
        if previous is None or previous.get("expires_at", 0) < self.now_ms // 1000:
            return None, True  # absent, or expired: counts as absent
        return previous, True  # its lease had passed: taken over

    def answer_duplicate(self, item, dedup="duplicate"):
        """The stored answer of a completed message; 409 while another delivery holds it."""
        if item is not None and item.get("state") == "completed" and \
                item.get("expires_at", 0) >= self.now_ms // 1000:
            stored = json.loads(item["answer"])
            reason = "already processed (first answer %d), handle not called" % stored["status"]
            return Answer(stored["status"], stored["body"], reason, stored["headers"],
                          outcome="duplicate", dedup=dedup)
        wait_ms = 1000
        if item is not None and item.get("state") == "in_progress":
            wait_ms = max(1000, item.get("lease_until", 0) - self.now_ms)
        seconds = -(-wait_ms // 1000)
        reason = "in progress in another delivery, handle not called; retry in %ds" % seconds
        return Answer(409, json.dumps({"error": "this message is being processed; retry later"}),
                      reason, {"Retry-After": str(seconds)}, outcome="deferred",
                      dedup="in_progress" if dedup == "duplicate" else dedup)

    def answer_replay(self, used):
        """A used token: never runs `handle`, never writes. The answer of the message the
        token first claimed when it is complete, else 409 (a genuine QStash delivery then
        comes back with a fresh token)."""
        claimed = used.get("message")
        item = self.store.get(claimed) if claimed else None
        answer = self.answer_duplicate(item, "replay")
        answer.reason = "token already used (replay): %s" % answer.reason
        return answer

    def complete(self, message_key, status, body, headers):
        """Step 3 after success: the record becomes completed with the answer, if still ours.
        Returns a note for the log when it could not be written."""
        encoded = (body or "").encode("utf-8", "surrogatepass")
        if len(encoded) > DEDUP_MAX_STORED_BODY:
            body = json.dumps({"note": "the first answer's body (%d bytes) was over 64 KB and "
                                       "is not stored" % len(encoded)})
        answer = json.dumps({"status": status, "body": body, "headers": headers or {}})
        failure = None
        for attempt in range(DEDUP_COMPLETION_ATTEMPTS):
            try:
                self.store.update(
                    message_key, "SET #state = :completed, answer = :answer, "
                    "#status = :status, expires_at = :expires REMOVE lease_until",
                    "#owner = :me AND #state = :in_progress",
                    {":completed": "completed", ":answer": answer, ":status": status,
                     ":expires": self.expires_at, ":me": self.owner,
                     ":in_progress": "in_progress"},
                    names={"#state": "state", "#status": "status", "#owner": "owner"})
                return None
            except ConditionFailed as failed:
                current = failed.item or self.store.get_or_none(message_key)
                if current and current.get("owner") == self.owner and \
                        current.get("state") == "completed":
                    return None  # our own write, applied before its connection broke
                return "completion not recorded: another delivery took the message over"
            except StoreError as exc:  # worth retrying: a lost completion means a 409 until
                failure = exc  # the lease passes, and a duplicate after it runs again
                time.sleep(0.05 * (attempt + 1))
        return "completion not recorded (%s)" % failure

    def release(self, message_key):
        """Step 3 after a failure: delete the record, if still ours, so a retry runs again."""
        try:
            self.store.delete(message_key, "#owner = :me AND #state = :in_progress",
                              {":me": self.owner, ":in_progress": "in_progress"},
                              names={"#state": "state", "#owner": "owner"})
        except ConditionFailed:
            return "release skipped: the record is no longer ours"
        except StoreError as exc:
            return "release failed (%s): a retry waits for the lease" % exc
        return None


# DynamoDB's typed JSON, for the few types the records use.
def _to_dynamo(value):
    if isinstance(value, str):
        return {"S": value}
    return {"N": str(int(value))}


def _from_dynamo(attribute):
    (kind, value), = attribute.items()
    return int(value) if kind == "N" else value


class DynamoTable:
    """Single-item conditional calls on one table through DynamoDB's JSON API.
    Each returns plain values; ConditionFailed and StoreError are the failures."""

    requests_made = 0  # requests sent by every instance (read by make bench)

    def __init__(self, table):
        self.table = table

    def put(self, item, condition, values, names=None):
        """PutItem if `condition` holds; returns the item it replaced, or None."""
        answer = self.call("PutItem", {
            "Item": {k: _to_dynamo(v) for k, v in item.items()},
            **self._condition(condition, values, names), "ReturnValues": "ALL_OLD"})
        return self._item(answer.get("Attributes"))

    def update(self, key, update, condition, values, names=None):
        self.call("UpdateItem", {"Key": {"id": {"S": key}}, "UpdateExpression": update,
                                 **self._condition(condition, values, names)})

    def delete(self, key, condition, values, names=None):
        self.call("DeleteItem", {"Key": {"id": {"S": key}},
                                 **self._condition(condition, values, names)})

    def get(self, key):
        """The item (strongly consistent read), or None."""
        answer = self.call("GetItem", {"Key": {"id": {"S": key}}, "ConsistentRead": True})
        return self._item(answer.get("Item"))

    def get_or_none(self, key):
        """The item, or None also when the table cannot be read (for log notes only)."""
        try:
            return self.get(key)
        except StoreError:
            return None

    @staticmethod
    def _condition(condition, values, names):
        fields = {"ConditionExpression": condition,
                  "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
        if values:
            fields["ExpressionAttributeValues"] = {k: _to_dynamo(v) for k, v in values.items()}
        if names:
            fields["ExpressionAttributeNames"] = names
        return fields

    @staticmethod
    def _item(attributes):
        if not attributes:
            return None
        return {name: _from_dynamo(value) for name, value in attributes.items()}

    def call(self, operation, fields):
        """One DynamoDB call; its JSON answer. ConditionFailed or StoreError otherwise."""
        body = json.dumps({"TableName": self.table, **fields}).encode()
        status, answer = dynamodb_request(operation, body)
        if status == 200:
            return json.loads(answer)
        error = _error_fields(answer)
        kind = str(error.get("__type", "")).rpartition("#")[2] or "HTTP %d" % status
        if kind == "ConditionalCheckFailedException":
            raise ConditionFailed(self._item(error.get("Item")))
        raise StoreError("%s %s: %s" % (operation, kind, _safe_message(kind, error)))


def _error_fields(answer):
    """{"__type", "message"} from an error answer: DynamoDB's JSON, or the XML that some
    gateways in front of it answer with (<Code>, <Message>)."""
    try:
        error = json.loads(answer)
    except ValueError:
        text = answer.decode("utf-8", "replace")
        code = text.partition("<Code>")[2].partition("</Code>")[0]
        message = text.partition("<Message>")[2].partition("</Message>")[0]
        return {"__type": code, "message": message}
    return error if isinstance(error, dict) else {}


def _safe_message(kind, error):
    """DynamoDB's error message, unless it is about the signature or the credentials (those
    can echo the canonical request, and with it the session token)."""
    if any(word in kind for word in ("Signature", "Token", "Client", "Credential", "Auth")):
        return "(message withheld: it is about the credentials)"
    text = str(error.get("message") or error.get("Message") or "")
    return text.splitlines()[0][:200] if text else "(no message)"


_idle_connections = []  # kept alive between warm invocations: [(endpoint, Connection)]


def dynamodb_request(operation, body):
    """POST one signed JSON-API request; (HTTP status, answer bytes). A broken connection is
    tried once more on a new one (the protocol recognises its own applied writes); a
    timeout is not (waiting twice would be too long)."""
    import socket  # only when deduplication is used
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    endpoint = (os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL")
                or "https://dynamodb.%s.amazonaws.com" % region).rstrip("/")
    headers = sign_request(endpoint, region, operation, body, os.environ)
    head = "POST / HTTP/1.1\r\n" + "".join("%s: %s\r\n" % item for item in headers.items())
    message = (head + "content-length: %d\r\n\r\n" % len(body)).encode() + body
    DynamoTable.requests_made += 1
    for attempt in (1, 2):
        connection = None
        try:
            connection = _take_connection(endpoint, socket)
            status, answer, keep_alive = connection.exchange(message)
        except (OSError, ValueError) as exc:
            if connection is not None:
                connection.close()
            if attempt == 2 or isinstance(exc, socket.timeout):
                raise StoreError("%s could not reach DynamoDB (%s)" % (
                    operation, type(exc).__name__)) from None
            continue
        if keep_alive:
            _idle_connections.append((endpoint, connection))
        else:
            connection.close()
        return status, answer


def _take_connection(endpoint, socket):
    """An idle kept-alive connection to `endpoint`, or a new one."""
    while _idle_connections:
        idle_endpoint, connection = _idle_connections.pop()
        if idle_endpoint == endpoint:
            return connection
        connection.close()
    return Connection(endpoint, socket)


_tls: list[Any] = []  # one ssl context per process: loading the CA certificates is the slow part


class Connection:
    """One HTTP/1.1 connection (TLS for https) to the DynamoDB endpoint: a request is sent
    as one write, the answer read by its Content-Length (or chunks, or until closed)."""

    def __init__(self, endpoint, socket):
        scheme, _, host_port = endpoint.partition("://")
        host, _, port = host_port.partition("/")[0].rpartition(":")
        if not host or not port.isdigit():  # no port in the URL
            host, port = host_port.partition("/")[0], "443" if scheme == "https" else "80"
        raw = socket.create_connection((host.strip("[]"), int(port)), DEDUP_TIMEOUT)
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                import ssl
                if not _tls:
                    _tls.append(ssl.create_default_context())
                raw = _tls[0].wrap_socket(raw, server_hostname=host.strip("[]"))
        except OSError:
            raw.close()
            raise
        self.socket, self.reader = raw, raw.makefile("rb")

    def exchange(self, message):
        """(status, body, whether the connection stays open) for one request."""
        self.socket.sendall(message)
        status_line = self.reader.readline(1024)
        version, status, _ = (status_line.decode("latin-1") + "  ").split(" ", 2)
        if not version.startswith("HTTP/1.") or not status.isdigit():
            raise ValueError("not an HTTP/1.x answer")
        fields = {}
        while True:
            line = self.reader.readline(8192)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            fields[name.strip().lower()] = value.strip()
        keep_alive = fields.get("connection", "").lower() != "close" and \
            version == "HTTP/1.1"
        if "chunked" in fields.get("transfer-encoding", "").lower():
            body = self._chunks()
        elif "content-length" in fields:
            body = self._exactly(int(fields["content-length"]))
        else:
            body, keep_alive = self.reader.read(), False
        return int(status), body, keep_alive

    def _exactly(self, size):
        body = self.reader.read(size)
        if len(body) != size:
            raise ValueError("the answer ended early")
        return body

    def _chunks(self):
        parts: list[bytes] = []
        while True:
            size = int(self.reader.readline(1024).split(b";")[0], 16)
            if size == 0:
                while self.reader.readline(8192) not in (b"\r\n", b"\n", b""):
                    pass  # trailer fields
                return b"".join(parts)
            parts.append(self._exactly(size))
            self.reader.readline(1024)

    def close(self):
        self.reader.close()
        self.socket.close()


def sign_request(endpoint, region, operation, body, environ, now=None):
    """The headers of a DynamoDB JSON-API request, signed with Signature Version 4.

    Each step as AWS's "Create a signed AWS API request" page names it. StoreError when the
    environment has no credentials. `now` (epoch seconds) pins the clock for tests.
    """
    access_key = environ.get("AWS_ACCESS_KEY_ID")
    secret_key = environ.get("AWS_SECRET_ACCESS_KEY")
    session_token = environ.get("AWS_SESSION_TOKEN")
    if not access_key or not secret_key:
        raise StoreError("no AWS credentials in the environment (AWS_ACCESS_KEY_ID, "
                         "AWS_SECRET_ACCESS_KEY)")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    date = stamp[:8]
    headers = {"content-type": DYNAMODB_CONTENT_TYPE, "host": _signed_host(endpoint),
               "x-amz-date": stamp, "x-amz-target": DYNAMODB_TARGET + operation}
    if session_token:
        headers["x-amz-security-token"] = session_token
    # Step 1, the canonical request: method, path, query (none), headers with lowercase
    # names in sorted order (values trimmed, inner runs of spaces made one), the list of
    # their names, and the hex SHA-256 of the body.
    names = sorted(headers)
    canonical_headers = "".join("%s:%s\n" % (name, " ".join(headers[name].split()))
                                for name in names)
    signed_headers = ";".join(names)
    canonical_request = "\n".join(("POST", "/", "", canonical_headers, signed_headers,
                                   hashlib.sha256(body).hexdigest()))
    # Step 2, the string to sign: algorithm, time, scope, hash of the canonical request.
    scope = "%s/%s/dynamodb/aws4_request" % (date, region)
    string_to_sign = "\n".join(("AWS4-HMAC-SHA256", stamp, scope,
                                hashlib.sha256(canonical_request.encode()).hexdigest()))
    # Step 3, the signing key: the secret, HMAC-chained through date, region, service.
    signing_key = _signing_key(secret_key, date, region)
    # Step 4, the signature, and the Authorization header that carries it.
    signature = hmac.new(signing_key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, " \
        "Signature=%s" % (access_key, scope, signed_headers, signature)
    return headers


# (secret digest, date, region) -> signing key: one derivation per day
_signing_keys: dict[tuple[bytes, str, str], bytes] = {}


def _signing_key(secret_key, date, region):
    cache_key = (hashlib.sha256(secret_key.encode()).digest(), date, region)
    key = _signing_keys.get(cache_key)
    if key is None:
        key = ("AWS4" + secret_key).encode()
        for part in (date, region, "dynamodb", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        if len(_signing_keys) > 8:
            _signing_keys.clear()
        _signing_keys[cache_key] = key
    return key


def _signed_host(endpoint):
    """The Host header for an endpoint URL: its host, with the port unless it is the default."""
    scheme, _, rest = endpoint.partition("://")
    host = rest.split("/")[0]
    default = ":443" if scheme == "https" else ":80"
    return host[:-len(default)] if host.endswith(default) else host


# --- 7. YOUR BUSINESS LOGIC: edit `handle`. Everything above has verified the request. ----


def handle(message: Message) -> Any:
    """Do the work for one verified Message; the return value becomes the 200 JSON body.

    Raise NonRetryableError for a message that can never succeed (QStash: 489, no retry, DLQ).
    Raise RetryLater(seconds, reason) when it can succeed later (429 + Retry-After).
    Raise Reject(status, reason) to answer a 4xx/5xx of your choice. Any other exception
    answers 500 and QStash retries later. `message.callback` is set when this is a QStash
    callback or failure callback.
    """
    return {"ok": True, "source": message.source, "messageId": message.message_id}


# --- 8. Metrics (optional: METRICS_NAMESPACE) --------------------------------------------
# CloudWatch Embedded Metric Format: with METRICS_NAMESPACE set, the request's one JSON log line
# also carries an `_aws` block, and CloudWatch Logs turns that line into metrics: no API call,
# no extra line. Unset, the line has no `_aws` block and nothing is billed.

METRIC_OUTCOMES = ("accepted", "duplicate", "rejected", "deferred", "dropped", "error")
METRIC_DIMENSIONS = [["function_name"], ["function_name", "source"]]

def metrics_fields(log: dict, namespace: str, function_name: str, now_ms: int) -> dict:
    """The members to merge into the log line `log` so that CloudWatch extracts metrics from it.

    `log` must hold `outcome`, `ms`, `source` and `cold_start`. Every outcome is a Count metric
    of its own name, 1 for this request's outcome and 0 for the others: an alarm on `rejected`
    then sees zeros while requests go well, rather than missing data, and any outcome's
    SampleCount is the number of requests, for rates. `latency` is `ms` (Milliseconds) and
    `cold_starts` is 1 on a cold start (Count). Each metric is published twice: per function,
    the one to alarm on, and per function and source, to break it down.
    """
    fields: dict = {
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


def metrics_namespace_error(namespace: str) -> str | None:
    """Why METRICS_NAMESPACE cannot name a CloudWatch namespace, or None when it can. CloudWatch
    drops the metrics of a line whose namespace breaks its rules, silently, so check first.
    The rules are CloudWatch's ("Namespaces" in its concepts guide)."""
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_/#: ")
    if len(namespace) > 255 or not namespace.strip() or not set(namespace) <= allowed:
        return ("METRICS_NAMESPACE must be 1 to 255 letters, digits, spaces or . - _ / # : "
                "characters, not all spaces")
    if namespace.startswith("AWS/"):
        return "METRICS_NAMESPACE must not start with AWS/ (reserved for AWS's own metrics)"
    return None


# --- 9. Answer, log line and response ----------------------------------------------------

OUTCOMES = {200: "accepted", 400: "rejected", 401: "rejected", 409: "deferred",
            429: "deferred", 489: "dropped", 500: "error", 503: "deferred"}


class Answer:
    """What the function answers, and the reason it logs (never sent for a 401)."""

    def __init__(self, status: int, body: str, reason: str | None = None,
                 headers: dict[str, str] | None = None, outcome: str | None = None,
                 trace: list[str] | None = None, dedup: str | None = None) -> None:
        self.status = status
        self.body = body
        self.reason = reason
        self.headers = headers or {}
        self.outcome = outcome or OUTCOMES.get(status) or ("rejected" if status < 500
                                                           else "error")
        self.trace = trace
        self.dedup = dedup  # what the deduplication table decided (section 6c), or None


def run_handle(message: Message) -> Answer:
    """Call `handle` and turn whatever it does into an answer: it never raises."""
    try:
        result = handle(message)
    except NonRetryableError as exc:
        reason = "NonRetryableError: " + _safe_str(exc)
        return Answer(489, json.dumps({"error": _safe_str(exc)}), reason,
                      {"Upstash-NonRetryable-Error": "true"})
    except RetryLater as exc:
        headers = {}
        if exc.seconds is not None:  # None: no header, QStash uses its default backoff
            headers["Retry-After"] = str(exc.seconds)
        body = json.dumps({"error": _safe_str(exc.reason), "retryAfter": exc.seconds})
        return Answer(429, body, "RetryLater: " + _safe_str(exc), headers)
    except Reject as exc:
        return _answer_for_reject(exc)
    except Exception as exc:  # QStash retries a 500
        reason = "handle raised %s: %s" % (type(exc).__name__, _safe_str(exc))
        return Answer(500, '{"error": "internal error"}', reason, trace=_user_frames(exc))
    try:
        body = json.dumps(result, default=str, allow_nan=False)
    except Exception as exc:  # noqa: BLE001 - a value json cannot write, or whose str raises
        reason = "handle returned a value that is not JSON-serializable (%s)" % type(exc).__name__
        return Answer(500, '{"error": "internal error"}', reason)
    return Answer(200, body)


def _answer_for_reject(exc: Reject) -> Answer:
    """Reject(status, reason) as an answer; a status outside 400-599 becomes a 500."""
    args = exc.args
    status = args[0] if args else None
    reason = _safe_str(args[1]) if len(args) > 1 else "rejected"
    if type(status) is not int or not 400 <= status <= 599:
        reason = "Reject with status %.20r, not 400-599: %s" % (status, reason)
        status = 500
    return Answer(status, json.dumps({"error": reason}), reason)


def _safe_str(value: Any) -> str:
    """str(value), even when its __str__ raises."""
    try:
        return str(value)
    except Exception as exc:  # noqa: BLE001
        return "(str() raised %s)" % type(exc).__name__


def _user_frames(exc: BaseException) -> list[str]:
    """Where `handle` failed: file:line in function, from `handle` inward. No source lines,
    no locals, no message: nothing of the body, a key or a token reaches the log."""
    frames = []
    frame = exc.__traceback__
    while frame is not None:
        code = frame.tb_frame.f_code
        frames.append((code.co_filename, frame.tb_lineno, code.co_name))
        frame = frame.tb_next
    for index, (filename, _, name) in enumerate(frames):
        if name == "run_handle" and filename == __file__:
            frames = frames[index + 1:]  # our own frames are not where it failed
            break
    return ["%s:%s in %s" % (os.path.basename(filename), line, name)
            for filename, line, name in frames][-20:]


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
    claimed_retried = _header_count(headers.get("upstash-retried"))
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


def respond(shape: str, answer: Answer) -> dict[str, Any]:
    """The response in the shape the event's door expects (ALB: statusDescription, and
    multiValueHeaders in multi-value mode)."""
    headers = {"content-type": "application/json", **answer.headers}
    response: dict[str, Any] = {"statusCode": answer.status, "headers": headers,
                                "body": answer.body, "isBase64Encoded": False}
    if shape in ALB_SHAPES:
        response["statusDescription"] = _status_text(answer.status)
        if shape == "alb-multi":
            response["multiValueHeaders"] = {name: [value] for name, value
                                             in response.pop("headers").items()}
    return response


STATUS_PHRASES = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
                  404: "Not Found", 409: "Conflict", 410: "Gone", 413: "Payload Too Large",
                  422: "Unprocessable Entity", 429: "Too Many Requests",
                  489: "Non-Retryable Error",  # QStash's own status, not in HTTP's registry
                  500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
                  503: "Service Unavailable", 504: "Gateway Timeout"}


def _status_text(status: int) -> str:
    """ALB's statusDescription, e.g. "200 OK"."""
    phrase = STATUS_PHRASES.get(status) or ("Client Error" if status < 500 else "Server Error")
    return "%d %s" % (status, phrase)


_cold_start = True  # true until this container's first request has been answered


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """AWS's entry point. Never raises: every outcome is a response and one JSON log line."""
    global _cold_start
    cold_start = _cold_start
    _cold_start = False
    started = time.perf_counter()
    shape = event_shape(event)
    request = None
    message = None
    try:
        request = read_request(event, shape)
        configuration = load_configuration(os.environ)
        if request.is_alb_health_check:  # a broken configuration fails health checks too
            answer = Answer(200, '{"ok": true}', "ALB health check", outcome="health_check")
        else:
            message = authenticate(request, configuration)
            verified = message
            answer = run_once(verified, context, lambda: run_handle(verified))
    except SignatureError as exc:
        answer = Answer(401, '{"error": "invalid signature"}', str(exc))
    except Reject as exc:
        answer = _answer_for_reject(exc)
    except Exception as exc:  # noqa: BLE001 - fail closed on anything else, with a response
        answer = Answer(500, '{"error": "internal error"}',
                        "unexpected %s while verifying or deduplicating" % type(exc).__name__)
    milliseconds = (time.perf_counter() - started) * 1000
    line = log_line(answer, shape, request, message, milliseconds, context, cold_start)
    namespace = os.environ.get("METRICS_NAMESPACE")
    if namespace and not metrics_namespace_error(namespace):
        function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        line.update(metrics_fields(line, namespace, function_name, int(time.time() * 1000)))
    print(json.dumps(line, default=str), flush=True)
    return respond(shape, answer)
