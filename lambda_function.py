"""Your webhook handler: edit `handle`. This file is yours; keep it when you upgrade.

Every request is verified by the receiver in `signed_webhooks/` (QStash's Upstash-Signature
token, or soketi's X-Pusher-Signature) before `handle` sees it. What arrives is a Message:
    message.source     "qstash" or "soketi": which signature checked out
    message.body       the raw signed bytes; message.text and message.json read them
    message.claims     the QStash token's claims (signed); message.events: soketi's events
    message.headers    every header, lowercased: unsigned, hints only (message_id, retried...)
    message.callback   a Callback when this is a QStash (failure) callback, else None

How to answer:
    return a value             200, the value as the JSON body
    raise RetryLater(s, why)   429 + Retry-After: s; QStash tries again then
    raise NonRetryableError    489: QStash stops retrying, the message goes to its DLQ
    raise Reject(status, why)  that 4xx/5xx
    any other exception        500; QStash retries on its own backoff
Delivery is at least once: set DEDUP_TABLE and `handle` runs once per message. Keys and
every other setting are environment variables (README.md, "Configuration").
"""
from signed_webhooks import Message, NonRetryableError, Reject, RetryLater, receive  # noqa: F401


def handle(message: Message) -> object:
    """Do the work for one verified message; the return value becomes the 200 JSON body."""
    return {"ok": True, "source": message.source, "messageId": message.message_id}


def lambda_handler(event, context):
    """AWS calls this (the handler setting `lambda_function.lambda_handler`). The receiver
    verifies the event, calls `handle` (looked up now, so a replaced `handle` is used), and
    answers in the event's shape, with one JSON log line."""
    return receive(event, context, handle)


def __getattr__(name):
    """`from lambda_function import verify` (verify_pusher, SignatureError...) keeps working."""
    import signed_webhooks

    return getattr(signed_webhooks, name)
