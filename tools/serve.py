"""`make serve`: a local Lambda Function URL on 127.0.0.1:$PORT (default 3000).

HANDLER (default lambda_function.lambda_handler) names the function, as Lambda's handler
setting does.

Each HTTP request becomes the Function URL event AWS would build, runs through the handler,
and the result goes back as AWS would send it. Standard library only. One request at a time,
like one Lambda instance.

What a developer sees, on stdout, is what CloudWatch Logs would show for each request: START,
every line the handler wrote (print() in handle, its JSON log line, anything on stderr), END
and REPORT (with the method, path and status added; never the query string).

The handler's file and every module shipped beside it (your helpers, the receiver's package)
are watched: when one changes, the code is loaded afresh from source (as a new Lambda
instance would load it) and serve says so on stderr. When the changed code does not load (a
syntax error, an exception at import, the function missing), serve reports it on stderr and
answers every request with the 502 a Function URL gives for a function that cannot start,
until it loads again: it never keeps running the old code silently. The code is read first
as make zip reads it (tools/code_check.py): what make zip would refuse is reported in make
zip's own lines. requirements.txt, when there is one, is installed for this interpreter
into build/requirements/ and imported from there, beside your code, as the zip holds it.
"""
import base64
import contextlib
import errno
import hashlib
import http.server
import importlib.util
import io
import json
import os
import pathlib
import socket
import sys
import threading
import time
import traceback

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import build_zip  # noqa: E402  (before your code's folder is on the path: never one of yours)
import lambda_events  # noqa: E402

sys.path.insert(0, str(ROOT))

from signed_webhooks.config import configuration_errors  # noqa: E402
from signed_webhooks.keys import PUBLIC_DEV_KEYS  # noqa: E402

sys.dont_write_bytecode = True  # Lambda's /var/task is read-only: code is compiled from source
sys.pycache_prefix = str(ROOT / "build" / "serve-no-bytecode")  # and no cached .pyc is read

# The QStash CLI dev server (`npx @upstash/qstash-cli dev`) signs with these public keys.
DEV_KEYS = {"QSTASH_CURRENT_SIGNING_KEY": "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r",
            "QSTASH_NEXT_SIGNING_KEY": "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs"}
SECRET_NAMES = ("QSTASH_CURRENT_SIGNING_KEY", "QSTASH_NEXT_SIGNING_KEY", "SOKETI_SECRET",
                "SOKETI_NEXT_SECRET")
SETTING_NAMES = ("QSTASH_DESTINATION_URL", "QSTASH_CLOCK_TOLERANCE", "SOKETI_KEY",
                 "SOKETI_MAX_AGE", "ALLOW_PUBLIC_DEV_KEYS", "METRICS_NAMESPACE", "DEDUP_TABLE",
                 "DEDUP_TTL")
WATCH_INTERVAL = 0.5  # seconds between looks at the handler's file when no request comes
# What a Function URL answers when the function raises or cannot start.
BAD_GATEWAY = (502, [("Content-Type", "application/json")],
               json.dumps({"Message": "Internal Server Error"}).encode())

_one_at_a_time = threading.Lock()


def notice(text):
    """serve's own messages (reloads, load failures) go to stderr, apart from the handler's."""
    print("serve: " + text, file=sys.__stderr__, flush=True)


def file_stamp(path):
    """What changes when an editor saves the file (in place or by renaming a new copy over it)."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size, status.st_ino


class LoadFailure:
    """Why the handler cannot run, named as Lambda's Python runtime names it. `lines`: make
    zip's own lines for it, when its checks found it."""

    def __init__(self, error_type, message, trace="", lines=()):
        self.error_type, self.message, self.trace = error_type, message, trace
        self.lines = list(lines)

    def log_lines(self):
        """The [ERROR] record CloudWatch shows for a function that cannot start."""
        return ["[ERROR] %s: %s" % (self.error_type, self.message)] + self.trace.splitlines()


class HandlerMissing(Exception):
    """The module loaded, but has no callable of the handler's name."""


class RefusedByChecks(Exception):
    """make zip would refuse the code (tools/code_check.py), or requirements.txt does not
    install: make zip's lines, and what Lambda would log."""

    def __init__(self, lines, error_type, message):
        super().__init__(message)
        self.lines, self.error_type, self.message = lines, error_type, message


