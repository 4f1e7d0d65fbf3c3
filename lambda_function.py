"""Signed webhooks for AWS Lambda: QStash and soketi/Pusher, standard library only.

Deploy this one file. Every invocation takes one path, in the order of this file:

    event -> read_request -> authenticate -> handle (YOUR CODE: section 3) -> respond

Nothing reaches `handle` unless its signature, claims and body hash check out. Configuration
comes from the environment, read on every request (README.md, "Configuration").
"""
from __future__ import annotations  # type hints as text: `int | None` on Python 3.9 too

import base64
import binascii
import hashlib
import hmac
import json
import math
import os
import time
from urllib.parse import quote

CLOCK_TOLERANCE = 5  # seconds of clock skew allowed on exp, nbf, iat (QSTASH_CLOCK_TOLERANCE)
SOKETI_MAX_AGE = 300  # seconds soketi's time_ms may be off, as Pusher's SDK (SOKETI_MAX_AGE)
MAX_TOKEN_LENGTH = 8192  # characters of Upstash-Signature, checked before any decoding
HS256_HEADER = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"  # {"alg":"HS256","typ":"JWT"}, QStash's
QSTASH_KEYS = ("QSTASH_CURRENT_SIGNING_KEY", "QSTASH_NEXT_SIGNING_KEY")
SOKETI_SECRETS = ("SOKETI_SECRET", "SOKETI_NEXT_SECRET")


class SignatureError(Exception):
    """Not provably from the sender (401). The message names the check that failed."""


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


def _retry_after_seconds(value):
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


class Reject(Exception):
    """Reject(status, reason): stop with that HTTP status; the reason is logged and returned."""


# --- 1. Event -> request ------------------------------------------------------------------


class Request:
    """One request however Lambda delivered it: `headers` with lowercased names, `body` bytes,
    the public `url` (None for a direct invocation), soketi's parsed `payload` if invoked."""

    def __init__(self, shape, url, headers, body, payload=None):
        self.shape, self.url, self.headers, self.body, self.payload = (
            shape, url, headers, body, payload)


def read_request(event):
    """Normalize every event shape Lambda hands over; Reject(400) for anything else."""
    if not isinstance(event, dict):
        raise Reject(400, "event is a %s, not a JSON object" % type(event).__name__)
    ctx, shape = event.get("requestContext") or {}, "unknown"
    try:
        if "payload" in event and "headers" in event and not ctx:
            shape = "soketi-invoke"  # soketi signed Node's JSON.stringify(payload): rebuild it
            body = node_json(event["payload"])
            return Request(shape, None, _headers(event["headers"]), body, event["payload"])
        headers = _headers(event.get("multiValueHeaders") or event.get("headers"))
        if event.get("version") == "2.0":  # Function URL, HTTP API: rawPath carries the stage
            shape, scheme, host = "http", "https", ctx["domainName"]
            path, query = event["rawPath"], event.get("rawQueryString")
        elif "elb" in ctx:  # ALB: query values arrive still URL-encoded
            shape = "alb-multi" if "multiValueHeaders" in event else "alb"
            scheme, host = headers.get("x-forwarded-proto", "https"), headers.get("host")
            path, query = event["path"], _query(event, str)
        elif "httpMethod" in event:  # API Gateway REST (1.0): requestContext.path has the stage
            shape, scheme, host = "rest", "https", ctx["domainName"]
            path, query = ctx["path"], _query(event, quote)
        else:
            raise Reject(400, "unknown event shape: not a Function URL, API Gateway, ALB or "
                         "soketi event")
        body = event.get("body") or ""
        try:
            body = base64.b64decode(body, validate=True) if event.get("isBase64Encoded") is True \
                else body.encode()
        except ValueError:
            raise Reject(400, "body is not valid base64 (isBase64Encoded) or UTF-8") from None
        url = scheme + "://" + host + path + ("?" + query if query else "")
        return Request(shape, url, headers, body)
    except (KeyError, AttributeError, TypeError, ValueError, RecursionError) as exc:
        raise Reject(400, "malformed %s event: %s %.80s" % (shape, type(exc).__name__, exc)) \
            from None


def _headers(raw):
    """Lowercase names once, here; repeats (lists, names differing in case) join with ","."""
    headers = {}
    for name, value in (raw or {}).items():
        headers.setdefault(name.lower(), []).append(value if isinstance(value, str) else
                                                    ",".join(value))
    return {name: ",".join(values) for name, values in headers.items()}


