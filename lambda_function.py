"""Signed webhooks for AWS Lambda: QStash and soketi/Pusher, standard library only.

Deploy this one file. Each invocation follows one path, top to bottom in this file:

    event -> read_request() -> authenticate() -> handle()  <- YOUR CODE, edit only this
          -> respond()

Nothing reaches `handle` unless its signature, claims and body hash check out. Configuration
is read from the environment on every request (see README.md, "Configuration").
"""
import base64
import hashlib
import hmac
import json
import math
import os
import time
import urllib.parse

# Tolerances and limits. Change them here, not inline.
DEFAULT_CLOCK_TOLERANCE = 5  # seconds of clock skew allowed on exp, nbf and iat
DEFAULT_SOKETI_MAX_AGE = 300  # seconds a soketi time_ms may be off (Pusher SDK's value)
MAX_TOKEN_LENGTH = 8192  # characters in Upstash-Signature, checked before any decoding
QSTASH_ISSUER = "Upstash"
QSTASH_KEY_VARS = ("QSTASH_CURRENT_SIGNING_KEY", "QSTASH_NEXT_SIGNING_KEY")
SOKETI_SECRET_VARS = ("SOKETI_SECRET", "SOKETI_NEXT_SECRET")


class SignatureError(Exception):
    """The request is not provably from its sender; the message names the check that failed."""


class NonRetryableError(Exception):
    """Raise from `handle` for a message that can never succeed: QStash gets 489 and moves it
    to the DLQ instead of retrying."""


class Reject(Exception):
    """Stop with an HTTP status. `reason` goes to the log; `public` goes to the caller."""

    def __init__(self, status, reason, public=None):
        super().__init__(reason)
        self.status, self.public = status, public or reason


# --- 1. Event -> request ------------------------------------------------------------------


class Request:
    """One request however Lambda delivered it: lowercased headers, raw body bytes.

    `url` is the public URL derived from the event (None when the event carries none);
    `payload` is the already-parsed body of a soketi direct invocation.
    """

    def __init__(self, shape, method, url, headers, body, payload=None):
        self.shape, self.method, self.url = shape, method, url
        self.headers, self.body, self.payload = headers, body, payload


def read_request(event):
    """Normalize any event shape Lambda hands over; raise Reject(400) for anything else."""
    if not isinstance(event, dict):
        raise Reject(400, f"event is a {type(event).__name__}, not a JSON object")
    context = event.get("requestContext")
    if event.get("version") == "2.0":
        return _from_http_v2(event, _get(event, "requestContext", dict, {}))
    if isinstance(context, dict) and "elb" in context:
        return _from_alb(event)
    if "httpMethod" in event:
        return _from_rest(event, _get(event, "requestContext", dict, {}))
    if "payload" in event and "headers" in event and context is None:
        return _from_soketi_invoke(event)
    raise Reject(400, "unknown event shape: not a Function URL, API Gateway, ALB or soketi "
                 "event")


def _from_http_v2(event, context):
    """Function URL and API Gateway HTTP API (payload 2.0); rawPath carries any stage."""
    http = _get(context, "http", dict, {})
    host = _get(context, "domainName", str)
    url = host and _url("https", host, _get(event, "rawPath", str, "/"),
                        _get(event, "rawQueryString", str, ""))
    return Request("http", _get(http, "method", str), url,
                   _headers(_get(event, "headers", dict, {})), _body(event))


def _from_rest(event, context):
    """API Gateway REST (payload 1.0): requestContext.path carries the stage."""
    host, path = _get(context, "domainName", str), _get(context, "path", str)
    query = _query(event, urllib.parse.quote)
    url = host and path and _url("https", host, path, query)
    return Request("rest", _get(event, "httpMethod", str), url, _event_headers(event),
                   _body(event))


