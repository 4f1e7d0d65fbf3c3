"""The deduplication records: their keys, what they hold, how long they live.

Imported only when DEDUP_TABLE is set, by dedup.py (the protocol that reads and writes them).

Records (each with `expires_at`, epoch seconds, read as absent once past):
  qstash:jti:<jti>:<signed>          a used token: `message` (the key it claimed), `owner`
  qstash:message:<id>:<signed>       a QStash message: `state` (in_progress, completed),
                                     `owner`, `lease_until` (epoch ms), `answer`, and what
                                     its token signed: `body_hash`, `sub_sha256`
  qstash:jti-message:<jti>:<signed>  the message record of a delivery without a message id
  soketi:signature:<hex>             a soketi webhook, by its signature (an HMAC of the body)
<signed> is the SHA-256 of what the token signs about the request, its body hash and URL; an
id or jti over 256 characters is replaced by its SHA-256, to bound the key.

Why so. The message id is an unsigned header; `jti`, `body` and `sub` are signed. A QStash
retry brings a new token with the same id, body and URL: the message record catches it. A
replayed token brings its `jti` under any id its sender likes: only the token record catches
it. With the signed part in the key, a record belongs to one signed body and URL: a token for
another body, presented under a message's id, meets a record of its own, and can neither
take that message's answer nor make it look done. The record repeats what was signed
(`body_hash`, and `sub_sha256`: a URL's query may hold a secret, so the table keeps its
digest), and the protocol checks every record it reads against it.

What no table can settle: a token that no delivery has used yet (seen in a log that records
headers, or one answered 503 before it was recorded) can be presented first under an id of
its holder's choosing. Its body runs under that id, once; QStash's own delivery of the
message, under its real id with a new token, runs it again. Nothing signed ties a token to
its message id, and the same body sent twice is two messages.

Lifetimes. A message record lives DEDUP_TTL. A token record (and a soketi record, which is
its webhook's) lives at least until its signature stops verifying, `exp` plus
QSTASH_CLOCK_TOLERANCE or `time_ms` plus SOKETI_MAX_AGE, whatever DEDUP_TTL says: a replay
always finds it.
"""
from __future__ import annotations

import hashlib
import json
import math

from .answers import Answer
from .errors import Reject
from .store import StoreError

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for type checkers and editors only: no import at cold start
    from .message import Message
    from .store import Record

KEY_PART_MAX = 256  # characters of an id or jti kept as is in a record key


def verifiable_until(message: Message, clock_tolerance: float,
                     soketi_max_age: float) -> int | None:
    """The epoch second until which this delivery's signature verifies (None: no bound
    known, SOKETI_MAX_AGE=0 leaves soketi's time unchecked)."""
    if message.source == "soketi":
        if not soketi_max_age or message.payload is None:
            return None
        return math.ceil(message.payload["time_ms"] / 1000 + soketi_max_age)
    return math.ceil(message.claims["exp"] + clock_tolerance)  # verify checked it is a number


def key_part(value: str) -> str:
    """An id as it goes into a record key: itself, or its SHA-256 when long or not ASCII."""
    if len(value) <= KEY_PART_MAX and value.isascii() and value.isprintable():
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def signed_fields(message: Message) -> Record:
    """What a QStash token signs about its request, as its records store it: `body_hash`
    (the signed body's SHA-256, base64url as in the token) and `sub_sha256` (the SHA-256 of
    the signed URL: a URL's query may hold a secret, so the table keeps its digest)."""
    sub = message.claims.get("sub")
    body_hash = message.claims.get("body")
    if not isinstance(sub, str) or not isinstance(body_hash, str):
        raise Reject(400, "the QStash token has no sub or body claim: it cannot be deduplicated")
    sub_sha256 = hashlib.sha256(sub.encode("utf-8", "surrogatepass")).hexdigest()
    return {"body_hash": body_hash.rstrip("="), "sub_sha256": sub_sha256}


def delivery_keys(message: Message, signed: Record) -> tuple[str | None, str]:
    """(token record key or None, message record key) for a verified Message. Reject(400)
    when a QStash token has no jti (QStash always sends one)."""
    if message.source == "soketi":
        return None, "soketi:signature:" + key_part(message.headers["x-pusher-signature"])
    jti = message.claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise Reject(400, "the QStash token has no jti claim: it cannot be deduplicated")
    digest = "%s\n%s" % (signed["body_hash"], signed["sub_sha256"])
    suffix = ":" + hashlib.sha256(digest.encode()).hexdigest()
    token_key = "qstash:jti:" + key_part(jti) + suffix
    if message.message_id:
        return token_key, "qstash:message:" + key_part(message.message_id) + suffix
    return token_key, "qstash:jti-message:" + key_part(jti) + suffix


def number(record: Record, name: str) -> int:
    """A number field of a record read from the store (0 when absent); StoreError when the
    store holds something else there."""
    value = record.get(name, 0)
    if not isinstance(value, int):
        raise StoreError("a record's %s is not a number" % name)
    return value


def stored_answer(record: Record) -> Answer:
    """The first delivery's answer, as a completed record keeps it; StoreError when the
    record holds anything else."""
    unreadable = "a completed record's answer is not readable"
    try:
        stored = json.loads(str(record.get("answer")))
        status = stored["status"]
        body = stored["body"]
        headers = stored["headers"]
    except (ValueError, TypeError, KeyError):
        raise StoreError(unreadable) from None
    if type(status) is not int or not isinstance(body, str) or not isinstance(headers, dict):
        raise StoreError(unreadable)
    if not all(isinstance(name, str) and isinstance(value, str)
               for name, value in headers.items()):
        raise StoreError(unreadable)
    return Answer(status, body, None, headers)