def _query(event, encode):
    """Payload 1.0 and ALB carry parameters, not the raw string: rebuild it in arrival order."""
    pairs = [(k, v) for k, values in (event.get("multiValueQueryStringParameters") or {}).items()
             for v in values] or (event.get("queryStringParameters") or {}).items()
    return "&".join(encode(k) + "=" + encode(v) for k, v in pairs)


def node_json(value):
    """The UTF-8 bytes of Node's JSON.stringify(value), exactly, for a value parsed from JSON
    that Node wrote (so its keys are already in JavaScript's order). The outer two levels go
    member by member, so a 6 MB payload never exists as one (up to 4-byte-wide) str."""
    floats, size = _scan(value)
    if size < 1 << 20:
        return _node_leaf(value, floats)
    return b"".join(_node_chunks(value, 2, None if floats else False))


def _node_chunks(value, depth, floats):
    if depth and type(value) is dict:
        yield b"{"
        for i, (key, item) in enumerate(value.items()):
            yield (b"," if i else b"") + _node_leaf(key, False) + b":"
            yield from _node_chunks(item, depth - 1, floats)
        yield b"}"
    elif depth and type(value) is list:  # slices of 64 items, one encoder call each
        yield b"["
        for start in range(0, len(value), 64):
            yield (b"," if start else b"") + _node_leaf(value[start:start + 64], floats)[1:-1]
        yield b"]"
    else:
        yield _node_leaf(value, floats)


_NODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _node_leaf(value, floats=None):
    """json.dumps differs from Node only for floats (1e-7, 5) and lone surrogates (Node
    escapes them): those take the exact paths here."""
    if _scan(value)[0] if floats is None else floats:
        parts = []
        _js(value, parts)
        text = "".join(parts)
    else:
        text = _NODE.encode(value)
    try:
        return text.encode()
    except UnicodeEncodeError:  # join surrogate pairs, then escape the lone ones as Node does
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
        return "".join("\\u%04x" % ord(c) if "\ud800" <= c <= "\udfff" else c
                       for c in text).encode()


def _scan(value):
    """(holds a float, rough size in characters), in one walk."""
    stack, floats, size = [value], False, 0
    while stack:
        item = stack.pop()
        kind, size = type(item), size + 2
        if kind is dict:
            stack.extend(item.values())
            size += sum(map(len, item))
        elif kind is list:
            stack.extend(item)
        elif kind is str:
            size += len(item)
        elif kind is float:
            floats = True
    return floats, size


def _js(value, out):
    """Append JSON.stringify's text for `value` to the list `out` (one pass, no copies)."""
    if type(value) is dict:
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            out.append(("," if i else "") + _NODE.encode(key) + ":")
            _js(item, out)
        out.append("}")
    elif type(value) is list:
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _js(item, out)
        out.append("]")
    elif type(value) is not float:
        out.append(_NODE.encode(value))
    elif value == 0 or value != value or abs(value) == float("inf"):
        out.append("0" if value == 0 else "null")
    else:  # ECMAScript Number::toString from repr's shortest round-trip digits
        mantissa, _, exp = repr(abs(value)).partition("e")
        whole, _, frac = mantissa.partition(".")
        digits = (whole + frac).lstrip("0")
        n = len(whole) + int(exp or 0) - len(whole + frac) + len(digits)  # point position
        digits, sign = digits.rstrip("0"), "-" if value < 0 else ""
        if len(digits) <= n <= 21:
            out.append(sign + digits + "0" * (n - len(digits)))
        elif -6 < n <= 21:
            out.append(sign + (digits[:n] + "." + digits[n:] if n > 0 else
                               "0." + "0" * -n + digits))
        else:
            fraction = "." + digits[1:] if len(digits) > 1 else ""
            out.append("%s%s%se%+d" % (sign, digits[0], fraction, n - 1))


# --- 2. Verification ----------------------------------------------------------------------


