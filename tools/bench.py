"""`make bench`: figures and ratios measured side by side in one run, against targets.

Every timing is the best of several interleaved rounds (candidates alternate, so machine
noise hits them alike); ratios compare candidates from the same run. Exit status 1 when a
current target is missed; figures printed without a target are information only.

It installs nothing outside the project: PyJWT goes into build/bench, AWS's runtime emulator
into build/peers. A figure that needs a system tool which is missing (wrk, valgrind) is
skipped with a line saying what to install."""
import ast
import contextlib
import functools
import hashlib
import io
import json
import os
import pathlib
import random
import statistics
import subprocess
import sys
import time
import warnings

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]
# The SDK hands our short test keys to PyJWT, which warns about their length on every call.
warnings.filterwarnings("ignore", message="The HMAC key is")

import cpython  # noqa: E402
import lambda_events  # noqa: E402
import lambda_function as lf  # noqa: E402
import rie  # noqa: E402
from loopback import free_port  # noqa: E402
from loopback import wait_for_port as wait_for  # noqa: E402
from signed_webhooks import dedup, dynamodb, pusher, qstash  # noqa: E402
from signed_webhooks.answers import Answer  # noqa: E402
from signed_webhooks.config import read as read_configuration  # noqa: E402
from signed_webhooks.events import Request, read_request  # noqa: E402
from signed_webhooks.message import Message  # noqa: E402
from signed_webhooks.node_json import node_json  # noqa: E402
from signer import sign_pusher, sign_qstash  # noqa: E402

CURRENT, NEXT = "sig_BenchCurrentKey7Jq3pZ9w", "sig_BenchNextKey2Hc8vN4x"
URL = "https://abc123.lambda-url.us-east-1.on.aws/jobs"
results: list = []  # one bool per target checked: met or not


