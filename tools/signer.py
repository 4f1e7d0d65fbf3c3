"""Mint what production checks: QStash tokens and soketi/Pusher signatures, plus the events
Lambda would hand over. Test and smoke-test tooling; never shipped in lambda.zip."""
import base64
import hashlib
import hmac
import json
import secrets
import time


def _b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def body_hash(body):
    """QStash's `body` claim: base64url SHA-256 of the raw body, WITH padding, as QStash sends."""
    body = body.encode("utf-8") if isinstance(body, str) else body or b""
    return base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode("ascii")


def sign_qstash(signing_key, body, url, *, now=None, lifetime=300, claims=None,
                header=None):
    """A token shaped exactly like QStash's: header {"alg":"HS256","typ":"JWT"}, claims in
    QStash's order (aud, body, exp, iat, iss, jti, nbf, sub), padded body hash, exp = iat+300.
    `claims` overrides or adds claims (a value of None removes one)."""
    iat = int(time.time() if now is None else now)
    payload = {"aud": "", "body": body_hash(body), "exp": iat + lifetime, "iat": iat,
               "iss": "Upstash", "jti": "jwt_" + secrets.token_urlsafe(18)[:24], "nbf": iat,
               "sub": url}
    for name, value in (claims or {}).items():
        if value is None:
            payload.pop(name, None)
        else:
            payload[name] = value
    head = _b64url(json.dumps(header or {"alg": "HS256", "typ": "JWT"},
                              separators=(",", ":")).encode())
    signed = head + "." + _b64url(json.dumps(payload, separators=(",", ":")).encode())
    mac = hmac.new(signing_key.encode("utf-8"), signed.encode("ascii"), hashlib.sha256)
    return signed + "." + _b64url(mac.digest())


def sign_pusher(secret, body):
    """X-Pusher-Signature: lowercase hex HMAC-SHA256 of the body bytes with the app secret."""
    body = body.encode("utf-8") if isinstance(body, str) else body
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