def verify(jwt_token, signing_key, body, url, *, clock_tolerance=CLOCK_TOLERANCE, now=None):
    """Check a QStash `Upstash-Signature` token; return its claims, or raise SignatureError
    naming the failed check.

    signing_key: a key, or the (current, next) pair: any may match the MAC, and the claims
    are then checked once, so an expired token is reported as expired. body: the raw body
    (bytes, str as UTF-8, None as empty). url: where QStash was told to deliver (None skips
    that check; one trailing slash of difference is allowed). now: pins the clock (seconds).
    """
    if not isinstance(jwt_token, str) or len(jwt_token) > MAX_TOKEN_LENGTH or \
            not jwt_token.isascii():
        raise SignatureError("token is not an ASCII string of at most %d chars" % MAX_TOKEN_LENGTH)
    parts = jwt_token.split(".")
    if len(parts) != 3:
        raise SignatureError("token has %d segments, not 3" % len(parts))
    if parts[0] != HS256_HEADER:
        header = _segment(parts[0], "header")
        if header.get("alg") != "HS256":
            raise SignatureError("header alg %r is not HS256" % str(header.get("alg"))[:16])
        if "crit" in header:  # RFC 7515 4.1.11: refuse extensions not understood
            raise SignatureError("header lists crit extensions, which QStash never sends")
    keys = (signing_key,) if isinstance(signing_key, str) else signing_key
    signed, signature = (parts[0] + "." + parts[1]).encode(), _unb64url(parts[2], "signature")
    for key in keys:
        if hmac.compare_digest(_mac(key, signed), signature):
            break
    else:
        raise SignatureError("signature does not match the signing key(s)")
    if _b64url(signature) != parts[2].encode():  # the same MAC, spelled another way
        raise SignatureError("signature is not canonical unpadded base64url")
    claims = _segment(parts[1], "claims")
    body = body.encode() if isinstance(body, str) else body or b""
    check_claims(claims, body, url, clock_tolerance, time.time() if now is None else now)
    return claims


_pads = {}
_STANDARD, _URLSAFE = bytes.maketrans(b"-_", b"+/"), bytes.maketrans(b"+/", b"-_")
_JSON = json.JSONDecoder()
_IPAD, _OPAD = bytes(b ^ 0x36 for b in range(256)), bytes(b ^ 0x5C for b in range(256))


def _mac(key, message):
    """HMAC-SHA256 (RFC 2104, exactly what hmac.digest computes) with the key's inner and
    outer pad states hashed once per key and copied per call: a second key costs ~1 us."""
    pads = _pads.get(key)
    if pads is None:
        if len(_pads) > 8:
            _pads.clear()
        block = key.encode()
        block = (hashlib.sha256(block).digest() if len(block) > 64 else block).ljust(64, b"\0")
        pads = _pads[key] = (hashlib.sha256(block.translate(_IPAD)),
                             hashlib.sha256(block.translate(_OPAD)))
    inner, outer = pads[0].copy(), pads[1].copy()
    inner.update(message)
    outer.update(inner.digest())
    return outer.digest()


def _b64url(raw):
    return binascii.b2a_base64(raw, newline=False).translate(_URLSAFE).rstrip(b"=")


def _unb64url(text, what):
    """Lenient base64url decoding (padding optional). Only for MAC-checked or re-encoded text."""
    try:
        return binascii.a2b_base64(text.encode().translate(_STANDARD) + b"==")
    except ValueError:
        raise SignatureError(what + " segment is not base64url") from None


def _segment(text, what):
    """A base64url segment holding one JSON object and nothing after it."""
    try:
        decoded = _unb64url(text, what).decode()
        value, end = _JSON.raw_decode(decoded)
    except (ValueError, RecursionError, SignatureError):
        raise SignatureError(what + " segment is not base64url JSON") from None
    if end != len(decoded) or not isinstance(value, dict):
        raise SignatureError(what + " segment is not one JSON object")
    return value


def check_claims(claims, body, url, tolerance, now):
    """The checks after the MAC: issuer, lifetime, subject URL, body hash."""
    if claims.get("iss") != "Upstash":
        raise SignatureError("claim iss is not 'Upstash'")
    exp, nbf, iat = _number(claims, "exp"), _number(claims, "nbf"), _number(claims, "iat")
    if exp is None:
        raise SignatureError("claim exp is missing")
    if now >= exp + tolerance:
        raise SignatureError("token expired at %d (now %d, tolerance %gs)" % (exp, now, tolerance))
    if max(nbf or 0, iat or 0) > now + tolerance:
        raise SignatureError("claim %s is in the future (now %d)"
                             % ("nbf" if (nbf or 0) > now + tolerance else "iat", now))
    sub = claims.get("sub")
    if url is not None and sub != url and not (  # one trailing slash apart, outside a query
            isinstance(sub, str) and "?" not in url and (sub == url + "/" or sub + "/" == url)):
        raise SignatureError("claim sub %.300r is not this request's URL %.300r (QSTASH_URL "
                             "sets the URL QStash calls)" % (sub, url))
    claimed = claims.get("body")
    if not isinstance(claimed, str):
        raise SignatureError("claim body is missing or not a string")
    digest = _b64url(hashlib.sha256(body).digest())
    if not hmac.compare_digest(digest, claimed.rstrip("=").encode()):
        raise SignatureError("body hash does not match claim body (the body was altered)")


