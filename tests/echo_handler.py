"""A handler for testing make serve itself: it answers with the event it was given, or, when
asked by the x-respond header, with one of the result shapes a Function URL must translate,
with what it writes, or with the configuration serve gave it."""
import base64
import json
import os
import sys

SERVE_SETS = ("QSTASH_DESTINATION_URL", "ALLOW_PUBLIC_DEV_KEYS", "QSTASH_CURRENT_SIGNING_KEY")


def handler(event, context):
    mode = event["headers"].get("x-respond")
    if mode == "plain-dict":
        return {"a": 1, "requestId": context.aws_request_id}
    if mode == "string":
        return "hello"
    if mode == "binary":
        return {"statusCode": 201, "body": base64.b64encode(b"\x00\x01\xff").decode(),
                "isBase64Encoded": True, "headers": {"X-A": "b"}, "cookies": ["a=1", "b=2; Path=/"]}
    if mode == "raise":
        raise ValueError("handler crashed")
    if mode == "print":
        print("a line on stdout")
        print("a line on stderr", file=sys.stderr)
        return {"printed": 2}
    if mode == "environment":
        return {name: os.environ.get(name) for name in SERVE_SETS}
    return {"statusCode": 200, "headers": {"content-type": "application/json"},
            "body": json.dumps(event)}