class HandlerFile:
    """The function HANDLER names, loaded from source and loaded again whenever its file, or
    any module shipped beside it (your helpers, the receiver's package), changes. Use
    `current()` before each invocation; `watch()` runs it in the background so a save is
    reported at once, even with no request coming."""

    def __init__(self, handler_setting):
        self.module_name, _, self.function_name = handler_setting.rpartition(".")
        if not self.module_name:
            sys.exit("HANDLER=%s is not module.function" % handler_setting)
        spec = importlib.util.find_spec(self.module_name)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            sys.exit("HANDLER=%s: no Python file for module %r on the path"
                     % (handler_setting, self.module_name))
        self.path = pathlib.Path(spec.origin)
        self.stamps, self.function, self.failure = {}, None, None
        self.loads = 0  # how many times the code was read: a reload is any after the first
        self.packages = None  # where requirements.txt is installed for this interpreter

    def shipped_modules(self):
        """{path: top-level module name} for the handler's file and every module that ships
        with it: the top-level modules and packages beside it, and those of the project (the
        receiver's package among them)."""
        modules = {self.path: self.module_name}
        for folder in (self.path.parent, ROOT):
            for name in build_zip.shipped_files(folder):
                if name.endswith(".py"):
                    modules[folder / name] = name.split("/")[0].removesuffix(".py")
        return modules

    def current(self):
        """(function, None), or (None, LoadFailure) while the code does not load. Call it with
        _one_at_a_time held: loading swaps sys.stdout."""
        modules = self.shipped_modules()
        watched = [*modules, ROOT / "requirements.txt"]
        stamps = {path: file_stamp(path) for path in watched}
        if stamps != self.stamps or not self.loads:
            changed = [path for path in stamps if self.stamps.get(path) != stamps[path]]
            self.stamps = stamps
            self.load(set(modules.values()), changed)
        return self.function, self.failure

    def load(self, names, changed):
        """Import the code afresh (a new instance's cold start), and report."""
        init_output = io.StringIO()
        try:
            names = names | self.check()
            with contextlib.redirect_stdout(init_output), contextlib.redirect_stderr(init_output):
                module = self.fresh_module(names)
            function = getattr(module, self.function_name, None)
            if not callable(function):
                raise HandlerMissing()
        except (Exception, SystemExit) as error:  # each stops Lambda's runtime from starting it
            self.function, self.failure = None, self.describe(error)
        else:
            self.function, self.failure = function, None
        self.loads += 1
        self.report(init_output.getvalue(), changed)

    def check(self):
        """What make zip checks, before the code is imported: requirements.txt installed for
        this interpreter and put beside your code on the path (as the zip holds it), then
        tools/code_check.py. Raises RefusedByChecks; returns the installed packages' module
        names, to be imported afresh too."""
        try:
            packages = build_zip.local_packages(ROOT, announce=notice)
        except build_zip.BuildError as error:
            raise RefusedByChecks(str(error).splitlines(), "Runtime.ImportModuleError",
                                  "Unable to import module '%s': requirements.txt did not "
                                  "install" % self.module_name) from None
        if packages != self.packages:
            if self.packages is not None:
                sys.path.remove(str(self.packages))
            if packages is not None:
                sys.path.insert(1, str(packages))  # after your code's folder, as in the zip
            self.packages = packages
        problems = build_zip.code_problems(ROOT, packages, self.path, self.module_name)
        if problems:
            raise RefusedByChecks([str(problem) for problem in problems],
                                  problems[0].error_type, problems[0].lambda_says)
        return build_zip.vendor.top_level_names(packages) if packages else set()

    def fresh_module(self, names):
        """The handler's module imported anew, with every module in `names` (those shipped
        with it): each compiled from source as Lambda does (its /var/task is read-only: no
        cached bytecode), so no stale .pyc can be picked up."""
        for loaded in list(sys.modules):
            if loaded.split(".")[0] in names:
                del sys.modules[loaded]
        importlib.invalidate_caches()
        return importlib.import_module(self.module_name)

    def describe(self, error):
        """The error type and message awslambdaric gives for each way a handler fails to load."""
        module, name = self.module_name, self.function_name
        if isinstance(error, RefusedByChecks):
            return LoadFailure(error.error_type, error.message, lines=error.lines)
        if isinstance(error, SyntaxError):
            trace = "".join(traceback.format_exception_only(type(error), error))
            return LoadFailure("Runtime.UserCodeSyntaxError",
                               "Syntax error in module '%s': %s" % (module, error), trace)
        if isinstance(error, HandlerMissing):
            return LoadFailure("Runtime.HandlerNotFound",
                               "Handler '%s' missing on module '%s'" % (name, module))
        if isinstance(error, ImportError):
            return LoadFailure("Runtime.ImportModuleError",
                               "Unable to import module '%s': %s" % (module, error))
        trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        return LoadFailure(type(error).__name__, str(error), user_frames_only(trace))

    def report(self, init_output, changed):
        """Say on stderr what happened to the code; show what it printed while loading."""
        name = self.path.name
        if self.failure and self.failure.lines:  # make zip's own lines
            for line in self.failure.lines:
                notice(line)
        elif self.failure:
            notice("%s does not load: %s: %s" % (name, self.failure.error_type,
                                                 self.failure.message))
            for line in self.failure.trace.splitlines():
                notice("  " + line)
        if self.failure:
            notice("answering 502 (as a Function URL does for a function that cannot start) "
                   "until %s loads" % name)
        elif self.loads > 1:
            notice("%s changed: reloaded" % ", ".join(path.name for path in changed[:3]))
        for line in init_output.splitlines():  # what an INIT phase prints goes to the log
            print(line, flush=True)

    def watch(self):
        """Look at the file every WATCH_INTERVAL seconds, between requests (a daemon thread)."""
        while True:
            time.sleep(WATCH_INTERVAL)
            with _one_at_a_time:
                self.current()