def _number(claims, name):
    """A time claim: None when absent, else a finite number (bool and null refused)."""
    value = claims.get(name, ...)
    if value is ...:
        return None
    if type(value) not in (int, float) or not abs(value) < 1e16:
        raise SignatureError("claim %s is not a number" % name)
    return value


def verify_pusher(signature, secret, body, *, max_age=SOKETI_MAX_AGE, now=None, payload=None):
    """Check a soketi/Pusher webhook's `X-Pusher-Signature` (lowercase hex HMAC-SHA256 of the
    body); return the parsed payload, or raise SignatureError naming the failed check.

    secret: the app secret, or several (rotation). max_age: how far `time_ms` may be from now,
    in seconds (0: unchecked). payload: skips re-parsing a body rebuilt from a parsed payload.
    """
    if not isinstance(signature, str) or len(signature) != 64 or not signature.isascii():
        raise SignatureError("X-Pusher-Signature is not 64 hex characters")
    body = body.encode() if isinstance(body, str) else body or b""
    secrets = (secret,) if isinstance(secret, str) else secret
    for secret in secrets:
        if hmac.compare_digest(hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
                               signature):
            break
    else:
        raise SignatureError("X-Pusher-Signature does not match the app secret(s)")
    try:
        payload = json.loads(body) if payload is None else payload
    except (ValueError, RecursionError):
        pass
    if not isinstance(payload, dict) or not isinstance(payload.get("events"), list):
        raise SignatureError("signed body is not a webhook payload with an events list")
    sent, now = payload.get("time_ms"), time.time() if now is None else now
    if max_age and not (type(sent) in (int, float) and abs(sent) < 1e16
                        and abs(now - sent / 1000) <= max_age):
        raise SignatureError("time_ms %.20r is not within %gs of now (SOKETI_MAX_AGE)"
                             % (sent, max_age))
    return payload


class Message:
    """What `handle` receives: a request whose signature checked out.

    Signed (covered by the QStash token or the soketi HMAC): body (QStash: through the
    token's body hash), text, json, events, claims. Unsigned (plain request headers, which
    anyone on the path could set; trust them only as far as a header can be trusted):
    everything else.

    source: "qstash" or "soketi". body: raw bytes; text; json (None unless the body is JSON).
    headers: lowercased names. claims: the QStash token's. events: soketi's list of events.
    message_id, retried (int), schedule_id, region, topic_name, caller_ip: QStash's
    Upstash-* headers, or None. forwarded_headers: the publisher's `Upstash-Forward-*`
    headers as they arrive (prefix stripped by QStash, names lowercased). callback: a
    Callback when this delivery is a QStash callback or failure callback, else None.
    Delivery is at-least-once: deduplicate on message_id when the work is not idempotent.
    """

    def __init__(self, source, request, claims=None, payload=None):
        h = request.headers
        self.source, self.headers, self.body, self.claims = source, h, request.body, claims or {}
        self.events, self._json = payload["events"] if payload else [], payload
        self.message_id, self.schedule_id, self.region = map(
            h.get, ("upstash-message-id", "upstash-schedule-id", "upstash-region"))
        self.retried = _count(h.get("upstash-retried"))
        self.topic_name = h.get("upstash-topic-name")
        self.caller_ip = h.get("upstash-caller-ip")
        self.forwarded_headers = forwarded_headers(h) if source == "qstash" else {}
        self.callback = parse_callback(h, request.body) if source == "qstash" else None

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    @property
    def json(self):
        if self._json is None:
            try:
                self._json = json.loads(self.body)
            except (ValueError, RecursionError):
                pass
        return self._json


def _count(value):
    return int(value) if value and len(value) < 9 and value.isascii() and value.isdigit() else None


