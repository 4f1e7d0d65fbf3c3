"""soketi and Pusher: the `X-Pusher-Signature` HMAC, checked.

The signature is the lowercase hex HMAC-SHA256 of the body with the app secret. Over HTTP the
body is the request's; for soketi's direct invocations it is Node's JSON.stringify of the
payload, rebuilt by node_json.py before this check runs.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import time

from .config import SOKETI_MAX_AGE
from .errors import SignatureError

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for type checkers and editors only: no import at cold start
    from collections.abc import Sequence
    from typing import Any


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
