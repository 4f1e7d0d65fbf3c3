"""Signed webhooks for AWS Lambda: QStash and soketi/Pusher, standard library only.

Deploy this one file. Every invocation takes one path, in the order of this file:

    event -> read_request -> authenticate -> handle (YOUR CODE: section 3) -> respond

Nothing reaches `handle` unless its signature, claims and body hash check out. Configuration
comes from the environment, read on every request (README.md, "Configuration").
"""
import base64
import binascii
import hashlib
import hmac
import json
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
    """Raise in `handle` for a message that can never succeed: 489, QStash moves it to the DLQ."""


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

    source: "qstash" or "soketi". body: raw bytes; text; json (None unless the body is JSON).
    headers: lowercased names. claims: the QStash token's. events: soketi's list of events.
    message_id, retried (int), schedule_id, region: QStash's Upstash-* headers, or None.
    Delivery is at-least-once: deduplicate on message_id when the work is not idempotent.
    """

    def __init__(self, source, request, claims=None, payload=None):
        h = request.headers
        self.source, self.headers, self.body, self.claims = source, h, request.body, claims or {}
        self.events, self._json = payload["events"] if payload else [], payload
        self.message_id, self.schedule_id, self.region = map(
            h.get, ("upstash-message-id", "upstash-schedule-id", "upstash-region"))
        self.retried = _count(h.get("upstash-retried"))

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


# --- Deduplication (optional: DEDUP_TABLE) -----------------------------------------------
"""Exactly-once `handle`, when DEDUP_TABLE names a DynamoDB table (partition key `id`, a
string; TTL attribute `expires_at`). Unset: nothing here runs, nothing is imported, no cost.

The handler calls one function: `run_once(message, context, produce_answer)`. It decides
from the table whether this delivery runs `handle` (through `produce_answer`), gets the first
delivery's stored answer, or is deferred, and records the result.

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


def run_once(message, context, produce_answer):
    """Run `produce_answer()` (which calls `handle`) at most once per message, when
    DEDUP_TABLE is set; otherwise just run it.

    produce_answer() returns (status, body, headers, reason): the answer the handler gives
    for `handle`'s outcome (200, 489 for NonRetryableError, 500 when it raised, ...).
    Returns the same 4-tuple for this delivery plus the dedup outcome: None (no table),
    "new", "taken_over", "duplicate" (the stored answer), "in_progress" (409),
    "replay" (a used token: the stored answer or 409), "store_error" (503).
    """
    table = os.environ.get("DEDUP_TABLE")
    if not table:
        return (*produce_answer(), None)
    problems = dedup_configuration_errors(os.environ)
    if problems:
        raise Reject(500, problems[0])
    store = DynamoTable(table)
    # The owner of the records this invocation writes: the request id (for the reader of the
    # table) and a nonce, since Lambda retries an asynchronous invoke under the same id.
    owner = "%s/%s" % (getattr(context, "aws_request_id", None) or "local",
                       os.urandom(6).hex())
    try:
        return Deduplication(store, message, context, owner).run(produce_answer)
    except StoreError as exc:
        reason = "dedup table unavailable, handle not called: %s" % exc
        return (503, json.dumps({"error": "deduplication store unavailable"}),
                {"Retry-After": str(DEDUP_STORE_RETRY_AFTER)}, reason, "store_error")


def dedup_configuration_errors(environ):
    """Problems with DEDUP_TABLE and DEDUP_TTL, each naming the variable and the rule."""
    problems = []
    table = environ.get("DEDUP_TABLE")
    if table and not (3 <= len(table) <= 255 and table.isascii() and
                      all(c.isalnum() or c in "_.-" for c in table)):
        problems.append("DEDUP_TABLE must be a DynamoDB table name: 3 to 255 of "
                        "a-z, A-Z, 0-9, _ . -")
    ttl = environ.get("DEDUP_TTL")
    if ttl and not (ttl.isascii() and ttl.isdigit() and 3600 <= int(ttl) <= 366 * 86400):
        problems.append("DEDUP_TTL must be whole seconds from 3600 to 31622400")
    return problems


