"""The real lambda_function with a `handle` that shows what it received, for tests over real
HTTP (make serve): a callback's decoded fields come back in the 200 body; any other message
raises RetryLater with the `wait` its JSON body asks for."""
import base64

import lambda_function


def handle(message):
    callback = message.callback
    if callback is None:
        raise lambda_function.RetryLater(message.json["wait"], "asked to wait")
    return {"body": base64.b64encode(callback.body).decode(), "status": callback.status,
            "failure": callback.is_failure, "forwarded": message.forwarded_headers,
            "topic": message.topic_name, "caller_ip": message.caller_ip}


lambda_function.handle = handle
handler = lambda_function.lambda_handler
