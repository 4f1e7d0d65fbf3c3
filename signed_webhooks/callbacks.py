"""QStash callbacks: a delivery whose signed body describes another delivery.

A callback (`Upstash-Callback` at publish time) or failure callback
(`Upstash-Failure-Callback`) is an ordinary signed QStash delivery to the callback URL whose
JSON body describes another message's delivery. QStash marks it with no header: its docs
list the same delivery headers for every message, and Upstash's own workflow SDK knows its
callbacks only by a header it forwards itself (`Upstash-Callback-Forward-...`). So a body
is a callback only when its signed body has the documented shape: the fields every
callback carries, every documented field present with QStash's type, both bodies valid
base64. Anything else, including user JSON that merely has a `sourceMessageId` key, or a
callback-like body with a broken field, is an ordinary message (README.md, "Callbacks").
No header takes part: all of them are unsigned.
"""
from __future__ import annotations

import base64
import json

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for type checkers and editors only: no import at cold start
    from typing import Any

class Callback:
    """A QStash callback or failure callback in Python form: `message.callback`.

    About the destination's answer to the original message:
      status: its HTTP status. headers: its headers (lowercased name -> list of values).
      body: its body, base64-decoded once: the exact bytes, binary or text (for UTF-8 text,
      `callback.body.decode()`; QStash may truncate a body over the plan's message size).
      retried: retries before that attempt (0 on the first). max_retries: retries allowed.
    About the original message:
      source_message_id, url, method, source_headers (as `headers`), source_body (bytes),
      topic_name (URL group), endpoint_name, schedule_id, caller_ip (its publisher),
      not_before, created_at (Unix milliseconds).
    dlq_id: its Dead Letter Queue id; present on failure callbacks only.
    Optional fields QStash left out (or sent empty) are None. The names are QStash's, in
    Python's spelling, except `headers` and `source_headers` (QStash: header, sourceHeader),
    named like `message.headers`; `header` and `source_header` still read them.
    """

    def __init__(self, *, status: int, headers: dict[str, list[str]], body: bytes,
                 retried: int, max_retries: int, source_message_id: str, url: str,
                 method: str, source_headers: dict[str, list[str]], source_body: bytes,
                 topic_name: str | None = None, endpoint_name: str | None = None,
                 schedule_id: str | None = None, caller_ip: str | None = None,
                 not_before: int | None = None, created_at: int | None = None,
                 dlq_id: str | None = None) -> None:
        self.status: int = status
        self.headers: dict[str, list[str]] = headers
        self.body: bytes = body
        self.retried: int = retried
        self.max_retries: int = max_retries
        self.source_message_id: str = source_message_id
        self.url: str = url
        self.method: str = method
        self.source_headers: dict[str, list[str]] = source_headers
        self.source_body: bytes = source_body
        self.topic_name: str | None = topic_name
        self.endpoint_name: str | None = endpoint_name
        self.schedule_id: str | None = schedule_id
        self.caller_ip: str | None = caller_ip
        self.not_before: int | None = not_before
        self.created_at: int | None = created_at
        self.dlq_id: str | None = dlq_id

    @property
    def header(self) -> dict[str, list[str]]:
        """The earlier name of `headers`."""
        return self.headers

    @property
    def source_header(self) -> dict[str, list[str]]:
        """The earlier name of `source_headers`."""
        return self.source_headers

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


def parse_callback(body: bytes | str) -> Callback | None:
    """The Callback a verified QStash delivery's raw (signed) body carries, or None for an
    ordinary message. `message.callback` is this, from the parse `message.json` shares."""
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return callback_from_json(document)


def callback_from_json(document: Any) -> Callback | None:
    """The Callback in a parsed signed body, or None when it lacks the callback shape.

    Decided from the body alone: no header takes part, since every header is unsigned and a
    replayed delivery can carry any. A body with the shape and one field broken (bad base64,
    a wrong type) is ordinary: QStash would resend the same signed bytes on every retry, so
    refusing it could never succeed, and `message.json` still holds all of it for `handle`.
    """
    try:
        return _callback_from(document)
    except ValueError:
        return None


def _callback_from(document: Any) -> Callback:
    """Build a Callback from the parsed body; ValueError naming the first field that does
    not have QStash's shape. Field names and types: QStash's docs, "Callbacks"."""
    if not isinstance(document, dict):
        raise ValueError("body is not a JSON object")
    status = _callback_integer(document, "status")
    if status is None or not 0 <= status <= 999:
        raise ValueError("status is not an HTTP status")
    return Callback(
        status=status,
        headers=_callback_headers(document, "header"),
        body=_callback_base64(document, "body"),
        retried=_callback_integer(document, "retried") or 0,  # left out on a first attempt
        max_retries=_callback_integer(document, "maxRetries") or 0,
        source_message_id=_callback_required_text(document, "sourceMessageId"),
        url=_callback_required_text(document, "url"),
        method=_callback_required_text(document, "method"),
        source_headers=_callback_headers(document, "sourceHeader"),
        source_body=_callback_base64(document, "sourceBody"),
        topic_name=_callback_text(document, "topicName"),
        endpoint_name=_callback_text(document, "endpointName"),
        schedule_id=_callback_text(document, "scheduleId"),
        caller_ip=_callback_text(document, "callerIP"),
        not_before=_callback_integer(document, "notBefore"),
        created_at=_callback_integer(document, "createdAt"),
        dlq_id=_callback_text(document, "dlqId"),
    )


def _callback_required_text(document: dict[str, Any], name: str) -> str:
    """A string field every callback carries."""
    value = _callback_text(document, name)
    if value is None:
        raise ValueError(name + " is missing")
    return value


def _callback_text(document: dict[str, Any], name: str) -> str | None:
    """A string field; None when absent, null or empty (Go writes "" for an unset string)."""
    value = document.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(name + " is not a string")
    return value


def _callback_integer(document: dict[str, Any], name: str) -> int | None:
    """An integer field. QStash's docs show the times as strings of digits ("1701198458025")
    and its SDK's docs as numbers: both are read."""
    value = document.get(name)
    if value is None or value == "":
        return None
    if type(value) is int:  # not bool, not float
        return value
    if isinstance(value, str) and len(value) <= 19 and value.isascii() and value.isdigit():
        return int(value)
    raise ValueError(name + " is not an integer")


def _callback_headers(document: dict[str, Any], name: str) -> dict[str, list[str]]:
    """A header map: Go's http.Header (name -> list of values); a single string value, as
    QStash's docs show for sourceHeader, becomes a list of one. Names lowercased, as
    `message.headers`."""
    value = document.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(name + " is not an object")
    headers: dict[str, list[str]] = {}
    for header_name, values in value.items():
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValueError(name + " values are not strings")
        headers.setdefault(header_name.lower(), []).extend(values)
    return headers


def _callback_base64(document: dict[str, Any], name: str) -> bytes:
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