def best(candidates, rounds=9, budget=0.02):
    """{name: best seconds per call}, candidates interleaved round by round."""
    loops = {}
    for name, fn in candidates.items():
        fn()
        n, start = 1, time.perf_counter()
        while time.perf_counter() - start < budget:
            fn()
            n += 1
        loops[name] = n
    times = {name: float("inf") for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            start = time.perf_counter()
            for _ in range(loops[name]):
                fn()
            times[name] = min(times[name], (time.perf_counter() - start) / loops[name])
    return times


def report(label, figure, unit, target=None, ratio=None):
    line = f"  {label:<58} {figure:>10.3f} {unit:<3}"
    if target is not None:
        ok = ratio <= target
        line += f"  ratio {ratio:6.3f}  target <= {target:<5} {'ok' if ok else 'MISSED'}"
        results.append(ok)
    print(line)


def verify_timings(receiver, size, key):
    """Seconds per call of our verify, the SDK's and sha256 alone, for one body size."""
    body = bytes(random.Random(size).choice(b"abcdefghij{}:,\"0123456789 ")
                 for _ in range(size))
    text = body.decode()
    token = sign_qstash(key, body, URL)
    keys = (CURRENT, NEXT)
    return best({
        "ours": lambda: qstash.verify(token, keys, body, URL),
        "sdk": lambda: receiver.verify(signature=token, body=text, url=URL),
        "sha256": lambda: hashlib.sha256(body).digest(),
    }, rounds=41 if size < 4096 else 11, budget=0.01 if size < 4096 else 0.02)


def qstash_verify():
    from qstash import Receiver
    receiver = Receiver(current_signing_key=CURRENT, next_signing_key=NEXT)
    print("QStash verify (our verify with the (current, next) keys vs the official SDK)")
    for label, size, key in (("1 KB, current key", 1024, CURRENT), ("1 KB, next key", 1024, NEXT),
                             ("1 MB, current key", 1 << 20, CURRENT)):
        t = verify_timings(receiver, size, key)
        yield label, t
        report(f"ours, {label}", t["ours"] * 1e6, "us")
        report(f"official SDK Receiver.verify, {label}", t["sdk"] * 1e6, "us")
        report(f"hashlib.sha256 of the body alone, {label}", t["sha256"] * 1e6, "us")


def qstash_section():
    figures = dict(qstash_verify())
    one_kb, one_kb_next, one_mb = (figures["1 KB, current key"], figures["1 KB, next key"],
                                   figures["1 MB, current key"])
    print("  targets")
    report("1 KB verify vs the SDK", one_kb["ours"] * 1e6, "us", 0.2,
           one_kb["ours"] / one_kb["sdk"])
    report("1 KB next-key verify vs current-key verify", one_kb_next["ours"] * 1e6, "us", 1.15,
           one_kb_next["ours"] / one_kb["ours"])
    report("1 MB verify vs sha256 of the body alone", one_mb["ours"] * 1e6, "us", 1.05,
           one_mb["ours"] / one_mb["sha256"])


def soketi_payload(target_bytes, with_floats):
    rng = random.Random(7)
    events, size = [], 0
    while size < target_bytes:
        data = {"text": "h\u00e9llo \U0001f44b " * rng.randint(1, 4), "n": rng.randint(0, 10**6),
                "tags": ["a", "b\u2028", "c"], "nested": {"ok": True, "none": None}}
        if with_floats:
            data.update(ratio=rng.random(), tiny=rng.random() * 1e-7, big=1e21 * rng.random())
        event = {"name": "client_event", "channel": f"private-room-{rng.randint(1, 99)}",
                 "event": "client-msg", "data": data, "socket_id": "123.456",
                 "user_id": rng.randint(1, 500)}
        events.append(event)
        size += len(json.dumps(event))
    return {"time_ms": int(time.time() * 1000), "events": events}


def soketi_timings(payload, body):
    """Seconds per call: rebuild and verify a soketi invocation, and json.dumps alone."""
    event = {"payload": payload, "headers": {"X-Pusher-Signature": sign_pusher("s", body)}}

    def rebuild_and_verify():
        request = read_request(event)
        pusher.verify_pusher(request.headers["x-pusher-signature"], ("s",), request.body)
    return best({"ours": rebuild_and_verify,
                 "dumps": lambda: json.dumps(payload, ensure_ascii=False,
                                             separators=(",", ":"))})


def soketi_section():
    print("soketi direct invocation: rebuild Node's JSON.stringify(payload) and verify it")
    for label, floats in (("10 KB payload, no floats", False),
                          ("10 KB payload, with floats", True)):
        payload = soketi_payload(10_000, floats)
        body = node_json(payload)
        t = soketi_timings(payload, body)
        report(f"rebuild + verify, {label} ({len(body)} B)", t["ours"] * 1e6, "us")
        report(f"json.dumps of the same payload, {label}", t["dumps"] * 1e6, "us",
               3 if not floats else None, t["ours"] / t["dumps"] if not floats else None)
        if floats:
            print(f"  {'(ratio, informational: floats take the exact slow path)':<58} "
                  f"{t['ours'] / t['dumps']:>10.3f} x")


def import_cost(module, preload=(), runs=15, path=ROOT, python=sys.executable):
    return import_costs((module,), preload, runs, path, python)[module]


def import_costs(modules, preload=(), runs=15, path=ROOT, python=sys.executable):
    """Median import time of each module, each in a fresh interpreter, taken in turns so that
    the machine's swings fall on all of them alike."""
    env = {**os.environ, "PYTHONPATH": str(path), "PYTHONDONTWRITEBYTECODE": "1"}
    samples: dict = {module: [] for module in modules}
    for _ in range(runs):
        for module in modules:
            code = (f"import time{''.join(', ' + m for m in preload)}\n"
                    f"t = time.perf_counter(); import {module}; print(time.perf_counter() - t)")
            samples[module].append(float(subprocess.run(
                [str(python), "-c", code], env=env, cwd=path, capture_output=True, text=True,
                check=True).stdout))
    return {module: statistics.median(values) for module, values in samples.items()}


def compile_instructions(path, after_first=False):
    """Instructions CPython spends compiling `path`, counted by callgrind: the same count on
    every run, whatever else the machine does, so changes can be compared without noise.
    after_first: leave out the one-time setup the first compile in a process pays (building
    the AST node types), which any handler file compiled from source pays too.
    None when valgrind is not installed."""
    import shutil
    if not shutil.which("valgrind"):
        return None
    setup = "compile(b'', '-', 'exec')\n" if after_first else ""
    code = "import sys\nsource = open(sys.argv[1], 'rb').read()\n" + setup + \
           "for _ in range(int(sys.argv[2])): compile(source, 'lambda_function.py', 'exec')"

    def count(times):
        out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                              sys.executable, "-c", code, str(path), str(times)],
                             env={**os.environ, "PYTHONHASHSEED": "0"},
                             capture_output=True, text=True).stderr
        return int(next(line.split()[-1] for line in out.splitlines() if "Collected" in line))
    return count(1) - count(0)


