"""Runs inside a loopback-only network namespace (`unshare -rn`), so nothing soketi does can
leave the machine: soketi with two apps, make serve as their HTTP webhook target, AWS's
runtime emulator as their Lambda trigger target, and a pusher-js client per app. Prints one
JSON document: what the handler decided for every webhook, from its own log lines.

usage: scenario.py ROOT SOKETI_DIR RIE TASK_DIR
"""
import contextlib
import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

SERVE, SOKETI, RIE, RUNTIME_API, INVOKE = 3000, 6001, 9001, 9002, 9003
EVENTS = ["channel_occupied", "channel_vacated", "member_added", "member_removed",
          "client_event"]
APPS = [  # app-1 shares the handler's secret; app-2 signs with another one
    {"id": "app-1", "key": "app-key-1", "secret": "app-1-secret-0123456789"},
    {"id": "app-2", "key": "app-key-2", "secret": "not-the-handlers-secret"},
]


def wait_for(port, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise SystemExit("nothing listened on port %d" % port)


def serialize_invocations():
    """The emulator runs one invocation at a time and crashes on overlapping ones, where Lambda
    would start another instance. soketi fires webhooks in parallel, so its Invoke calls go
    through this forwarder (port INVOKE), which hands them to the emulator one by one."""
    lock = threading.Lock()

    class Forward(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                request = urllib.request.Request("http://127.0.0.1:%d%s" % (RIE, self.path), body)
                with urllib.request.urlopen(request, timeout=60) as response:
                    status, answer = response.status, response.read()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", INVOKE), Forward)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def main():
    root, soketi_dir, rie, task = sys.argv[1:5]
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    work = tempfile.mkdtemp()
    handler_env = {"PATH": os.environ["PATH"], "SOKETI_SECRET": APPS[0]["secret"]}
    logs = {name: open(os.path.join(work, name + ".log"), "w+")
            for name in ("serve", "lambda", "soketi", "client")}
    apps = [{**app, "enableClientMessages": True, "enabled": True, "maxConnections": -1,
             "maxBackendEventsPerSecond": -1, "maxClientEventsPerSecond": -1,
             "maxReadRequestsPerSecond": -1, "webhooks": [
                 {"url": "http://127.0.0.1:%d/%s" % (SERVE, app["id"]), "event_types": EVENTS},
                 {"lambda_function": "function", "event_types": EVENTS, "lambda": {
                     "async": False, "region": "us-east-1",
                     "client_options": {"endpoint": "http://127.0.0.1:%d" % INVOKE}}}]}
            for app in APPS]
    config = os.path.join(work, "soketi.json")
    with open(config, "w") as f:
        json.dump({"appManager.array.apps": apps, "host": "127.0.0.1", "port": SOKETI,
                   "metrics.enabled": False}, f)
    processes = [
        subprocess.Popen([sys.executable, os.path.join(root, "tools", "serve.py")],
                         env={**handler_env, "PORT": str(SERVE)}, stdout=logs["serve"],
                         stderr=subprocess.STDOUT),
        subprocess.Popen([rie, "--runtime-interface-emulator-address", "127.0.0.1:%d" % RIE,
                          "--runtime-api-address", "127.0.0.1:%d" % RUNTIME_API,
                          sys.executable, "-m", "awslambdaric", "lambda_function.lambda_handler"],
                         cwd=task, env={**handler_env, "LAMBDA_TASK_ROOT": task},
                         stdout=logs["lambda"], stderr=subprocess.STDOUT),
        subprocess.Popen(["node", os.path.join(soketi_dir, "node_modules", "@soketi", "soketi",
                                               "bin", "server.js"), "start", "--config=" + config],
                         env={"PATH": os.environ["PATH"], "SOKETI_DEBUG": "1",
                              "SOKETI_CLUSTER_UNICAST_ADDRESSES": "127.0.0.1",
                              "SOKETI_CLUSTER_HOST": "127.0.0.1", "SOKETI_HOST": "127.0.0.1",
                              "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"},
                         stdout=logs["soketi"], stderr=subprocess.STDOUT),
    ]
    report = {"error": None}
    serialize_invocations()
    try:
        for port in (SERVE, RIE, SOKETI):
            wait_for(port)
        for app in APPS:
            subprocess.run(["node", os.path.join(os.path.dirname(__file__), "client.js"),
                            app["key"], app["secret"], str(SOKETI)],
                           env={"PATH": os.environ["PATH"],
                                "NODE_PATH": os.path.join(soketi_dir, "node_modules")},
                           stdout=logs["client"], stderr=subprocess.STDOUT, timeout=60,
                           check=True)
        time.sleep(3)  # webhooks are sent after the events; give the last ones time to land
    except (subprocess.SubprocessError, SystemExit) as exc:
        report["error"] = repr(exc)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)
    for name, log in logs.items():
        log.seek(0)
        text = log.read()
        report[name] = serve_records(text) if name == "serve" else handler_records(text)
        report[name + "_tail"] = text[-3000:]
    print(json.dumps(report))


def handler_records(text):
    """The handler's JSON log lines in a log."""
    return [json.loads(line) for line in text.splitlines()
            if line.startswith("{") and '"outcome"' in line]


def serve_records(text):
    """make serve logs as CloudWatch shows a function: the handler's lines, then a REPORT line
    ending in "METHOD /path -> status". Each record gets the path of its request."""
    records, pending = [], []
    for line in text.splitlines():
        if line.startswith("{") and '"outcome"' in line:
            pending.append(json.loads(line))
        elif line.startswith("REPORT RequestId: "):
            path = line.rsplit("\t", 1)[-1].split()[1]
            records += [{**record, "path": path} for record in pending]
            pending = []
    return records


if __name__ == "__main__":
    main()
