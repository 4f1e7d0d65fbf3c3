"""A handler for testing make serve itself: it answers with the event it was given, or, when
asked by the x-respond header, with one of the result shapes a Function URL must translate."""
import base64
import json


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
    return {"statusCode": 200, "headers": {"content-type": "application/json"},
            "body": json.dumps(event)}