EMPTY_HANDLER = "def lambda_handler(event, context):\n    return {'statusCode': 200}\n"


def source_only_copy():
    """lambda_function.py alone in a folder, as Lambda's read-only /var/task holds it: no
    __pycache__, so every import compiles the source, as every cold start does. Beside it, an
    empty handler, the floor any handler file compiled from source pays."""
    import tempfile
    folder = pathlib.Path(tempfile.mkdtemp())
    (folder / "lambda_function.py").write_bytes((ROOT / "lambda_function.py").read_bytes())
    (folder / "empty_handler.py").write_text(EMPTY_HANDLER)
    return folder


def module_level_imports(source):
    """The import statements a module runs when it is loaded: those at its top level, and in
    top-level if/try blocks. Imports inside functions run later, when first needed."""
    statements = []
    pending = list(ast.parse(source).body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            statements.append(node)
        elif isinstance(node, ast.If):
            pending[:0] = node.body + node.orelse
        elif isinstance(node, ast.Try):
            pending[:0] = node.body + node.orelse + node.finalbody
    return statements


def imported_module_names(source):
    """Every module named by an import in `source`, at any depth (for preloading them)."""
    names: set = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return sorted(names)


def cold_start_section():
    stdlib = imported_module_names((ROOT / "lambda_function.py").read_text())
    print("Cold import (information: median of 15 fresh interpreters; the source is compiled "
          "each time, as in Lambda)")
    folder = source_only_copy()
    costs = import_costs(("lambda_function", "empty_handler"), preload=stdlib, path=folder)
    ours, empty = costs["lambda_function"], costs["empty_handler"]
    report("import lambda_function beyond its stdlib modules", ours * 1e3, "ms")
    report("an empty handler file, imported the same way", empty * 1e3, "ms")
    report("so ours adds, beyond any handler file", (ours - empty) * 1e3, "ms")
    for version in cpython.RELEASES:  # built by make test (tests/test_versions.py)
        python = cpython.interpreter(version)
        if python:
            report(f"the same on Python {version} (built here without PGO)",
                   import_cost("lambda_function", stdlib, path=folder, python=python) * 1e3, "ms")
        else:
            print(f"  (Python {version}: not built; make test builds it into build/peers)")
    distribution = pathlib.Path("/usr/bin/python3.11")
    if distribution.exists():
        costs = import_costs(("lambda_function", "empty_handler"), stdlib, path=folder,
                             python=distribution)
        report("the same on Debian's own optimized build of Python 3.11",
               costs["lambda_function"] * 1e3, "ms")
        report("  of which beyond an empty handler there",
               (costs["lambda_function"] - costs["empty_handler"]) * 1e3, "ms")
    instructions = compile_instructions(folder / "lambda_function.py")
    if instructions is None:
        print("  (compile instruction counts skipped: valgrind is not installed; Debian: "
              "apt-get install valgrind)")
    else:
        report("compiling it, in instructions (callgrind: no timing noise)", instructions / 1e6,
               "M")
        report("  of which Python's one-time compiler setup (any handler)",
               (instructions - compile_instructions(folder / "lambda_function.py", True)) / 1e6,
               "M")
    report("import lambda_function including its stdlib modules",
           import_cost("lambda_function", path=folder) * 1e3, "ms")
    import py_compile
    py_compile.compile(str(folder / "lambda_function.py"))  # for comparison only
    report("beyond its stdlib modules, from bytecode (Lambda never has it)",
           import_cost("lambda_function", preload=stdlib, path=folder) * 1e3, "ms")
    report("import jwt (PyJWT, what the guides ship)", import_cost("jwt") * 1e3, "ms")
    report("import qstash.receiver (the official SDK)", import_cost("qstash.receiver") * 1e3, "ms")
    size = (ROOT / "lambda.zip").stat().st_size
    # Information, not a target: the old 12 KB cap pushed the code toward density, and the
    # file is now written for its reader (deduplication, callbacks and metrics included).
    report("lambda.zip size", size / 1024, "KB")


def serve_section():
    import shutil
    print("make serve under load: wrk, 1 thread, 4 connections, 10 s, signed 1 KB JSON")
    if not shutil.which("wrk"):  # a system tool: said, never installed behind the user's back
        print("  skipped: wrk is not installed (Debian/Ubuntu: apt-get install wrk; macOS: "
              "brew install wrk)")
        return
    port, body = free_port(), json.dumps({"pad": "x" * 1000}, separators=(",", ":"))
    url = f"http://127.0.0.1:{port}/bench"
    env = {**os.environ, "PORT": str(port), "QSTASH_CURRENT_SIGNING_KEY": CURRENT,
           "QSTASH_NEXT_SIGNING_KEY": NEXT}
    server = subprocess.Popen([sys.executable, str(ROOT / "tools/serve.py")], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(port, server)
        script = ROOT / "build" / "wrk.lua"
        script.parent.mkdir(exist_ok=True)
        script.write_text('wrk.method = "POST"\nwrk.body = %s\n'
                          'wrk.headers["Content-Type"] = "application/json"\n'
                          'wrk.headers["Upstash-Signature"] = "%s"\n'
                          % (json.dumps(body), sign_qstash(CURRENT, body, url)))
        out = subprocess.run(["wrk", "-t1", "-c4", "-d10s", "--latency", "-s", str(script), url],
                             capture_output=True, text=True, timeout=60).stdout
    finally:
        server.terminate()
        server.wait()
    fields = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.strip()
              and line.split()[0] in ("50%", "99%", "Requests/sec:")}

    def to_ms(v):
        return float(v[:-2]) if v.endswith("ms") else (
            float(v[:-2]) / 1000 if v.endswith("us") else float(v[:-1]) * 1000)
    report("requests per second", float(fields["Requests/sec:"]), "r/s")
    report("latency p50", to_ms(fields["50%"]), "ms")
    report("latency p99", to_ms(fields["99%"]), "ms")
    errors = [line.strip() for line in out.splitlines() if "Non-2xx" in line or "errors" in line]
    print("  " + ("; ".join(errors) if errors else "every response was 2xx"))


def fresh_task(name):
    """An empty folder build/bench/NAME, for one candidate's /var/task."""
    import shutil
    task = ROOT / "build" / "bench" / name
    shutil.rmtree(task, ignore_errors=True)
    task.mkdir(parents=True)
    return task


def guide_task():
    """The guides' zip, unpacked: their handler with PyJWT installed beside it (pip compiles
    PyJWT to .pyc, which such a zip carries; the handler file itself is source only)."""
    task = ROOT / "build" / "bench" / "guide"
    if not (task / "jwt").exists():
        task.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target", str(task),
                        "--disable-pip-version-check", "PyJWT==2.15.1"], check=True,
                       capture_output=True)
    guide = ROOT / "tools" / "guide" / "lambda_function.py"
    (task / "lambda_function.py").write_bytes(guide.read_bytes())
    return task


