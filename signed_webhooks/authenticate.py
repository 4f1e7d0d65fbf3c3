"""Authenticate: route on the signature header, verify with the configured secrets.

The header only picks which check runs; the check alone decides. Which keys and which URL
a QStash token must match come from the configuration and from fields AWS sets, never
from anything the caller chose: `Upstash-Region` can only pick among key sets the operator
configured, and behind an ALB (whose Host header is the caller's) the URL must be
configured.
"""
from __future__ import annotations

import hmac
import re

from .errors import Reject, SignatureError
from .events import ALB_SHAPES, SOKETI_INVOKE
from .message import Message
from .qstash import DestinationURL, verify

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for type checkers and editors only: no import at cold start
    from .config import Configuration
    from .events import Request


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
                           configuration: Configuration) -> list[str] | DestinationURL:
    """The URLs the token may name: the operator's QSTASH_DESTINATION_URL when set (the event
    then plays no part), else the URL AWS's own fields give (with REST's parsed query)."""
    if configuration.destination_urls:
        return configuration.destination_urls
    if request.shape in ALB_SHAPES:
        raise Reject(500, "QSTASH_DESTINATION_URL is not set: behind an ALB the Host header "
                     "is the caller's, so the URL QStash signed must be configured")
    if request.url is None:
        raise Reject(400, "the event has no requestContext.domainName (or path), so the URL "
                     "QStash signed cannot be derived: set QSTASH_DESTINATION_URL")
    if request.query_pairs is not None:  # REST: the query arrived parsed, not as text
        return DestinationURL(request.url, request.query_pairs)
    return [request.url]


def _authenticate_soketi(request: Request, configuration: Configuration) -> Message:
    headers = request.headers
    if not configuration.soketi_secrets:
        raise SignatureError("soketi request, but SOKETI_SECRET is not configured here")
    if configuration.soketi_key is not None:
        claimed_key = headers.get("x-pusher-key", "").encode("utf-8", "surrogatepass")
        if not hmac.compare_digest(configuration.soketi_key.encode(), claimed_key):
            raise SignatureError("X-Pusher-Key is not SOKETI_KEY")
    from .pusher import verify_pusher  # soketi webhooks only

    payload = verify_pusher(headers["x-pusher-signature"], configuration.soketi_secrets,
                            request.body, max_age=configuration.soketi_max_age)
    return Message("soketi", request, payload=payload)