def dedup_log_outcome(dedup, status, default):
    """The log line's `outcome` for a delivery: `duplicate` when answered from the table,
    `deferred` when told to come back (409, 503), else `default`."""
    if dedup in ("in_progress", "store_error") or dedup == "replay" and status == 409:
        return "deferred"
    if dedup in ("duplicate", "replay"):
        return "duplicate"
    return default


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
            status, body, headers, reason = produce_answer()
        except BaseException:
            self.release(message_key)
            raise
        if 200 <= status < 300 or status == 489:
            note = self.complete(message_key, status, body, headers)
        else:
            note = self.release(message_key)
        if note:
            reason = "%s; %s" % (reason, note) if reason else note
        return status, body, headers, reason, dedup

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
            return stored["status"], stored["body"], stored["headers"], reason, dedup
        wait_ms = 1000
        if item is not None and item.get("state") == "in_progress":
            wait_ms = max(1000, item.get("lease_until", 0) - self.now_ms)
        seconds = -(-wait_ms // 1000)
        reason = "in progress in another delivery, handle not called; retry in %ds" % seconds
        return (409, json.dumps({"error": "this message is being processed; retry later"}),
                {"Retry-After": str(seconds)}, reason,
                "in_progress" if dedup == "duplicate" else dedup)

    def answer_replay(self, used):
        """A used token: never runs `handle`, never writes. The answer of the message the
        token first claimed when it is complete, else 409 (a genuine QStash delivery then
        comes back with a fresh token)."""
        claimed = used.get("message")
        item = self.store.get(claimed) if claimed else None
        status, body, headers, reason, _ = self.answer_duplicate(item, "replay")
        return status, body, headers, "token already used (replay): " + reason, "replay"

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


_tls = []  # one ssl context per process: loading the CA certificates is the slow part


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
        parts = []
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


_signing_keys = {}  # (secret digest, date, region) -> key: one derivation per day


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


def handle_answer(message):
    """Call `handle`; the answer the handler gives for its outcome, as (status, body, headers,
    reason): 200 with its JSON, 489 for NonRetryableError, 500 when it raised."""
    try:
        return 200, json.dumps(handle(message), default=str), None, None
    except NonRetryableError as exc:
        return (489, json.dumps({"error": str(exc)}), {"Upstash-NonRetryable-Error": "true"},
                "NonRetryableError: %s" % exc)
    except Exception as exc:
        return (500, '{"error": "internal error"}', None,
                "handle raised %s: %s" % (type(exc).__name__, exc))


# --- 3. YOUR BUSINESS LOGIC: edit `handle`. Everything above has verified the request. ----


def handle(message):
    """Do the work for one verified Message; the return value becomes the 200 JSON body.

    Raise NonRetryableError for a message that can never succeed (QStash: 489, no retry, DLQ).
    Any other exception answers 500 and QStash retries later.
    """
    return {"ok": True, "source": message.source, "messageId": message.message_id}


# --- 4. Response --------------------------------------------------------------------------

STATUS_TEXT = {200: "200 OK", 400: "400 Bad Request", 401: "401 Unauthorized",
               409: "409 Conflict", 489: "489 Non-Retryable Error",
               500: "500 Internal Server Error", 503: "503 Service Unavailable"}
OUTCOMES = {200: "accepted", 400: "rejected", 401: "rejected", 409: "deferred", 489: "dropped",
            500: "error", 503: "deferred"}


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
    started, request, message, headers, dedup = time.perf_counter(), None, None, None, None
    try:
        request = read_request(event)
        message = authenticate(request)
        status, body, headers, reason, dedup = run_once(message, context,
                                                        lambda: handle_answer(message))
    except SignatureError as exc:
        status, reason, body = 401, str(exc), '{"error": "invalid signature"}'
    except Reject as exc:
        status, reason = exc.args
        body = json.dumps({"error": reason})
    except Exception as exc:  # fail closed on anything else, with a response
        status, body = 500, '{"error": "internal error"}'
        reason = "handle raised %s: %s" % (type(exc).__name__, exc) if message else \
            "unexpected %s while verifying" % type(exc).__name__
    h = request.headers if request else {}
    print(json.dumps({
        "outcome": dedup_log_outcome(dedup, status, OUTCOMES[status]), "status": status,
        "reason": reason and reason[:600],
        "shape": request and request.shape, "source": message and message.source,
        "message_id": h.get("upstash-message-id", "")[:128] or None,
        "retried": _count(h.get("upstash-retried")),
        "ms": round((time.perf_counter() - started) * 1000, 3),
        "request_id": getattr(context, "aws_request_id", None), "dedup": dedup}), flush=True)
    return respond(request, status, body, headers)
