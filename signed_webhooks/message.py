"""Message: a request whose signature checked out, as `handle` receives it.

Built by authenticate.py only after the QStash token or the soketi HMAC checked out. It
keeps apart what the signature covers (body, claims, payload) and what anyone who can
reach the URL could have written (headers).
"""
from __future__ import annotations

import json

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for type checkers and editors only: no import at cold start
    from typing import Any

    from .callbacks import Callback
    from .events import Request

# Every callback body has this key, and QStash writes its keys unescaped: a body without
# these bytes is no callback, and is not parsed to find out.
CALLBACK_KEY = b'"sourceMessageId"'


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
    Read from the signed body, once, on first use (`json` and `callback` share one parse):
      callback     a Callback (callbacks.py) when the signed body is a QStash callback or
                   failure callback, else None; decided from the body alone, never a header
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
        self.retried: int | None = header_count(headers.get("upstash-retried"))
        self.schedule_id: str | None = headers.get("upstash-schedule-id")
        self.region: str | None = headers.get("upstash-region")
        self.topic_name: str | None = headers.get("upstash-topic-name")
        self.caller_ip: str | None = headers.get("upstash-caller-ip")
        self.forwarded_headers: dict[str, str] = {}
        if source == "qstash":
            self.forwarded_headers = forwarded_headers(headers)
        self._json: Any = payload  # soketi: verify_pusher parsed it from the signed bytes
        self._parsed = payload is not None
        self._callback: Callback | None = None
        self._callback_read = source != "qstash"  # soketi webhooks are never callbacks

    @property
    def text(self) -> str:
        """The body as text (UTF-8; undecodable bytes replaced)."""
        return self.body.decode("utf-8", "replace")

    @property
    def json(self) -> Any:
        """The body parsed as JSON, or None when it is not JSON (parsed once, on first use)."""
        if not self._parsed:
            self._parse_body()
            if not self._callback_read:  # before handle holds the document and can change it
                self._read_callback()
        return self._json

    @property
    def callback(self) -> Callback | None:
        """The QStash callback this delivery's signed body carries, or None."""
        if not self._callback_read:
            self._read_callback()
        return self._callback

    def _parse_body(self) -> None:
        """Parse the signed body, once: None when it is not JSON (or nests too deep)."""
        self._parsed = True
        try:
            self._json = json.loads(self.body)
        except (ValueError, RecursionError):
            self._json = None

    def _read_callback(self) -> None:
        """Decide, once, whether the signed body is a callback: from the body's one parse (the
        one `json` returns), taken before `handle` has held that document, so nothing handle
        does to `message.json` changes `message.callback`. A body without CALLBACK_KEY is no
        callback and is not parsed for one. No header takes part: all are unsigned."""
        self._callback_read = True
        if CALLBACK_KEY not in self.body:
            return
        if not self._parsed:
            self._parse_body()
        from .callbacks import callback_from_json  # only for a body that may be one

        self._callback = callback_from_json(self._json)


def header_count(value: str | None) -> int | None:
    if value and len(value) < 9 and value.isascii() and value.isdigit():
        return int(value)
    return None


# Headers on a QStash delivery that its publisher did not forward: QStash's own (its docs,
# "Receiving Messages": User-Agent, Content-Type and Upstash-*), HTTP's, and those AWS's
# services in front (Function URL, API Gateway and its CloudFront edge, ALB) add on the way.
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