def _from_alb(event):
    """ALB target: single-value or multi-value headers; query values arrive still encoded."""
    headers = _event_headers(event)
    host = headers.get("host")
    scheme = headers.get("x-forwarded-proto", "https")
    url = host and _url(scheme, host, _get(event, "path", str, "/"), _query(event, str))
    shape = "alb-multi" if "multiValueHeaders" in event else "alb"
    return Request(shape, _get(event, "httpMethod", str), url, headers, _body(event))


def _from_soketi_invoke(event):
    """soketi's Lambda trigger: {"payload", "headers"}; it signed Node's JSON.stringify(payload)."""
    payload = _get(event, "payload", dict)
    try:
        body = js_stringify(payload).encode("utf-8")
    except (ValueError, RecursionError) as exc:
        raise Reject(400, f"payload cannot be re-serialized: {type(exc).__name__}")
    return Request("soketi-invoke", None, None, _headers(_get(event, "headers", dict, {})),
                   body, payload)


def _get(obj, key, kind, default=None):
    """obj[key] when it is a `kind`; `default` when absent or null; Reject(400) otherwise."""
    value = obj.get(key)
    if value is None:
        return default
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise Reject(400, f"event field {key!r} is not a {kind.__name__}")
    return value


def _event_headers(event):
    """Payload 1.0 and ALB: prefer multiValueHeaders (all values), else headers."""
    multi = _get(event, "multiValueHeaders", dict)
    if multi:
        return _headers({name: _strings(values, name) for name, values in multi.items()})
    return _headers(_get(event, "headers", dict, {}))


def _headers(raw):
    """Lowercase names once, here. Repeats (lists, or names differing in case) join with ","."""
    headers = {}
    for name, value in raw.items():
        if isinstance(value, list):
            value = ",".join(value)
        if not isinstance(value, str):
            raise Reject(400, f"header {str(name)[:64]!r} is not a string")
        name = name.lower()
        headers[name] = headers[name] + "," + value if name in headers else value
    return headers


def _strings(values, name):
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise Reject(400, f"multi-value field {str(name)[:64]!r} is not a list of strings")
    return values


def _query(event, encode):
    """Rebuild the query string of a payload 1.0 or ALB event, in the order received."""
    multi = _get(event, "multiValueQueryStringParameters", dict)
    pairs = ([(k, v) for k, vs in multi.items() for v in _strings(vs, k)] if multi else
             list(_get(event, "queryStringParameters", dict, {}).items()))
    return "&".join(encode(_string(k)) + "=" + encode(_string(v)) for k, v in pairs)


def _string(value):
    if not isinstance(value, str):
        raise Reject(400, "query parameter is not a string")
    return value


def _url(scheme, host, path, query):
    return f"{scheme}://{host}{path}?{query}" if query else f"{scheme}://{host}{path}"


def _body(event):
    """Raw body bytes: base64-decoded when isBase64Encoded, empty when absent or null."""
    body = _get(event, "body", str, "")
    if event.get("isBase64Encoded") is True:
        try:
            return base64.b64decode(body, validate=True)
        except ValueError:
            raise Reject(400, "body is marked isBase64Encoded but is not valid base64") from None
    try:
        return body.encode("utf-8")
    except UnicodeEncodeError:
        raise Reject(400, "body text is not encodable as UTF-8") from None


def js_stringify(value):
    """Node's JSON.stringify(value) for a parsed JSON value, byte for byte.

    json.dumps matches Node except for floats (1e-7 vs 1e-07, 5 vs 5.0) and lone surrogates
    (Node escapes them); those take the slower exact paths below.
    """
    text = (_js_encode(value) if _has_float(value) else
            json.dumps(value, ensure_ascii=False, separators=(",", ":")))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: join valid pairs, escape the rest like Node
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
        text = "".join(f"\\u{ord(c):04x}" if "\ud800" <= c <= "\udfff" else c for c in text)
    return text


def _has_float(value):
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is dict:
            stack.extend(item.values())
        elif type(item) is list:
            stack.extend(item)
        elif type(item) is float:
            return True
    return False