def user_frames_only(trace):
    """A traceback without serve's own frames: each of them is a `  File` line naming this
    file, followed by its indented source lines."""
    ours, kept, in_our_frame = str(pathlib.Path(__file__)), [], False
    for line in trace.splitlines(keepends=True):
        if line.startswith('  File "'):
            in_our_frame = ('"%s"' % ours) in line
        elif not line.startswith("    "):
            in_our_frame = False
        if not in_our_frame:
            kept.append(line)
    return "".join(kept)


class Context:
    """The fields of Lambda's context object that handlers commonly read."""
    function_name, memory_limit_in_mb, function_version = "local", 128, "$LATEST"

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


@contextlib.contextmanager
def destination_url(called_url):
    """QSTASH_DESTINATION_URL = the URL a local client called (what QStash or make send
    signed), for this request only, unless the user set it."""
    own_url = "QSTASH_DESTINATION_URL" not in os.environ
    if own_url:
        os.environ["QSTASH_DESTINATION_URL"] = called_url
    try:
        yield
    finally:
        if own_url:
            del os.environ["QSTASH_DESTINATION_URL"]


def invoke(handler_file, event):
    """Run one invocation as Lambda would: (status, headers, body, everything it wrote)."""
    request_id = event["requestContext"]["requestId"]
    written = io.StringIO()
    function, failure = handler_file.current()
    if failure:
        return BAD_GATEWAY + (failure.log_lines(),)
    try:
        with contextlib.redirect_stdout(written), contextlib.redirect_stderr(written):
            result = function(event, Context(request_id))
        status, headers, payload = to_http(result)
    except Exception as error:  # a Function URL answers 502 when the handler raises
        trace = traceback.format_exception(type(error), error, error.__traceback__)
        lines = written.getvalue().splitlines()
        lines += ["[ERROR] %s: %s" % (type(error).__name__, error)]
        lines += user_frames_only("".join(trace)).splitlines()
        return BAD_GATEWAY + (lines,)
    return status, headers, payload, written.getvalue().splitlines()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms stalls
    server_version = "lambda-local"
    handler_file: "HandlerFile"  # set by main() before the server starts

    def do_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        host = self.headers.get("Host") or "127.0.0.1"
        event = lambda_events.function_url(
            method=self.command, url="https://" + host + self.path,
            headers=list(self.headers.items()), body=body, source_ip=self.client_address[0])
        with _one_at_a_time:
            started = time.perf_counter()
            with destination_url("http://" + host + self.path):
                status, headers, payload, written = invoke(self.handler_file, event)
            elapsed_ms = (time.perf_counter() - started) * 1000
            self.log_invocation(event["requestContext"]["requestId"], written, status,
                                elapsed_ms)  # before answering: the log is complete on return
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_any

    def log_invocation(self, request_id, written, status, elapsed_ms):
        """CloudWatch's text format: START, each line the function wrote, END, REPORT."""
        path = self.path.split("?")[0]  # never the query string
        lines = ["START RequestId: %s Version: $LATEST" % request_id, *written,
                 "END RequestId: %s" % request_id,
                 "REPORT RequestId: %s\tDuration: %.2f ms\t%s %s -> %d"
                 % (request_id, elapsed_ms, self.command, path, status)]
        print("\n".join(lines), flush=True)

    def log_message(self, *args):
        pass  # the invocation's log is written by log_invocation


def without_query_strings(value):
    """A setting as printed: each URL in it cut at "?" (no query string in any log line)."""
    return " ".join(word.split("?")[0] + ("?..." if "?" in word else "")
                    for word in value.split())


def fingerprint(value):
    return "%s... (sha256 %s)" % (value[:8], hashlib.sha256(value.encode()).hexdigest()[:12])


