"""QStash: the `Upstash-Signature` token, checked.

The token is a compact JWS: base64url(header) . base64url(claims) . base64url(HMAC-SHA256).
`verify` checks, in order: the token's size and form, the header (HS256 only, never taken
from the token), the MAC against the current key and then the next, the signature's
canonical spelling, then the claims once: issuer, lifetime (exp, nbf, iat with the clock
tolerance), subject URL, body hash. Each failure raises SignatureError naming that check.
"""
from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import time
from urllib.parse import parse_qsl, urlsplit

from .config import CLOCK_TOLERANCE
from .errors import SignatureError

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for type checkers and editors only: no import at cold start
    from collections.abc import Sequence
    from typing import Any, Union

MAX_TOKEN_LENGTH = 8192  # characters of Upstash-Signature, checked before any decoding
HS256_HEADER = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"  # {"alg":"HS256","typ":"JWT"}, QStash's


class DestinationURL:
    """A URL whose query arrived parsed: API Gateway REST hands over decoded parameters, not
    the raw query string, so the query cannot be compared as text.

    Scheme, host and path are compared exactly, trailing slashes aside, and the query as a
    multiset of decoded name/value pairs, so `?a=1&b=2&a=3`, `?flag`, `?q=a+b` and `?p=%2F`
    all match. The pairs are sorted once, here, not per token. A URL given as a plain string
    is compared by `same_url` alone.
    """

    def __init__(self, url: str, query_pairs: list[tuple[str, str]]) -> None:
        self.url = url
        self.sorted_pairs = sorted(query_pairs)

    def matches(self, sub: str) -> bool:
        base, _, query = sub.partition("?")
        if base != self.url and base.rstrip("/") != self.url.rstrip("/"):
            return False
        return sorted(parse_qsl(query, keep_blank_values=True)) == self.sorted_pairs

    def __str__(self) -> str:
        return loggable_url(self.url)


def same_url(sub: str, url: str) -> bool:
    """The token's `sub` names `url`: the same string, or one trailing slash apart when `url`
    has no query (a query is compared exactly)."""
    if sub == url:
        return True
    if "?" in url:
        return False
    return sub == url + "/" or sub + "/" == url


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


# Why not hmac.digest: measured side by side with make bench's harness (Python 3.11, two
# runs on a loaded 2-core machine, the SDK at 47-49 us), a 1 KB verify takes 7.6-7.7 us with
# this function (0.16x the SDK; next key 1.12x the current), 8.8-9.2 us with hmac.digest
# (0.19x: no margin left under the 0.2x target; next key 1.22-1.26x, over its 1.15x target:
# OpenSSL's one-shot HMAC sets the key up on every call, 1.7 us against 0.75 us here) and
# 8.1-8.4 us with a cached hmac.new(key, digestmod="sha256").copy() (next key 1.15-1.24x).
# tests/test_verify.py holds it bit-identical to hmac.digest.
def _mac(key: str, message: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104, exactly what hmac.digest computes) with the key's inner and
    outer pad states hashed once per key and copied per call: a second key costs ~1 us.
    The pads of at most 9 keys are kept (the keys come from the configuration, a pair per
    key set); a tenth key starts the cache over, so no sequence of environments grows it."""
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
        _check_subject(claims.get("sub"), url)
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
    if not_before is not None and not_before > now + tolerance:
        raise SignatureError("claim nbf is in the future (now %d)" % now)
    if issued is not None and issued > now + tolerance:
        raise SignatureError("claim iat is in the future (now %d)" % now)


def _time_claim(claims: dict[str, Any], name: str) -> float | None:
    """A time claim: None when absent, else a finite number (bool and null refused)."""
    if name not in claims:
        return None
    value = claims[name]
    if type(value) not in (int, float) or not abs(value) < 1e16:
        raise SignatureError("claim %s is not a number" % name)
    return value


def _check_subject(sub: Any, url: UrlArgument) -> None:
    """`sub` names one of the URLs: a string is compared by `same_url`, a DestinationURL by
    its own rule. Plain loops, no objects built: this runs on every request."""
    if not isinstance(sub, str):
        raise SignatureError("claim sub is missing or not a string")
    candidates = (url,) if isinstance(url, (str, DestinationURL)) else url or ()
    for candidate in candidates:
        if isinstance(candidate, str):
            if same_url(sub, candidate):
                return
        elif candidate.matches(sub):
            return
    shown = [loggable_url(c) if isinstance(c, str) else str(c) for c in candidates[:4]]
    raise SignatureError("claim sub %.300s is not this request's URL %.300s "
                         "(QSTASH_DESTINATION_URL sets the URL QStash calls)"
                         % (loggable_url(sub), " or ".join(shown) or "(none configured)"))


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
