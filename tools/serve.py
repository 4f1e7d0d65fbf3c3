"""`make serve`: a local Lambda Function URL on 127.0.0.1:$PORT (default 3000).

HANDLER (default lambda_function.lambda_handler) names the function, as Lambda's handler
setting does.

Each HTTP request becomes the Function URL event AWS would build, runs through
lambda_function.lambda_handler, and the result goes back as AWS would send it. Standard
library only. One request at a time, like one Lambda instance. One log line per request:
the handler's own JSON line, plus method and path.
"""
import base64
import contextlib
import hashlib
import http.server
import importlib
import io
import json
import os
import pathlib
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]

import lambda_events  # noqa: E402

# The QStash CLI dev server (`npx @upstash/qstash-cli dev`) signs with these public keys.
DEV_KEYS = {"QSTASH_CURRENT_SIGNING_KEY": "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r",
            "QSTASH_NEXT_SIGNING_KEY": "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs"}
SECRET_NAMES = ("QSTASH_CURRENT_SIGNING_KEY", "QSTASH_NEXT_SIGNING_KEY", "SOKETI_SECRET",
                "SOKETI_NEXT_SECRET")
_one_at_a_time = threading.Lock()
HANDLER = os.environ.get("HANDLER") or "lambda_function.lambda_handler"
_module, _, _function = HANDLER.rpartition(".")
handler = getattr(importlib.import_module(_module), _function)


class Context:
    """The fields of Lambda's context object that handlers commonly read."""
    function_name, memory_limit_in_mb = "local", 128

    def __init__(self, request_id):
        self.aws_request_id = request_id
        self.invoked_function_arn = "arn:aws:lambda:local:000000000000:function:local"

    @staticmethod
    def get_remaining_time_in_millis():
        return 30000


def to_http(result):
    """(status, [(header, value)], body bytes) from a handler result, as a Function URL does:
    a dict with statusCode is a response; any other value is a 200 JSON body."""
    if isinstance(result, dict) and "statusCode" in result:
        headers = [(k, str(v)) for k, v in (result.get("headers") or {}).items()]
        headers += [("Set-Cookie", c) for c in result.get("cookies") or []]
        body = result.get("body") or ""
        body = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
        if not any(k.lower() == "content-type" for k, _ in headers):
            headers.append(("Content-Type", "application/json"))
        return int(result["statusCode"]), headers, body
    return 200, [("Content-Type", "application/json")], json.dumps(result).encode()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms stalls
    server_version = "lambda-local"

    def do_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        host = self.headers.get("Host") or "127.0.0.1"
        event = lambda_events.function_url(
            method=self.command, url="https://" + host + self.path,
            headers=list(self.headers.items()), body=body, source_ip=self.client_address[0])
        started = time.perf_counter()
        with _one_at_a_time:
            own_url = "QSTASH_URL" not in os.environ
            if own_url:  # the URL a local client called: what QStash (or make send) signed
                os.environ["QSTASH_URL"] = "http://" + host + self.path
            captured = io.StringIO()
            try:
                with contextlib.redirect_stdout(captured):
                    result = handler(event, Context(event["requestContext"]["requestId"]))
                status, headers, payload = to_http(result)
            except Exception as exc:  # what a Function URL answers when the handler raises
                status, headers = 502, [("Content-Type", "application/json")]
                payload = json.dumps({"Message": "Internal Server Error"}).encode()
                captured.write(json.dumps({"outcome": "crash", "reason": repr(exc)}) + "\n")
            finally:
                if own_url:
                    del os.environ["QSTASH_URL"]
        self.log_result(captured.getvalue(), status, started)  # before answering: no race
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_any

    def log_result(self, handler_output, status, started):
        lines = handler_output.strip().splitlines()
        try:
            record = json.loads(lines[-1])
        except (IndexError, ValueError):
            record = {"status": status, "output": handler_output.strip()[:200]}
        record = {"method": self.command, "path": self.path.split("?")[0], **record,
                  "total_ms": round((time.perf_counter() - started) * 1000, 3)}
        print(json.dumps(record), flush=True)

    def log_message(self, *args):
        pass  # one line per request, from log_result


def fingerprint(value):
    return "%s... (sha256 %s)" % (value[:8], hashlib.sha256(value.encode()).hexdigest()[:12])


def main():
    port = int(os.environ.get("PORT") or 3000)
    if not any(os.environ.get(name) for name in SECRET_NAMES):
        os.environ.update(DEV_KEYS)
        print("!" * 78 + "\n"
              "!! No signing keys set: using the QStash CLI dev server's PUBLIC keys.\n"
              "!! Anyone can sign with them. The deployed handler never falls back to them.\n"
              + "!" * 78, flush=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print("Local Function URL: http://127.0.0.1:%d/ running %s  (Ctrl-C stops it)"
          % (server.server_port, HANDLER))
    for name in sorted(os.environ):
        if name.endswith(SECRET_NAMES):
            print("  %s = %s" % (name, fingerprint(os.environ[name])))
    for name in ("QSTASH_URL", "QSTASH_CLOCK_TOLERANCE", "SOKETI_KEY", "SOKETI_MAX_AGE"):
        if os.environ.get(name):
            print("  %s = %s" % (name, os.environ[name]))
    print("Try: make send URL=http://127.0.0.1:%d/ BODY='{\"hello\":\"world\"}'"
          % server.server_port, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
