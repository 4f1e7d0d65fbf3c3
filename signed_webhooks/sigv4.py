"""AWS Signature Version 4, for one POST to an AWS JSON API (dynamodb.py's only use).

Each step as AWS's "Create a signed AWS API request" page names it. Tested against
botocore's own signer (tests/test_dedup_aws.py). No credential, token or signature ever
reaches a log line or an exception's text.
"""
from __future__ import annotations

import hashlib
import hmac
import time

ALGORITHM = "AWS4-HMAC-SHA256"


class Credentials:
    """The function's credentials, as Lambda puts them in its environment."""

    def __init__(self, access_key_id: str, secret_access_key: str,
                 session_token: str | None = None) -> None:
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.session_token = session_token


def sign_post(headers: dict[str, str], body: bytes, region: str, service: str,
              credentials: Credentials, now: float | None = None) -> dict[str, str]:
    """`headers` (lowercase names, `host` among them) plus x-amz-date, the session token
    and the Authorization header for `POST /` with `body`. `now` (epoch seconds) pins the
    clock for tests."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    date = stamp[:8]
    headers = {**headers, "x-amz-date": stamp}
    if credentials.session_token:
        headers["x-amz-security-token"] = credentials.session_token
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
    scope = "%s/%s/%s/aws4_request" % (date, region, service)
    string_to_sign = "\n".join((ALGORITHM, stamp, scope,
                                hashlib.sha256(canonical_request.encode()).hexdigest()))
    # Step 3, the signing key: the secret, HMAC-chained through date, region, service.
    signing_key = _signing_key(credentials.secret_access_key, date, region, service)
    # Step 4, the signature, and the Authorization header that carries it.
    signature = hmac.new(signing_key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = "%s Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (
        ALGORITHM, credentials.access_key_id, scope, signed_headers, signature)
    return headers


# (secret digest, date, region, service) -> signing key: one derivation per day
_signing_keys: dict[tuple[bytes, str, str, str], bytes] = {}


def _signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    cache_key = (hashlib.sha256(secret_key.encode()).digest(), date, region, service)
    key = _signing_keys.get(cache_key)
    if key is None:
        key = ("AWS4" + secret_key).encode()
        for part in (date, region, service, "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        if len(_signing_keys) > 8:
            _signing_keys.clear()
        _signing_keys[cache_key] = key
    return key
