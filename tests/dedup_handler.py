"""The handler the deduplication tests run in separate processes (make serve instances, or a
bare Python process): lambda_function.lambda_handler with a `handle` that appends its effect
to the file DEDUP_EFFECTS (O_APPEND: lines from several processes never interleave).

DEDUP_HANG=1 makes handle hang after it starts (the test then kills the process);
DEDUP_SLEEP holds it that many seconds; DEDUP_REMAINING_MS is the time left that the
context reports, which sets the lease."""
import os
import time

import lambda_function


def record(what, message_id):
    line = "%s %s %d\n" % (what, message_id, os.getpid())
    fd = os.open(os.environ["DEDUP_EFFECTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def handle(message):
    record("start", message.message_id)
    if os.environ.get("DEDUP_HANG") == "1":
        time.sleep(3600)
    time.sleep(float(os.environ.get("DEDUP_SLEEP") or 0))
    record("effect", message.message_id)
    return {"applied": message.message_id}


class Context:
    """The caller's context, reporting DEDUP_REMAINING_MS as the time left."""

    def __init__(self, context):
        self.aws_request_id = getattr(context, "aws_request_id", None) or os.urandom(8).hex()
        self.remaining_ms = int(os.environ.get("DEDUP_REMAINING_MS") or 30000)

    def get_remaining_time_in_millis(self):
        return self.remaining_ms


def lambda_handler(event, context):
    lambda_function.handle = handle
    return lambda_function.lambda_handler(event, Context(context))


def effects(path):
    """[(what, message id, pid)] from an effects file."""
    if not os.path.exists(path):
        return []
    with open(path) as lines:
        return [tuple(line.split()) for line in lines if line.strip()]
