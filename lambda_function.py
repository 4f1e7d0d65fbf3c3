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


# --- 3. YOUR BUSINESS LOGIC: edit `handle`. Everything above has verified the request. ----


def handle(message):
    """Do the work for one verified Message; the return value becomes the 200 JSON body.

    Raise NonRetryableError for a message that can never succeed (QStash: 489, no retry, DLQ).
    Any other exception answers 500 and QStash retries later.
    """
    return {"ok": True, "source": message.source, "messageId": message.message_id}


# --- Metrics (optional: METRICS_NAMESPACE) ---------------------------------------------
# CloudWatch Embedded Metric Format: with METRICS_NAMESPACE set, the request's one JSON log line
# also carries an `_aws` block, and CloudWatch Logs turns that line into metrics: no API call,
# no extra line. Unset, the line has no `_aws` block and nothing is billed.

METRIC_OUTCOMES = ("accepted", "duplicate", "rejected", "deferred", "dropped", "error")
METRIC_DIMENSIONS = [["function_name"], ["function_name", "source"]]

_first_request_pending = True  # true from module load until the first request is logged


def take_cold_start() -> bool:
    """True for the first request this container serves (its module was just loaded), False
    for every later one. Call it once per request, when the log line is written."""
    global _first_request_pending
    cold_start = _first_request_pending
    _first_request_pending = False
    return cold_start


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


def metrics_namespace_error(namespace: str) -> "str | None":
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


# --- 4. Response --------------------------------------------------------------------------

STATUS_TEXT = {200: "200 OK", 400: "400 Bad Request", 401: "401 Unauthorized",
               489: "489 Non-Retryable Error", 500: "500 Internal Server Error"}
OUTCOMES = {200: "accepted", 400: "rejected", 401: "rejected", 489: "dropped", 500: "error"}


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
    except Exception as exc:  # fail closed on anything else, with a response
        status, body = 500, '{"error": "internal error"}'
        reason = "handle raised %s: %s" % (type(exc).__name__, exc) if message else \
            "unexpected %s while verifying" % type(exc).__name__
    h = request.headers if request else {}
    log = {
        "outcome": OUTCOMES[status], "status": status, "reason": reason and reason[:600],
        "shape": request and request.shape, "source": message and message.source,
        "message_id": h.get("upstash-message-id", "")[:128] or None,
        "retried": _count(h.get("upstash-retried")),
        "ms": round((time.perf_counter() - started) * 1000, 3),
        "request_id": getattr(context, "aws_request_id", None), "cold_start": take_cold_start()}
    namespace = os.environ.get("METRICS_NAMESPACE")
    if namespace:
        log.update(metrics_fields(log, namespace, os.environ.get("AWS_LAMBDA_FUNCTION_NAME", ""),
                                  int(time.time() * 1000)))
    print(json.dumps(log), flush=True)
    return respond(request, status, body, headers)
