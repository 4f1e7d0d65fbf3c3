"""A pytest plugin that records what `lambda_handler` answers, for the split's differential.

    RECORD_SPLIT=path python -m pytest -p split_recording tests/test_trust.py ...

Every call of `lambda_function.lambda_handler` made while the default `handle` is in place
(or the `received` fixture's recorder around it) and without DEDUP_TABLE is written to `path`
as one record: the test, the event, the handler's configuration, the clock and request id it
ran under, and what came out: status, headers, body, and the log line without its timing
fields. tests/test_split_differential.py replays every record against today's code.

The recording in tests/fixtures/split-differential.json.gz was made with this plugin on the
single-file handler (commit 4255623), before the receiver moved into its package.
"""
import contextlib
import gzip
import io
import json
import os
import time
import tracemalloc

import lambda_function

RELEVANT = ("QSTASH", "SOKETI", "DEDUP", "METRICS", "ALLOW_PUBLIC_DEV_KEYS",
            "AWS_LAMBDA_FUNCTION_NAME")
MAX_EVENT = 256 * 1024  # characters of JSON: the 6 MB cases are covered by their own tests
TIMING = ("ms", "cold_start", "latency")  # log fields that vary from run to run


def handler_environ(environ):
    return {name: value for name, value in sorted(environ.items())
            if any(part in name for part in RELEVANT)}


def comparable_log(line):
    """The log line without what varies between two runs of the same request."""
    line = {name: value for name, value in line.items() if name not in TIMING}
    if "_aws" in line:
        line["_aws"] = {**line["_aws"], "Timestamp": None}
    return line


def replayable(value):
    """The value as JSON when JSON reproduces it exactly; None otherwise."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return None
    if len(text) > MAX_EVENT or json.loads(text) != value:
        return None
    return text


def uses_default_handle():
    handle = lambda_function.handle
    if getattr(handle, "__name__", "") == "recording":  # conftest's `received`
        cells = [cell.cell_contents for cell in handle.__closure__ or ()]
        return any(getattr(cell, "__module__", "") == "lambda_function"
                   and getattr(cell, "__name__", "") == "handle" for cell in cells)
    return getattr(handle, "__module__", "") == "lambda_function" and \
        getattr(handle, "__name__", "") == "handle"


class Recorder:
    def __init__(self, path):
        self.path = path
        self.records = []
        self.original = lambda_function.lambda_handler

    def __call__(self, event, context):
        if tracemalloc.is_tracing():  # a memory test: recording would count against it
            return self.original(event, context)
        environ = handler_environ(os.environ)
        event_text = replayable(event)
        wanted = event_text is not None and uses_default_handle() and \
            "DEDUP_TABLE" not in environ
        now = time.time()
        output = io.StringIO()
        with contextlib.redirect_stdout(output):
            response = self.original(event, context)
        printed = output.getvalue()
        print(printed, end="")  # the test reads it as before
        if wanted:
            self.records.append({
                "test": os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0],
                "event": json.loads(event_text),
                "environ": environ,
                "now": now,
                "request_id": getattr(context, "aws_request_id", None),
                "response": response,
                "log": comparable_log(json.loads(printed.strip().splitlines()[-1])),
            })
        return response

    def write(self):
        with gzip.GzipFile(self.path, "wb", mtime=0) as out:
            out.write(json.dumps({"records": self.records}).encode())


_recorder = None


def pytest_configure(config):
    global _recorder
    path = os.environ.get("RECORD_SPLIT")
    if path:
        _recorder = Recorder(path)
        lambda_function.lambda_handler = _recorder


def pytest_unconfigure(config):
    if _recorder is not None:
        _recorder.write()
        print("recorded %d calls into %s" % (len(_recorder.records), _recorder.path))