def use_dev_keys_if_none_set():
    """With no key or secret in the environment: the QStash dev server's public keys, and the
    opt-in the handler needs to accept them (ALLOW_PUBLIC_DEV_KEYS=1, set only here)."""
    if any(os.environ.get(name) for name in SECRET_NAMES):
        return False
    os.environ.update(DEV_KEYS)
    os.environ["ALLOW_PUBLIC_DEV_KEYS"] = "1"
    print("!" * 78 + "\n"
          "!! No signing keys set: using the QStash CLI dev server's PUBLIC keys\n"
          "!! (ALLOW_PUBLIC_DEV_KEYS=1). Anyone can sign with them. A deployed handler refuses\n"
          "!! them, and make create / make deploy refuse ALLOW_PUBLIC_DEV_KEYS.\n"
          + "!" * 78, flush=True)
    return True


def port_setting():
    """PORT (default 3000) as a number; one line naming PORT= and an exit when it is not one."""
    text = os.environ.get("PORT") or "3000"
    if not (text.isascii() and text.isdigit() and int(text) <= 65535):
        sys.exit("make serve: PORT=%s is not a port number (0 to 65535); e.g. PORT=3000" % text)
    return int(text)


def listening_server(port):
    """The server, listening on 127.0.0.1:port. When it cannot listen there (the port is in
    use, or not ours to take), one line naming PORT= with a port that is free now, and exit
    (no traceback: nothing is wrong with serve, only with the port)."""
    try:
        return http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            reason = "port %d is in use" % port
        else:
            reason = "cannot listen on port %d (%s)" % (port, error.strerror)
        sys.exit("make serve: %s; choose another with PORT=%d" % (reason, free_port_after(port)))


def free_port_after(port):
    """The first port after `port` that can be listened on now (as the server binds it), or
    else any free port the system picks."""
    for candidate in range(port + 1, min(port + 100, 65535) + 1):
        if can_listen(candidate):
            return candidate
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def can_listen(port):
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as http.server does
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def report_configuration_problems():
    """Every problem the handler would answer 500 for with the variables serve runs with
    (signed_webhooks.config's rules, the deployed function's), all at once; and, when a
    published development key is among them, the opt-in that serve alone accepts (the
    handler's own message says "use your own key", the advice every tool accepts).
    True when there was any."""
    problems = configuration_errors(os.environ)
    if not problems:
        return False
    notice("the handler answers 500 to every request, as a deployed function with these "
           "variables would, until you fix them and start make serve again:")
    for problem in problems:
        notice("  - " + problem)
    holds_dev_key = any(os.environ[name] in PUBLIC_DEV_KEYS
                        for name in os.environ if name.endswith(SECRET_NAMES))
    if holds_dev_key and not os.environ.get("ALLOW_PUBLIC_DEV_KEYS"):
        notice("here, and only here, ALLOW_PUBLIC_DEV_KEYS=1 accepts the published development "
               "keys (make create and make deploy refuse it)")
    return True


def print_settings(server, handler_file, handler_setting, dev_keys):
    """What serve runs, and with which settings (fingerprints of secrets, URLs without
    query strings), then every configuration problem, or else a request to try (dev_keys:
    serve supplied the dev server's keys)."""
    print("Local Function URL: http://127.0.0.1:%d/ running %s  (Ctrl-C stops it)"
          % (server.server_port, handler_setting))
    print("Watching %s: saved changes are loaded on the next request" % handler_file.path)
    for name in sorted(os.environ):
        if name.endswith(SECRET_NAMES):
            print("  %s = %s" % (name, fingerprint(os.environ[name])))
    for name in SETTING_NAMES:
        if os.environ.get(name):
            print("  %s = %s" % (name, without_query_strings(os.environ[name])))
    if "QSTASH_DESTINATION_URL" not in os.environ:
        print("  QSTASH_DESTINATION_URL = the URL each request was sent to")
    sys.stdout.flush()
    if report_configuration_problems():
        return
    if dev_keys:
        where = "another shell (make send names the dev server's key to export there)"
    else:
        where = "a shell where QSTASH_CURRENT_SIGNING_KEY holds the same key"
    if os.environ.get("QSTASH_CURRENT_SIGNING_KEY"):
        print("Try, from %s:\n  make send URL=http://127.0.0.1:%d/ BODY='{\"hello\":\"world\"}'"
              % (where, server.server_port), flush=True)


def main():
    port = port_setting()
    server = listening_server(port)
    dev_keys = use_dev_keys_if_none_set()
    handler_setting = os.environ.get("HANDLER") or "lambda_function.lambda_handler"
    Handler.handler_file = HandlerFile(handler_setting)
    with _one_at_a_time:
        Handler.handler_file.current()
    print_settings(server, Handler.handler_file, handler_setting, dev_keys)
    threading.Thread(target=Handler.handler_file.watch, daemon=True).start()
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