# --- QStash callbacks ---------------------------------------------------------------------
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


def _callback_from(document):
    """Build a Callback from the parsed body; ValueError naming the first field that does
    not have QStash's shape. Field names and types: QStash's docs, "Callbacks"."""
    if not isinstance(document, dict):
        raise ValueError("body is not a JSON object")
    status = _callback_integer(document, "status", None)
    if status is None or not 0 <= status <= 999:
        raise ValueError("status is not an HTTP status")
    return Callback(
        status=status,
        header=_callback_headers(document, "header"),
        body=_callback_base64(document, "body"),
        retried=_callback_integer(document, "retried", 0),  # left out on a first attempt
        max_retries=_callback_integer(document, "maxRetries", 0),
        source_message_id=_callback_text(document, "sourceMessageId", required=True),
        url=_callback_text(document, "url", required=True),
        method=_callback_text(document, "method", required=True),
        source_header=_callback_headers(document, "sourceHeader"),
        source_body=_callback_base64(document, "sourceBody"),
        topic_name=_callback_text(document, "topicName"),
        endpoint_name=_callback_text(document, "endpointName"),
        schedule_id=_callback_text(document, "scheduleId"),
        caller_ip=_callback_text(document, "callerIP"),
        not_before=_callback_integer(document, "notBefore", None),
        created_at=_callback_integer(document, "createdAt", None),
        dlq_id=_callback_text(document, "dlqId"),
    )


def _callback_text(document, name, required=False):
    """A string field; None when absent, null or empty (Go writes "" for an unset string)."""
    value = document.get(name)
    if value is None or value == "":
        if required:
            raise ValueError(name + " is missing")
        return None
    if not isinstance(value, str):
        raise ValueError(name + " is not a string")
    return value


def _callback_integer(document, name, default):
    """An integer field. QStash's docs show the times as strings of digits ("1701198458025")
    and its SDK's docs as numbers: both are read."""
    value = document.get(name)
    if value is None or value == "":
        return default
    if type(value) is int:  # not bool, not float
        return value
    if isinstance(value, str) and len(value) <= 19 and value.isascii() and value.isdigit():
        return int(value)
    raise ValueError(name + " is not an integer")


def _callback_headers(document, name):
    """A header map: Go's http.Header (name -> list of values); a single string value, as
    QStash's docs show for sourceHeader, becomes a list of one. Names lowercased, as
    `message.headers`."""
    value = document.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(name + " is not an object")
    headers = {}
    for header_name, values in value.items():
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValueError(name + " values are not strings")
        headers.setdefault(header_name.lower(), []).extend(values)
    return headers


def _callback_base64(document, name):
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


def authenticate(request):
    """Route on the signature header, verify with the configured secrets, return a Message."""
    headers, environ = request.headers, os.environ
    qstash_keys = _secrets(QSTASH_KEYS, 2, headers.get("upstash-region", ""))
    soketi_secrets = _secrets(SOKETI_SECRETS, 1)
    if not qstash_keys and not soketi_secrets:
        raise Reject(500, "QSTASH_CURRENT_SIGNING_KEY is not set (nor SOKETI_SECRET)")
    if "upstash-signature" in headers and request.shape != "soketi-invoke":
        if not qstash_keys:
            raise SignatureError("QStash request, but no QStash keys are configured here")
        tolerance = _seconds("QSTASH_CLOCK_TOLERANCE", CLOCK_TOLERANCE)
        claims = verify(headers["upstash-signature"], qstash_keys, request.body,
                        environ.get("QSTASH_URL") or request.url, clock_tolerance=tolerance)
        return Message("qstash", request, claims=claims)
    if "x-pusher-signature" in headers:
        app_key = environ.get("SOKETI_KEY")
        if not soketi_secrets:
            raise SignatureError("soketi request, but SOKETI_SECRET is not configured here")
        if app_key and not hmac.compare_digest(app_key.encode(), headers.get(
                "x-pusher-key", "").encode("utf-8", "surrogatepass")):
            raise SignatureError("X-Pusher-Key is not SOKETI_KEY")
        payload = verify_pusher(headers["x-pusher-signature"], soketi_secrets, request.body,
                                max_age=_seconds("SOKETI_MAX_AGE", SOKETI_MAX_AGE),
                                payload=request.payload)
        return Message("soketi", request, payload=payload)
    raise SignatureError("no Upstash-Signature or X-Pusher-Signature header")