def _js_encode(value):
    if type(value) is float:
        return _js_number(value)
    if type(value) is dict:
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + _js_encode(v)
                              for k, v in value.items()) + "}"
    if type(value) is list:
        return "[" + ",".join(_js_encode(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _js_number(x):
    """ECMAScript Number::toString: shortest round-trip digits (Python's repr has the same)."""
    if not math.isfinite(x):
        return "null"
    if x == 0:
        return "0"
    mantissa, _, exp = repr(abs(x)).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    point = len(whole) + int(exp or 0) - (len(whole + frac) - len(digits))
    digits = digits.rstrip("0")
    sign, k = "-" if x < 0 else "", len(digits)
    if k <= point <= 21:
        return sign + digits + "0" * (point - k)
    if 0 < point <= 21:
        return sign + digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return sign + "0." + "0" * -point + digits
    e = point - 1
    return f"{sign}{digits[0]}{'.' + digits[1:] if k > 1 else ''}e{'+' if e > 0 else '-'}{abs(e)}"


# --- 2. Verification ----------------------------------------------------------------------


def verify(jwt_token, signing_key, body, url, *, clock_tolerance=DEFAULT_CLOCK_TOLERANCE,
           now=None):
    """Check one QStash `Upstash-Signature` token against one signing key; return its claims.

    `body` is the raw request body (bytes, str as UTF-8, or None for empty). `url` is the URL
    QStash was told to call (None skips that check; one trailing slash of difference is
    allowed). `now` pins the clock, in seconds. Raises SignatureError naming the failed check.
    """
    return verify_qstash(jwt_token, (signing_key,), body, url,
                         clock_tolerance=clock_tolerance, now=now)


def verify_qstash(jwt_token, signing_keys, body, url, *, clock_tolerance=DEFAULT_CLOCK_TOLERANCE,
                  now=None):
    """`verify` with key rotation: the MAC may match any of `signing_keys` (current, next);
    the claims are then checked once, so an expired token is reported as expired."""
    header_b64, claims_b64, signature = _token_segments(jwt_token)
    header = _json_segment(header_b64, "header")
    if header.get("alg") != "HS256":
        raise SignatureError(f"header alg {str(header.get('alg'))[:16]!r} is not HS256")
    signed = f"{header_b64}.{claims_b64}".encode("ascii")
    if not any(hmac.compare_digest(_b64url(hmac.digest(key.encode("utf-8"), signed, "sha256")),
                                   signature.encode("ascii")) for key in signing_keys):
        raise SignatureError("signature does not match the signing key"
                             + ("s" if len(signing_keys) > 1 else ""))
    claims = _json_segment(claims_b64, "claims")
    check_claims(claims, body, url, clock_tolerance, time.time() if now is None else now)
    return claims


def check_claims(claims, body, url, tolerance, now):
    """Issuer, lifetime, subject URL and body hash of MAC-verified claims."""
    if claims.get("iss") != QSTASH_ISSUER:
        raise SignatureError(f"claim iss is not {QSTASH_ISSUER!r}")
    exp = _time_claim(claims, "exp", required=True)
    if now >= exp + tolerance:
        raise SignatureError(f"token expired at {exp} (now {int(now)}, tolerance {tolerance}s)")
    for name in ("nbf", "iat"):
        value = _time_claim(claims, name)
        if value is not None and value > now + tolerance:
            raise SignatureError(f"claim {name} {value} is in the future (now {int(now)})")
    if url is not None:
        _check_subject(claims.get("sub"), url)
    _check_body_hash(claims.get("body"), body)


def _token_segments(token):
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        raise SignatureError(f"token is not an ASCII string of at most {MAX_TOKEN_LENGTH} chars")
    segments = token.split(".")
    if len(segments) != 3:
        raise SignatureError(f"token has {len(segments)} segments, not 3")
    return segments


_B64URL_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _json_segment(segment, what):
    """Strict base64url (padding optional) holding a JSON object without duplicate keys."""
    data = segment.rstrip("=")
    padded = data + "=" * (-len(data) % 4)
    if len(data) % 4 == 1 or segment not in (data, padded) or not _B64URL_ALPHABET.issuperset(data):
        raise SignatureError(f"{what} segment is not base64url")
    try:
        value = json.loads(base64.urlsafe_b64decode(padded), object_pairs_hook=_unique_keys,
                           parse_constant=_no_constants)
    except (ValueError, RecursionError):
        raise SignatureError(f"{what} segment is not JSON with unique keys") from None
    if not isinstance(value, dict):
        raise SignatureError(f"{what} segment is not a JSON object")
    return value


def _unique_keys(pairs):
    value = dict(pairs)
    if len(value) != len(pairs):
        raise ValueError("duplicate key")
    return value


def _no_constants(name):
    raise ValueError(f"{name} is not JSON")


def _time_claim(claims, name, required=False):
    value = claims.get(name)
    if value is None and name not in claims and not required:
        return None
    if type(value) is int and abs(value) < 2**53 or type(value) is float and math.isfinite(value):
        return value
    raise SignatureError(f"claim {name} is {'missing' if value is None else 'not a number'}")


def _check_subject(sub, url):
    if not isinstance(sub, str):
        raise SignatureError("claim sub is missing or not a string")
    longer, shorter = (sub, url) if len(sub) > len(url) else (url, sub)
    if sub != url and not (longer == shorter + "/" and "?" not in longer):
        raise SignatureError(f"claim sub {sub[:512]!r} is not this request's URL {url[:512]!r}"
                             " (set QSTASH_URL to the URL QStash calls)")


def _check_body_hash(claimed, body):
    if not isinstance(claimed, str):
        raise SignatureError("claim body is missing or not a string")
    body = body.encode("utf-8") if isinstance(body, str) else body or b""
    if not hmac.compare_digest(_b64url(hashlib.sha256(body).digest()),
                               claimed.rstrip("=").encode("utf-8")):
        raise SignatureError("body hash does not match claim body (body was altered)")


def _b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def verify_pusher(signature, secret, body, *, max_age=DEFAULT_SOKETI_MAX_AGE, now=None):
    """Check one soketi/Pusher webhook (`X-Pusher-Signature`) against one app secret; return
    the parsed payload. `max_age` bounds how far `time_ms` may be from now (0: no check)."""
    return verify_soketi(signature, (secret,), body, max_age=max_age, now=now)


def verify_soketi(signature, secrets, body, *, max_age=DEFAULT_SOKETI_MAX_AGE, now=None,
                  payload=None):
    """`verify_pusher` with rotation: the hex HMAC-SHA256 of `body` may match any secret.
    `payload` skips re-parsing a body that was built from an already-parsed payload."""
    if not isinstance(signature, str) or len(signature) != 64 or not signature.isascii():
        raise SignatureError("X-Pusher-Signature is not 64 hex characters")
    body = body.encode("utf-8") if isinstance(body, str) else body or b""
    if not any(hmac.compare_digest(hmac.digest(s.encode("utf-8"), body, "sha256").hex(),
                                   signature) for s in secrets):
        raise SignatureError("X-Pusher-Signature does not match the app secret"
                             + ("s" if len(secrets) > 1 else ""))
    if payload is None:
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            raise SignatureError("signed body is not JSON") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("events"), list):
        raise SignatureError("signed body has no events list")
    sent_ms = payload.get("time_ms")
    if max_age:
        if type(sent_ms) not in (int, float) or not math.isfinite(sent_ms):
            raise SignatureError("time_ms is missing or not a number")
        age = (time.time() if now is None else now) - sent_ms / 1000
        if abs(age) > max_age:
            raise SignatureError(f"time_ms is {age:.0f}s from now, outside the {max_age}s window"
                                 " (SOKETI_MAX_AGE)")
    return payload


class Message:
    """A verified request, as `handle` receives it.

    source       "qstash" or "soketi"
    body         raw body bytes; `text` and `json` (None unless JSON) are derived from it
    headers      lowercased names
    claims       the QStash token's claims ({} for soketi)
    events       soketi/Pusher events ([] for QStash)
    message_id, retried, schedule_id, region: QStash's Upstash-* headers (None if absent)
    """

    def __init__(self, source, request, claims=None, payload=None):
        h = request.headers
        self.source, self.method, self.url = source, request.method, request.url
        self.headers, self.body, self.claims = h, request.body, claims or {}
        self.events = payload["events"] if payload else []
        self._json = payload
        self.message_id = h.get("upstash-message-id")
        self.retried = _count(h.get("upstash-retried"))
        self.schedule_id = h.get("upstash-schedule-id")
        self.region = h.get("upstash-region")

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    @property
    def json(self):
        if self._json is None and self.body:
            try:
                self._json = json.loads(self.body)
            except (ValueError, RecursionError):
                pass
        return self._json


def _count(value):
    return int(value) if value and value.isascii() and value.isdigit() else None


def authenticate(request):
    """Route on the signature header, verify with the configured keys, return a Message."""
    headers = request.headers
    qstash_keys = _configured(QSTASH_KEY_VARS, _region_prefix(headers.get("upstash-region")))
    soketi_secrets = _configured(SOKETI_SECRET_VARS, "", optional_second=True)
    if qstash_keys is None and soketi_secrets is None:
        raise Reject(500, f"neither {QSTASH_KEY_VARS[0]} nor {SOKETI_SECRET_VARS[0]} is set: "
                     "refusing every request", "server misconfigured: "
                     f"{QSTASH_KEY_VARS[0]} is not set")
    if "upstash-signature" in headers and request.shape != "soketi-invoke":
        if qstash_keys is None:
            raise Reject(401, "QStash request, but QStash keys are not configured here",
                         "invalid signature")
        url = os.environ.get("QSTASH_URL") or request.url
        if not url:
            raise Reject(400, "cannot derive the public URL from the event: set QSTASH_URL")
        tolerance = _seconds("QSTASH_CLOCK_TOLERANCE", DEFAULT_CLOCK_TOLERANCE)
        claims = verify_qstash(headers["upstash-signature"], qstash_keys, request.body, url,
                               clock_tolerance=tolerance)
        return Message("qstash", request, claims=claims)
    if "x-pusher-signature" in headers:
        if soketi_secrets is None:
            raise Reject(401, "soketi request, but SOKETI_SECRET is not configured here",
                         "invalid signature")
        app_key = os.environ.get("SOKETI_KEY")
        if app_key and not hmac.compare_digest(app_key.encode("utf-8"), headers.get(
                "x-pusher-key", "").encode("utf-8", "surrogatepass")):
            raise SignatureError("X-Pusher-Key is not SOKETI_KEY")
        payload = verify_soketi(headers["x-pusher-signature"], soketi_secrets, request.body,
                                max_age=_seconds("SOKETI_MAX_AGE", DEFAULT_SOKETI_MAX_AGE),
                                payload=request.payload)
        return Message("soketi", request, payload=payload)
    raise SignatureError("no Upstash-Signature or X-Pusher-Signature header")


def _region_prefix(region):
    """`US-EAST-1` -> `US_EAST_1_`, the prefix of that region's key variables."""
    name = (region or "").replace("-", "_").upper()
    return name + "_" if name.isascii() and name.replace("_", "").isalnum() else ""


def _configured(names, region_prefix, optional_second=False):
    """The (first, second) secrets from the environment, region pair first when fully set;
    None when none is set; Reject(500) naming the variable that is missing."""
    for prefix in ((region_prefix, "") if region_prefix else ("",)):
        values = [os.environ.get(prefix + name) for name in names]
        if any(values):
            break
    else:
        return None
    missing = [prefix + n for n, v in zip(names, values) if not v]
    if missing and not (optional_second and values[0]):
        raise Reject(500, f"{missing[0]} is not set", f"server misconfigured: {missing[0]} is not set")
    return tuple(v for v in values if v)


def _seconds(name, default):
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 86400:
        raise Reject(500, f"{name} must be seconds between 0 and 86400, not {raw[:32]!r}",
                     f"server misconfigured: {name}")
    return value


# --- 3. YOUR BUSINESS LOGIC: edit `handle` ---------------------------------------------------


def handle(message):
    """Do the work for one verified message; the return value becomes the 200 JSON body.

    Raise NonRetryableError for a message that can never succeed (QStash answers it with no
    retry and moves it to the DLQ). Any other exception is a 500 and QStash retries later.
    Delivery is at-least-once: deduplicate on `message.message_id` if the work is not
    idempotent.
    """
    return {"ok": True, "source": message.source, "messageId": message.message_id}


# --- 4. Response ----------------------------------------------------------------------------

_STATUS_TEXT = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 489: "Non-Retryable Error",
                500: "Internal Server Error"}