def our_task():
    """lambda.zip unpacked, as Lambda's /var/task holds it."""
    return rie.unpack(fresh_task("ours"))


def stdlib_only_source():
    """A handler that imports, at module level, exactly what lambda_function.py imports at
    module level, and does nothing else: its cold start is the floor for ours, so ours minus
    it is the cost of our own code. Derived from the file, so it follows the code."""
    source = (ROOT / "lambda_function.py").read_text()
    imports = [ast.unparse(node) for node in module_level_imports(source)]
    return "\n".join(imports) + "\n\n\n" + EMPTY_HANDLER


def handler_task(name, source):
    """A folder holding one lambda_function.py with `source`."""
    task = fresh_task(name)
    (task / "lambda_function.py").write_text(source)
    return task


def init_duration(task, event):
    """Init Duration (ms) that the emulator reports for one cold start of `task`. No bytecode
    is written beside the handler: Lambda's /var/task is read-only, so every cold start
    compiles the handler's source."""
    port = free_port()
    env = {"PATH": os.environ["PATH"], "LAMBDA_TASK_ROOT": str(task),
           "PYTHONDONTWRITEBYTECODE": "1",
           "QSTASH_CURRENT_SIGNING_KEY": CURRENT, "QSTASH_NEXT_SIGNING_KEY": NEXT}
    process = subprocess.Popen(rie.emulator_argv(port, free_port(), sys.executable), cwd=task,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    try:
        wait_for(port, process)
        import urllib.request
        urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{port}/2015-03-31/functions/function/invocations",
            json.dumps(event).encode()), timeout=30).read()
    finally:
        process.terminate()
        output = process.communicate()[0]
    marker = "INIT REPORT(durationMs: "
    return float(output.split(marker)[1].split(")")[0])