def _secrets(names, required, region=""):
    """The configured secrets: a region's set when present (`US-EAST-1` reads `US_EAST_1_` +
    name), else the plain one; [] when none is set; Reject(500) naming a missing one."""
    region = region.replace("-", "_").upper() + "_"
    for prefix in (region, "") if region[:-1].replace("_", "").isalnum() and region.isascii() \
            else ("",):
        values = [os.environ.get(prefix + name) for name in names]
        missing = [prefix + name for name, value in zip(names[:required], values) if not value]
        if any(values) and missing:
            raise Reject(500, missing[0] + " is not set")
        if any(values):
            return [value for value in values if value]
    return []


def _seconds(name, default):
    value = os.environ.get(name) or default
    try:
        if 0 <= float(value) <= 86400:
            return float(value)
    except ValueError:
        pass
    raise Reject(500, "%s must be 0 to 86400 seconds, not %.32r" % (name, value))


# --- 3. YOUR BUSINESS LOGIC: edit `handle`. Everything above has verified the request. ----


def handle(message):
    """Do the work for one verified Message; the return value becomes the 200 JSON body.

    Raise NonRetryableError for a message that can never succeed (QStash: 489, no retry, DLQ).
    Raise RetryLater(seconds, reason) when it can succeed later (429 + Retry-After).
    Any other exception answers 500 and QStash retries later.
    `message.callback` is set when this is a QStash callback or failure callback.
    """
    return {"ok": True, "source": message.source, "messageId": message.message_id}


# --- 4. Response --------------------------------------------------------------------------

STATUS_TEXT = {200: "200 OK", 400: "400 Bad Request", 401: "401 Unauthorized",
               429: "429 Too Many Requests", 489: "489 Non-Retryable Error",
               500: "500 Internal Server Error"}
OUTCOMES = {200: "accepted", 400: "rejected", 401: "rejected", 429: "deferred", 489: "dropped",
            500: "error"}


def respond(request, status, body, headers=None):
    """The response in the shape the event's source expects (ALB: statusDescription, and
    multiValueHeaders in multi-value mode)."""
    headers = {"content-type": "application/json", **(headers or {})}
    response = {"statusCode": status, "headers": headers, "body": body, "isBase64Encoded": False}
    if request and request.shape in ("alb", "alb-multi"):
        response["statusDescription"] = STATUS_TEXT[status]
        if request.shape == "alb-multi":
            response["multiValueHeaders"] = {k: [v] for k, v in response.pop("headers").items()}
    return response


def lambda_handler(event, context):
    """AWS's entry point. Never raises: every outcome is a response and one JSON log line."""
    started, request, message, headers = time.perf_counter(), None, None, None
    try:
        request = read_request(event)
        message = authenticate(request)
        status, reason, body = 200, None, json.dumps(handle(message), default=str)
    except SignatureError as exc:
        status, reason, body = 401, str(exc), '{"error": "invalid signature"}'
    except Reject as exc:
        status, reason = exc.args
        body = json.dumps({"error": reason})
    except NonRetryableError as exc:
        status, reason = 489, "NonRetryableError: %s" % exc
        body, headers = json.dumps({"error": str(exc)}), {"Upstash-NonRetryable-Error": "true"}
    except RetryLater as exc:
        status = 429
        reason = "RetryLater: %s" % exc
        body = json.dumps({"error": exc.reason, "retryAfter": exc.seconds})
        if exc.seconds is not None:  # None: no header, QStash uses its default backoff
            headers = {"Retry-After": str(exc.seconds)}
    except Exception as exc:  # fail closed on anything else, with a response
        status, body = 500, '{"error": "internal error"}'
        reason = "handle raised %s: %s" % (type(exc).__name__, exc) if message else \
            "unexpected %s while verifying" % type(exc).__name__
    h = request.headers if request else {}
    print(json.dumps({
        "outcome": OUTCOMES[status], "status": status, "reason": reason and reason[:600],
        "shape": request and request.shape, "source": message and message.source,
        "message_id": h.get("upstash-message-id", "")[:128] or None,
        "retried": _count(h.get("upstash-retried")),
        "ms": round((time.perf_counter() - started) * 1000, 3),
        "request_id": getattr(context, "aws_request_id", None)}), flush=True)
    return respond(request, status, body, headers)