_OUTCOMES = {200: "accepted", 489: "dropped"}


def respond(request, status, body, headers=None):
    """A response in the shape the event's source expects (ALB wants statusDescription and,
    in multi-value mode, multiValueHeaders)."""
    headers = {"content-type": "application/json", **(headers or {})}
    response = {"statusCode": status, "headers": headers, "body": body, "isBase64Encoded": False}
    shape = request.shape if request else None
    if shape in ("alb", "alb-multi"):
        response["statusDescription"] = f"{status} {_STATUS_TEXT.get(status, '')}".strip()
    if shape == "alb-multi":
        response["multiValueHeaders"] = {k: [v] for k, v in response.pop("headers").items()}
    return response


def lambda_handler(event, context):
    """AWS's entry point. Never raises: every outcome is a response plus one JSON log line."""
    started = time.perf_counter()
    request = None
    log = {"outcome": None, "status": None, "reason": None, "shape": None, "source": None,
           "message_id": None, "retried": None}
    extra_headers = None
    try:
        request = read_request(event)
        log["shape"] = request.shape
        log["message_id"] = request.headers.get("upstash-message-id", "")[:128] or None
        log["retried"] = _count(request.headers.get("upstash-retried", "")[:8])
        message = authenticate(request)
        log["source"] = message.source
    except SignatureError as exc:
        status, body, log["reason"] = 401, {"error": "invalid signature"}, str(exc)
    except Reject as exc:
        status, body, log["reason"] = exc.status, {"error": exc.public}, str(exc)
    except Exception as exc:  # a bug here must still fail closed, with a response
        status, body = 500, {"error": "internal error"}
        log["reason"] = f"unexpected {type(exc).__name__} while verifying"
    else:
        try:
            status, body = 200, json.dumps(handle(message), default=str)
        except NonRetryableError as exc:
            status, body = 489, {"error": str(exc)[:1024]}
            extra_headers = {"Upstash-NonRetryable-Error": "true"}
            log["reason"] = f"NonRetryableError: {str(exc)[:512]}"
        except Exception as exc:
            status, body = 500, {"error": "internal error"}
            log["reason"] = f"handle raised {type(exc).__name__}: {str(exc)[:512]}"
    if not isinstance(body, str):
        body = json.dumps(body)
    log["status"] = status
    log["outcome"] = _OUTCOMES.get(status) or ("rejected" if status < 500 else "error")
    log["ms"] = round((time.perf_counter() - started) * 1000, 3)
    log["request_id"] = getattr(context, "aws_request_id", None)
    print(json.dumps(log), flush=True)
    return respond(request, status, body, extra_headers)