def median_init_durations(tasks, event, rounds):
    """{name: median Init Duration in ms}, the candidates' cold starts interleaved."""
    samples: dict = {name: [] for name in tasks}
    for _ in range(rounds):
        for name, task in tasks.items():
            samples[name].append(init_duration(task, event))
    return {name: statistics.median(values) for name, values in samples.items()}


def runtime_section(rounds=11):
    print("Cold start in AWS's runtime emulator (Init Duration, median of %d interleaved cold "
          "starts each; each includes starting Python and awslambdaric)" % rounds)
    if not rie.rie_binary():
        print("  skipped: the Runtime Interface Emulator could not be fetched (%s from PyPI)"
              % rie.SAM_CLI)
        return
    url = "https://abc123.lambda-url.us-east-1.on.aws/"
    event = lambda_events.function_url(url=url, body=b"{}", headers=lambda_events.qstash_headers(
        CURRENT, b"{}", url))
    tasks = {"ours": our_task(),
             "stdlib": handler_task("stdlib-only", stdlib_only_source()),
             "empty": handler_task("empty", EMPTY_HANDLER),
             "guide": guide_task()}
    medians = median_init_durations(tasks, event, rounds)
    ours = medians["ours"]
    stdlib = medians["stdlib"]
    report("our lambda.zip", ours, "ms")
    report("a handler importing the same stdlib modules, nothing else", stdlib, "ms")
    report("an empty handler", medians["empty"], "ms")
    report("the guides' handler + PyJWT", medians["guide"], "ms")
    report("so our own code costs", ours - stdlib, "ms")
    print("  targets")
    report("ours vs the same stdlib imports alone", ours, "ms", 1.15, ours / stdlib)
    print(f"  {'ratio ours / guides (information)':<58} {ours / medians['guide']:>10.3f} x"
          f"   ({medians['guide'] - ours:.1f} ms saved)")


def handler_seconds(event, rounds):
    """Best seconds per lambda_handler call on `event`."""
    return best({"handler": lambda: lf.lambda_handler(event, None)}, rounds=rounds,
                budget=0.01)["handler"]


