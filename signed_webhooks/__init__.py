"""Signed webhooks for AWS Lambda: QStash and soketi/Pusher, verified before your code runs.

Standard library only. Your `lambda_function.py` hands each event to `receive(event,
context, handle)`; nothing reaches `handle` unless its signature, claims and body hash check
out. What decides trust comes only from fields AWS sets (`requestContext.domainName`), what
a signature covers (the token's claims, the signed body) and the operator's configuration
(environment variables, read on every request). Headers, paths and queries are the caller's
words: they never decide that a request is accepted.

The modules, in the order a request meets them. Each imports only the modules its row
names, all of them above it (tests/test_layout.py reads every import and enforces this
table). Those marked * are optional: imported only when configured (DEDUP_TABLE,
METRICS_NAMESPACE, SOKETI_SECRET) or first used.

    module          holds                                              imports
    errors          the exceptions handle raises and the checks raise  -
    keys            the signing keys and app secrets, judged           -
    dedup_config *  DEDUP_TABLE, DEDUP_TTL, the table's AWS settings   -
    config          every environment variable, judged                 keys, dedup_config
    js_text *       how Node writes one JSON value: numbers, escapes   -
    node_json *     Node's JSON.stringify, rebuilt (soketi invoke)     errors, js_text
    events          event -> Request; answer -> the event's response   errors, node_json
    qstash          verify: the Upstash-Signature token                config, errors
    pusher *        verify_pusher: the X-Pusher-Signature HMAC         config, errors
    callbacks *     Callback: a QStash callback's body, read           -
    message         Message: what handle receives                      callbacks, events
    authenticate    signature header -> its check -> Message           errors, config, events,
                                                                       qstash, pusher, message
    answers         handle's outcome -> Answer                         errors, message
    store *         the deduplication store's five operations          -
    records *       dedup records: keys, what they hold, lifetimes     errors, message, answers,
                                                                       store
    dedup *         run once: the protocol's steps, leases, deadline   dedup_config, message,
                                                                       answers, store, records
    sigv4 *         AWS Signature Version 4                            -
    transport *     one HTTP/1.1 request that ends by a deadline       -
    dynamodb *      the store on a DynamoDB table                      dedup_config, store,
                                                                       sigv4, transport
    metrics *       CloudWatch EMF fields for the log line             -
    pipeline        read -> configure -> authenticate -> run once ->   config, errors, events,
                    handle -> respond -> log                           message, authenticate,
                                                                       answers, dedup_config, dedup,
                                                                       dynamodb, node_json, pusher,
                                                                       metrics
"""
from __future__ import annotations

from .errors import NonRetryableError, Reject, RetryLater, SignatureError
from .message import Message
from .pipeline import receive
from .qstash import verify

__version__ = "1.0.0"
__all__ = ["Callback", "Message", "NonRetryableError", "Reject", "RetryLater",
           "SignatureError", "receive", "verify", "verify_pusher"]


def __getattr__(name: str) -> object:
    """The optional modules' public names, imported on first use."""
    if name == "verify_pusher":
        from .pusher import verify_pusher

        return verify_pusher
    if name == "Callback":
        from .callbacks import Callback

        return Callback
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