def limits_section():
    """Time per byte from 1 KB to the 6 MB Lambda limit, and peak extra memory at 6 MB, for
    whole requests through lambda_handler (the body arrives inside the event already)."""
    import tracemalloc
    print("Limits: whole signed requests through lambda_handler, 1 KB to 6 MB")
    url = "https://abc123.lambda-url.us-east-1.on.aws/big"
    os.environ.update(QSTASH_CURRENT_SIGNING_KEY=CURRENT, QSTASH_NEXT_SIGNING_KEY=NEXT,
                      SOKETI_SECRET="bench-secret")
    def events(size):
        text = json.dumps({"pad": "x" * (size - 12)}).encode()
        binary = os.urandom(size * 3 // 4)  # base64 makes the event's body 4/3 larger
        payload = soketi_payload(size, with_floats=False)
        signed = node_json(payload)
        return {
            "JSON text body": lambda_events.function_url(url=url, body=text, headers={
                **lambda_events.qstash_headers(CURRENT, text, url)}),
            "binary body, base64 in the event": lambda_events.function_url(
                url=url, body=binary, headers={**lambda_events.qstash_headers(CURRENT, binary, url),
                                              "Content-Type": "application/octet-stream"}),
            "soketi direct invocation": {"payload": payload, "headers": {
                "X-Pusher-Signature": sign_pusher("bench-secret", signed)}},
        }, {"JSON text body": len(text), "binary body, base64 in the event": len(binary),
            "soketi direct invocation": len(signed)}
    per_kb: dict = {}
    sink = io.StringIO()
    for size in (1024, 64 * 1024, 1 << 20, 6 * 1000 * 1000):
        built, sizes = events(size)
        for kind, event in built.items():
            with contextlib.redirect_stdout(sink):
                status = lf.lambda_handler(event, None)["statusCode"]
                seconds = handler_seconds(event, rounds=5 if size > 1 << 20 else 9)
            assert status == 200, (kind, size, status)
            per_kb.setdefault(kind, {})[size] = seconds / sizes[kind] * 1024 * 1e6
            if size == 6 * 1000 * 1000:
                tracemalloc.start()
                with contextlib.redirect_stdout(sink):
                    lf.lambda_handler(event, None)
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
                report(f"peak extra memory at 6 MB, {kind} (x body size)", peak / sizes[kind],
                       "x", 3, peak / sizes[kind])
    for kind, figures in per_kb.items():
        print(f"  time per KB, {kind}: " + ", ".join(
            f"{size // 1024} KB {us:.2f} us" for size, us in figures.items()))
        report(f"time per byte at 6 MB vs at 64 KB, {kind}", figures[6_000_000], "us/KB",
               1.5, figures[6_000_000] / figures[64 * 1024])


def _chains(wrap, depth=490, count=6_000_000):
    """Fresh chains `depth` levels deep, built by `wrap`, about `count` bytes of JSON in all."""
    def chain():
        value = 0
        for _ in range(depth):
            value = wrap(value)
        return value
    size = len(node_json(chain()))
    return [chain() for _ in range(count // size)]


# The rebuild's worst cases, each about 6 MB of JSON, answered as a forgery would be: the
# issue's (one lone surrogate cost 13.8x memory, an array of floats 2.3 s) and the red team's
# (deep chains of floats: bytes x depth; flat small or empty objects; lone surrogates).
WORST_SOKETI_PAYLOADS = {
    "one lone surrogate in a 6 MB string": lambda: ["a" * 5_900_000 + "\ud800"],
    "lone surrogates between ASCII (5 MB)": lambda: ["\ud800a" * 840_000],
    "one long string": lambda: ["a" * 5_900_000],
    "6 MB array of floats": lambda: [index / 7 for index in range(310_000)],
    "6 MB array of 1e-7": lambda: [1e-7] * 1_000_000,
    "6 MB of small objects": lambda: [{"k": index / 7, "s": "x"} for index in range(190_000)],
    "6 MB of empty objects": lambda: [{} for _ in range(1_950_000)],
    "6 MB of [1e-7] lists": lambda: [[1e-7] for _ in range(720_000)],
    "chains of [v, 0.5], 490 deep": lambda: _chains(lambda v: [v, 0.5]),
    "chains of [1e-7, v], 490 deep": lambda: _chains(lambda v: [1e-7, v]),
    "chains of [v], 490 deep": lambda: _chains(lambda v: [v]),
}


def soketi_worst_section():
    """The rebuild before the signature is known, on its worst payloads: peak memory against
    the rebuilt bytes (target 3x) and time against json.dumps of the same payload (10x)."""
    import tracemalloc
    print("soketi direct invocation, worst cases: a forged ~6 MB payload, rebuilt then refused")
    os.environ["SOKETI_SECRET"] = "bench-secret"
    sink = io.StringIO()
    for label, data in WORST_SOKETI_PAYLOADS.items():
        payload = {"time_ms": int(time.time() * 1000), "events": [{"name": "client_event",
                                                                  "data": data()}]}
        event = {"payload": payload, "headers": {"X-Pusher-Signature": "0" * 64}}
        rebuilt = len(node_json(payload))
        with contextlib.redirect_stdout(sink):
            assert lf.lambda_handler(event, None)["statusCode"] == 401
            tracemalloc.start()
            lf.lambda_handler(event, None)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        with contextlib.redirect_stdout(sink):  # the handler's log lines
            times = best({"ours": functools.partial(lf.lambda_handler, event, None),
                          "dumps": functools.partial(json.dumps, payload, ensure_ascii=False,
                                                     separators=(",", ":"))},
                         rounds=3, budget=0.01)
        report(f"{label}: peak memory (x rebuilt {rebuilt / 1e6:.1f} MB)", peak / rebuilt, "x",
               3, peak / rebuilt)
        report(f"{label}: time vs json.dumps", times["ours"] * 1e3, "ms", 10,
               times["ours"] / times["dumps"])


def dedup_section(rounds=7, per_round=60):
    """Deduplication against a local moto_server: the client-side CPU time (this process
    only; moto runs in its own) of our DynamoDB client beside boto3 making the same calls,
    the requests each case takes, and what importing each costs."""
    print("Deduplication (DEDUP_TABLE) against a local moto_server: ours vs boto3, same calls")
    moto_server = pathlib.Path(sys.executable).parent / "moto_server"
    try:
        import boto3
    except ImportError:
        print("  skipped: boto3 is not installed (make test installs it)")
        return
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([str(moto_server), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    saved = dict(os.environ)
    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="AKIABENCHDEDUP0000001",
                      AWS_SECRET_ACCESS_KEY="bench-secret", AWS_REGION="us-east-1",
                      DEDUP_TABLE="bench-dedup")
    try:
        wait_for(port, server)
        client = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=endpoint)
        client.create_table(TableName="bench-dedup", BillingMode="PAY_PER_REQUEST",
                            AttributeDefinitions=[{"AttributeName": "id",
                                                   "AttributeType": "S"}],
                            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
        dedup_figures(client, rounds, per_round)
        dedup_requests(endpoint)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        server.terminate()
        server.wait()
    costs = import_costs(("boto3", "socket, ssl"), runs=9)
    report("cold import of boto3 (what deduplication with it would add)",
           costs["boto3"] * 1e3, "ms")
    report("cold import of socket and ssl (what ours loads on first use)",
           costs["socket, ssl"] * 1e3, "ms")


class _Context:
    aws_request_id = "bench"

    @staticmethod
    def get_remaining_time_in_millis():
        return 30000


def _bench_message(message_id):
    request = Request("http", "POST", {"upstash-message-id": message_id}, b"{}", URL)
    return Message("qstash", request, claims={"jti": "jwt_" + os.urandom(9).hex()})


def _ours(message_id):
    """One delivery through our client: run_once as the pipeline calls it."""
    context = _Context()
    context.aws_request_id = os.urandom(8).hex()
    settings = read_configuration()[0].dedup
    assert settings is not None
    answer = dedup.run_once(_bench_message(message_id), context,
                            lambda: Answer(200, '{"ok": true}'), settings,
                            dynamodb.DynamoDBStore(settings))
    assert answer.status == 200, answer.reason


def _boto3(client, message_id, new):
    """The same calls with boto3: token record, message record, completion (or, for a
    duplicate, the failed condition that returns the stored answer)."""
    now = int(time.time())
    owner = os.urandom(8).hex()
    client.put_item(TableName="bench-dedup", Item={
        "id": {"S": "qstash:jti:jwt_" + os.urandom(9).hex()}, "owner": {"S": owner},
        "message": {"S": "qstash:message:" + message_id}, "expires_at": {"N": str(now + 60)}},
        ConditionExpression="attribute_not_exists(id) OR expires_at < :now",
        ExpressionAttributeValues={":now": {"N": str(now)}},
        ReturnValuesOnConditionCheckFailure="ALL_OLD")
    try:
        client.put_item(
            TableName="bench-dedup", ReturnValues="ALL_OLD",
            Item={"id": {"S": "qstash:message:" + message_id}, "state": {"S": "in_progress"},
                  "owner": {"S": owner}, "lease_until": {"N": str(now * 1000 + 31000)},
                  "expires_at": {"N": str(now + 60)}},
            ConditionExpression="attribute_not_exists(id) OR expires_at < :now_s OR "
                                "(#state = :in_progress AND lease_until < :now_ms)",
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues={":now_s": {"N": str(now)},
                                       ":now_ms": {"N": str(now * 1000)},
                                       ":in_progress": {"S": "in_progress"}},
            ReturnValuesOnConditionCheckFailure="ALL_OLD")
    except client.exceptions.ConditionalCheckFailedException as failed:
        assert not new and failed.response["Item"]["state"]["S"] == "completed"
        return
    client.update_item(
        TableName="bench-dedup", Key={"id": {"S": "qstash:message:" + message_id}},
        UpdateExpression="SET #state = :completed, answer = :answer, #status = :status, "
                         "expires_at = :expires REMOVE lease_until",
        ConditionExpression="#owner = :me AND #state = :in_progress",
        ExpressionAttributeNames={"#state": "state", "#status": "status", "#owner": "owner"},
        ExpressionAttributeValues={
            ":completed": {"S": "completed"}, ":status": {"N": "200"},
            ":answer": {"S": '{"status": 200, "body": "{}", "headers": {}}'},
            ":expires": {"N": str(now + 60)}, ":me": {"S": owner},
            ":in_progress": {"S": "in_progress"}},
        ReturnValuesOnConditionCheckFailure="ALL_OLD")


def dedup_figures(client, rounds, per_round):
    """Best-of-rounds CPU per delivery, candidates interleaved."""
    cpu: dict[str, list[float]] = {
        "ours new": [], "boto3 new": [], "ours duplicate": [], "boto3 duplicate": []}
    for _ in range(rounds):
        ids = {name: [os.urandom(8).hex() for _ in range(per_round)] for name in ("ours", "boto3")}
        for new in (True, False):
            case = "new" if new else "duplicate"
            start = time.process_time()
            for message_id in ids["ours"]:
                _ours(message_id)
            cpu["ours " + case].append((time.process_time() - start) / per_round)
            start = time.process_time()
            for message_id in ids["boto3"]:
                _boto3(client, message_id, new)
            cpu["boto3 " + case].append((time.process_time() - start) / per_round)
    for case in ("new", "duplicate"):
        ours, boto3 = min(cpu["ours " + case]), min(cpu["boto3 " + case])
        report(f"ours, client CPU per {case} message", ours * 1e6, "us")
        report(f"boto3 (client made once), the same calls per {case} message", boto3 * 1e6,
               "us")
        report(f"ours vs boto3, {case} message", ours * 1e6, "us", 0.3, ours / boto3)


def dedup_requests(endpoint):
    """Requests a new message and a duplicate take, counted by a proxy in front of the store
    (tests/dynamo.py), outside the timed rounds: its threads would count as our CPU."""
    sys.path.insert(0, str(ROOT / "tests"))
    import dynamo
    proxy = dynamo.Proxy(endpoint)
    os.environ["AWS_ENDPOINT_URL"] = proxy.endpoint
    try:
        message_id = os.urandom(8).hex()
        counts = []
        for _ in ("new", "duplicate"):
            proxy.reset()
            _ours(message_id)
            counts.append(proxy.total())
    finally:
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        proxy.close()
    report("requests per new message (target 3)", counts[0], "req", 3, counts[0])
    report("requests per duplicate (target 2)", counts[1], "req", 2, counts[1])


# Each section prints its figures and checks its own targets; add a section here.
SECTIONS = (qstash_section, soketi_section, soketi_worst_section, limits_section,
            cold_start_section, serve_section, runtime_section, dedup_section)


def main():
    print(f"Python {sys.version.split()[0]} on {os.cpu_count()} cores\n")
    for section in SECTIONS:
        section()
        print()
    missed = results.count(False)
    print(f"{len(results) - missed} of {len(results)} targets met")
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
