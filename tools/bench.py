"""`make bench`: every figure the project quotes, measured side by side in one run and set
against its target, then written to docs/performance.md.

Timings are the best (cold starts: the median) of several interleaved rounds: the candidates
alternate, so the machine's swings hit them alike, and every ratio compares candidates
measured in the same run. A figure without a target is information.

The contract:
- Exit status 0 when every section measured everything; the closing summary lists every
  target, met or missed. BENCH_STRICT=1 makes a missed target an error: exit status 1.
- A section that cannot measure (it raised, or a tool it needs is missing) is reported as
  not measured, with the reason. That is exit status 2, unless what is missing is an
  optional system tool (wrk, valgrind): the summary then says what to install, and the run
  still succeeds.
- A full run writes docs/performance.md: the date, the machine, every figure, every target
  met or missed. `tools/bench.py runtime import` runs only the sections named and writes no
  page (`tools/bench.py --list` names them).
- Nothing is installed or left outside the project: PyJWT and every scratch file go into
  build/bench (the system temporary directory is pointed there too, for the tools the
  sections run), AWS's runtime emulator into build/peers.
"""
import ast
import contextlib
import datetime
import functools
import hashlib
import io
import json
import os
import pathlib
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
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
BENCH_SOKETI_SECRET = "bench-app-secret-3c9d1e"
URL = "https://abc123.lambda-url.us-east-1.on.aws/jobs"
BENCH = ROOT / "build" / "bench"  # every file the bench writes, but the page
PAGE = ROOT / "docs" / "performance.md"


class Figure:
    """One reported figure. With a target: the ratio it is judged by, and whether it met it."""

    def __init__(self, section, label, figure, unit, target, ratio):
        self.section = section
        self.label = label
        self.figure = figure
        self.unit = unit
        self.target = target
        self.ratio = ratio

    @property
    def met(self):
        return self.target is None or self.ratio <= self.target

    def value(self):
        """The figure as printed: whole numbers (bytes, requests) with thousands separators,
        measurements with three decimals."""
        if isinstance(self.figure, int):
            return f"{self.figure:,}"
        return f"{self.figure:.3f}"

    def line(self):
        text = f"  {self.label:<58} {self.value():>10} {self.unit:<3}"
        if self.target is not None:
            verdict = "ok" if self.met else "MISSED"
            text += f"  ratio {self.ratio:6.3f}  target <= {self.target:<5} {verdict}"
        return text


class Gap:
    """Something a section could not measure, and why. optional: what is missing is an
    optional system tool (wrk, valgrind), so the run still succeeds."""

    def __init__(self, section, what, reason, optional):
        self.section = section
        self.what = what
        self.reason = reason
        self.optional = optional

    def line(self):
        kind = "optional, " if self.optional else ""
        return f"  not measured ({kind}{self.section}): {self.what}: {self.reason}"


FIGURES: list = []  # every Figure reported in this run, in order
GAPS: list = []  # every Gap
current_section = ""  # the name of the section running, set by run_section


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
    """Print one figure (with a target: its ratio, and whether that meets the target), and
    keep it for the closing summary and docs/performance.md."""
    entry = Figure(current_section, label, figure, unit, target, ratio)
    FIGURES.append(entry)
    print(entry.line())


def not_measured(what, reason, optional=False):
    """Record and print that `what` could not be measured. optional=True only when what is
    missing is an optional system tool; anything else makes the run fail (exit status 2)."""
    gap = Gap(current_section, what, reason, optional)
    GAPS.append(gap)
    print(gap.line())


class _Discard(io.TextIOBase):
    """A stdout that keeps nothing: the handler's log lines, while whole requests are timed."""

    def write(self, text):
        return len(text)


def verify_timings(receiver, size):
    """Seconds per call, all measured side by side: our verify of a token signed with the
    current key and of one signed with the next key, the SDK's on both, sha256 of the body
    alone, and a whole request through lambda_handler (a Function URL event: read,
    configure, verify, handle, respond, log), for one body size."""
    body = bytes(random.Random(size).choice(b"abcdefghij{}:,\"0123456789 ")
                 for _ in range(size))
    text = body.decode()
    token = sign_qstash(CURRENT, body, URL)
    next_token = sign_qstash(NEXT, body, URL)
    keys = (CURRENT, NEXT)
    os.environ.update(QSTASH_CURRENT_SIGNING_KEY=CURRENT, QSTASH_NEXT_SIGNING_KEY=NEXT)
    event = lambda_events.function_url(url=URL, body=body, headers={
        **lambda_events.qstash_headers(CURRENT, body, URL), "Upstash-Signature": token})
    with contextlib.redirect_stdout(_Discard()):
        assert lf.lambda_handler(event, None)["statusCode"] == 200
        return best({
            "ours": lambda: qstash.verify(token, keys, body, URL),
            "ours, next key": lambda: qstash.verify(next_token, keys, body, URL),
            "sdk": lambda: receiver.verify(signature=token, body=text, url=URL),
            "sdk, next key": lambda: receiver.verify(signature=next_token, body=text, url=URL),
            "sha256": lambda: hashlib.sha256(body).digest(),
            "request": lambda: lf.lambda_handler(event, None),
        }, rounds=41 if size < 4096 else 21, budget=0.01 if size < 4096 else 0.02)


def qstash_verify():
    from qstash import Receiver
    receiver = Receiver(current_signing_key=CURRENT, next_signing_key=NEXT)
    print("QStash verify (our verify with the (current, next) keys vs the official SDK)")
    for label, size in (("1 KB", 1024), ("1 MB", 1 << 20)):
        t = verify_timings(receiver, size)
        yield label, t
        report(f"ours, {label}, current key", t["ours"] * 1e6, "us")
        report(f"ours, {label}, next key", t["ours, next key"] * 1e6, "us")
        report(f"official SDK Receiver.verify, {label}, current key", t["sdk"] * 1e6, "us")
        report(f"official SDK Receiver.verify, {label}, next key", t["sdk, next key"] * 1e6,
               "us")
        report(f"hashlib.sha256 of the body alone, {label}", t["sha256"] * 1e6, "us")
        report(f"whole request through lambda_handler, {label}", t["request"] * 1e6, "us")


def qstash_section():
    figures = dict(qstash_verify())
    one_kb = figures["1 KB"]
    one_mb = figures["1 MB"]
    print("  targets")
    report("1 KB verify vs the SDK", one_kb["ours"] * 1e6, "us", 0.2,
           one_kb["ours"] / one_kb["sdk"])
    report("1 KB next-key verify vs current-key verify", one_kb["ours, next key"] * 1e6, "us",
           1.15, one_kb["ours, next key"] / one_kb["ours"])
    report("1 MB verify vs sha256 of the body alone", one_mb["ours"] * 1e6, "us", 1.05,
           one_mb["ours"] / one_mb["sha256"])
    print("  information")
    report("whole 1 KB request through lambda_handler", one_kb["request"] * 1e6, "us")
    print(f"  {'  the same, in 1 KB verifies':<58} {one_kb['request'] / one_kb['ours']:>10.3f} x")


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


EMPTY_HANDLER = "def lambda_handler(event, context):\n    return {'statusCode': 200}\n"
COMMIT_BEFORE_SPLIT = "4255623"  # the last commit where the receiver was one file
QSTASH_ONLY = {"QSTASH_CURRENT_SIGNING_KEY": CURRENT, "QSTASH_NEXT_SIGNING_KEY": NEXT}


def with_features():
    """QSTASH_ONLY plus deduplication and metrics, whose modules then load at Init. The
    table's endpoint is a port on 127.0.0.1 that nothing listens on: the request that ends a
    cold start never leaves the machine (it is answered as a store outage is)."""
    return {**QSTASH_ONLY, "DEDUP_TABLE": "bench-dedup", "METRICS_NAMESPACE": "Bench",
            "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "AKIABENCHCOLDSTART01",
            "AWS_SECRET_ACCESS_KEY": "bench-secret",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:%d" % free_port()}


def bare_environment():
    """What every program the bench starts gets of its environment: PATH, and the temporary
    directory in build/bench (keep_temporary_files_in_build)."""
    return {name: os.environ[name] for name in ("PATH", "TMPDIR") if name in os.environ}


def interpreter_environment(configuration, task):
    """A fresh interpreter's whole environment: the bare one, the task folder to import from,
    no bytecode written (Lambda's /var/task is read-only), and the receiver's
    `configuration`. Nothing else of the bench's environment reaches it."""
    return {**bare_environment(), "PYTHONPATH": str(task), "PYTHONDONTWRITEBYTECODE": "1",
            **configuration}


def fresh_task(name):
    """An empty folder build/bench/NAME, for one candidate's /var/task."""
    task = BENCH / name
    shutil.rmtree(task, ignore_errors=True)
    task.mkdir(parents=True)
    return task


def our_task(name="ours"):
    """lambda.zip unpacked into build/bench/NAME, as Lambda's /var/task holds it: sources
    only, so every import compiles them."""
    return rie.unpack(fresh_task(name))


def handler_task(name, source):
    """A folder holding one lambda_function.py with `source`."""
    task = fresh_task(name)
    (task / "lambda_function.py").write_text(source)
    return task


def guide_task():
    """The guides' zip, unpacked: their handler with PyJWT installed beside it (pip compiles
    PyJWT to .pyc, which such a zip carries; the handler file itself is source only)."""
    task = BENCH / "guide"
    if not (task / "jwt").exists():
        task.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target", str(task),
                        "--disable-pip-version-check", "PyJWT==2.15.1"], check=True,
                       capture_output=True)
    guide = ROOT / "tools" / "guide" / "lambda_function.py"
    (task / "lambda_function.py").write_bytes(guide.read_bytes())
    return task


def source_before_split():
    """lambda_function.py as it was before the receiver became a package (one 2,000-line
    file), or None when git or the commit is not available here."""
    if shutil.which("git") is None:
        return None
    result = subprocess.run(["git", "show", COMMIT_BEFORE_SPLIT + ":lambda_function.py"],
                            cwd=ROOT, capture_output=True)
    if result.returncode != 0:
        return None
    return result.stdout.decode()


# Run by a fresh interpreter in a task folder: the modules that importing lambda_function
# loads beyond the interpreter's own start-up set, in the order they were loaded, each with
# the file it came from, and where this interpreter's standard library lives.
LOADED_MODULES = """\
import sys
start = set(sys.modules)
import lambda_function
loaded = [name for name in sys.modules if name not in start]
import json
import os
import sysconfig
rows = []
for name in loaded:
    file = getattr(sys.modules[name], "__file__", None)
    rows.append([name, file and os.path.realpath(file)])
paths = sysconfig.get_paths()
folders = [os.path.realpath(paths["stdlib"]), os.path.realpath(paths["platstdlib"])]
print(json.dumps({"stdlib": folders, "modules": rows}))
"""


def loaded_modules(task, configuration, python=sys.executable):
    """What importing the task's lambda_function loads beyond the interpreter's start-up set,
    measured in a fresh interpreter whose environment is `configuration` (the optional
    features' modules load at Init when configured): {"ours": [files], "stdlib": [module
    names]}, each in load order. Measured, not read from the source, so it follows the code.
    Raises on a module that is neither the task's nor the standard library's."""
    result = subprocess.run([str(python), "-c", LOADED_MODULES], cwd=task, capture_output=True,
                            env=interpreter_environment(configuration, task), text=True)
    if result.returncode != 0:
        raise RuntimeError("importing lambda_function from %s failed:\n%s"
                           % (task, result.stderr[-2000:]))
    answer = json.loads(result.stdout)
    folders = [pathlib.Path(folder) for folder in answer["stdlib"]]
    ours = []
    stdlib = []
    for name, file in answer["modules"]:
        if file is None:  # built into the interpreter
            stdlib.append(name)
            continue
        path = pathlib.Path(file)
        if path.is_relative_to(task.resolve()):
            ours.append(path)
        elif "site-packages" not in path.parts and any(map(path.is_relative_to, folders)):
            stdlib.append(name)
        else:
            raise RuntimeError("%s loads %s from %s: neither its own nor the standard "
                               "library's" % (task, name, file))
    return {"ours": ours, "stdlib": stdlib}


def stdlib_only_source(modules):
    """A handler that imports `modules` at module level and does nothing else."""
    lines = ['"""The standard-library modules the receiver loads, imported; nothing else."""']
    lines += ["import " + name for name in modules]
    return "\n".join(lines) + "\n\n\n" + EMPTY_HANDLER


def stdlib_only_task(name, modules, configuration, python=sys.executable):
    """A folder holding the stdlib-only handler of `modules`: its cold start is the floor for
    ours, so ours minus it is the cost of our own code. Checked: a fresh interpreter loads
    exactly `modules` from it, nothing more and nothing less."""
    task = handler_task(name, stdlib_only_source(modules))
    loaded = loaded_modules(task, configuration, python)["stdlib"]
    if set(loaded) != set(modules):
        raise RuntimeError("the stdlib-only handler %s loads %s, not %s"
                           % (name, sorted(set(loaded) ^ set(modules)), "the same modules"))
    return task


class ImportCandidate:
    """One `import lambda_function` to time: from `task`, after the standard-library
    modules `preload` are loaded, with `configuration` as the environment."""

    def __init__(self, task, preload, configuration):
        self.task = task
        self.preload = preload
        self.configuration = configuration

    def script(self):
        lines = ["import time"] + ["import " + name for name in self.preload]
        lines += ["started = time.perf_counter()", "import lambda_function",
                  "print(time.perf_counter() - started)"]
        return "\n".join(lines) + "\n"


def median_import_seconds(candidates, python, runs=15):
    """{name: median seconds of `import lambda_function`}, each sample in a fresh interpreter,
    the candidates taken in turns so that the machine's swings fall on all of them alike."""
    samples: dict = {name: [] for name in candidates}
    for _ in range(runs):
        for name, candidate in candidates.items():
            result = subprocess.run(
                [str(python), "-c", candidate.script()], cwd=candidate.task, text=True,
                env=interpreter_environment(candidate.configuration, candidate.task),
                capture_output=True, check=True)
            samples[name].append(float(result.stdout))
    return {name: statistics.median(values) for name, values in samples.items()}


def interpreters():
    """[(label, path)]: the bench's own Python, then those make test built from source."""
    found = [("Python %d.%d" % sys.version_info[:2], pathlib.Path(sys.executable))]
    for version in cpython.RELEASES:
        python = cpython.interpreter(version)
        if python:
            found.append(("Python %s (no PGO)" % version, python))
        else:
            print("  Python %s is not built (make test builds it into build/peers)" % version)
    return found


def import_candidates(python, before, detailed):
    """The imports to time on `python`: after the split, an empty handler file, and before
    the split when its source is known; `detailed` adds the import with DEDUP_TABLE and
    METRICS_NAMESPACE set, and the import from __pycache__ (to show the share of compiling).
    Each loads the standard-library modules it needs first, as measured for it."""
    tasks = {"after": our_task("import-after"),
             "empty": handler_task("import-empty", EMPTY_HANDLER)}
    if before is not None:
        tasks["before"] = handler_task("import-before", before)
    candidates = {}
    for name, task in tasks.items():
        preload = loaded_modules(task, QSTASH_ONLY, python)["stdlib"]
        candidates[name] = ImportCandidate(task, preload, QSTASH_ONLY)
    if detailed:
        features = with_features()
        preload = loaded_modules(tasks["after"], features, python)["stdlib"]
        candidates["features"] = ImportCandidate(tasks["after"], preload, features)
        compiled = our_task("import-bytecode")
        subprocess.run([str(python), "-m", "compileall", "-q", str(compiled)], check=True)
        candidates["bytecode"] = ImportCandidate(compiled, candidates["after"].preload,
                                                 QSTASH_ONLY)
    return candidates


def import_section():
    """Our own import time, the standard library already loaded and no __pycache__: the one
    file before the split, the package after it, and an empty handler file (the floor)."""
    print("Import of our code alone: compiled from source, its standard-library modules "
          "loaded first (median of 15 fresh interpreters each, interleaved)")
    before = source_before_split()
    if before is None:
        not_measured("before the split", "git, or commit %s, is not available here"
                     % COMMIT_BEFORE_SPLIT, optional=True)
    for label, python in interpreters():
        detailed = python == pathlib.Path(sys.executable)
        candidates = import_candidates(python, before, detailed)
        seconds = median_import_seconds(candidates, python)
        for name, candidate in candidates.items():
            if name != "bytecode" and any(candidate.task.rglob("__pycache__")):
                raise RuntimeError("%s holds bytecode: the import of %s was not from source"
                                   % (candidate.task, name))
        ms = {name: value * 1e3 for name, value in seconds.items()}
        if before is not None:
            report(f"{label}: before the split ({COMMIT_BEFORE_SPLIT}, one file)", ms["before"],
                   "ms")
        report(f"{label}: after the split", ms["after"], "ms")
        if detailed:
            report(f"{label}: after, DEDUP_TABLE + METRICS_NAMESPACE", ms["features"], "ms")
            report(f"{label}: after, from __pycache__ (never on Lambda)", ms["bytecode"], "ms")
        report(f"{label}: an empty handler file (the floor)", ms["empty"], "ms")
        if before is not None:
            report(f"{label}: before, beyond the floor", ms["before"] - ms["empty"], "ms")
        report(f"{label}: after, beyond the floor", ms["after"] - ms["empty"], "ms")
        if before is not None:
            report(f"{label}: after / before, beyond the floor",
                   (ms["after"] - ms["empty"]) / (ms["before"] - ms["empty"]), "x")


def compile_instructions(python, paths):
    """{path: instructions CPython spends in compile() on it}, plus "setup": the one-time
    work of the first compile in a process (building the AST types), which any handler file
    compiled from source pays. Counted by callgrind, one dump per compile() call: the same
    count on every run (within 0.1%), whatever else the machine is doing."""
    folder = fresh_task("callgrind")
    code = ("import sys\n"
            "compile(b'', 'setup', 'exec', dont_inherit=True)\n"
            "for path in sys.argv[1:]:\n"
            "    with open(path, 'rb') as file:\n"
            "        compile(file.read(), path, 'exec', dont_inherit=True)\n")
    subprocess.run(["valgrind", "--tool=callgrind", "--vgdb=no", "--collect-atstart=no",
                    "--toggle-collect=builtin_compile", "--dump-after=builtin_compile",
                    "--callgrind-out-file=" + str(folder / "compile"), str(python), "-c", code,
                    *map(str, paths)], env={**bare_environment(), "PYTHONHASHSEED": "0"},
                   capture_output=True, check=True)
    counts = []
    for number in range(1, len(paths) + 2):  # the dumps are compile.1, compile.2, ...
        dump = (folder / ("compile.%d" % number)).read_text()
        counts.append(int(dump.split("\nsummary: ")[1].split()[0]))
    result = {"setup": counts[0]}
    for index, path in enumerate(paths):
        result[path] = counts[index + 1]
    return result


def process_instructions(python, task, script, configuration):
    """Instructions a whole fresh interpreter spends running `script` in `task` (callgrind,
    hash seed fixed: nearly the same count on every run)."""
    result = subprocess.run(["valgrind", "--tool=callgrind", "--vgdb=no",
                             "--callgrind-out-file=/dev/null",
                             str(python), "-c", script], cwd=task, capture_output=True,
                            text=True, env={**interpreter_environment(configuration, task),
                                            "PYTHONHASHSEED": "0"})
    if result.returncode != 0:
        raise RuntimeError("callgrind of %s failed:\n%s" % (task, result.stderr[-2000:]))
    return int(result.stderr.split("Collected : ")[1].split()[0])


def import_instructions(candidate, python=sys.executable):
    """Instructions of `import lambda_function` in the candidate's task, its standard-library
    modules loaded first: the whole process, less the same process without that import."""
    preload = "".join("import %s\n" % name for name in candidate.preload)
    with_import = process_instructions(python, candidate.task,
                                       preload + "import lambda_function\n",
                                       candidate.configuration)
    without = process_instructions(python, candidate.task, preload or "pass\n",
                                   candidate.configuration)
    return with_import - without


class WithoutDocstrings(ast.NodeTransformer):
    """Drops the docstring of every module, class and function."""

    def strip(self, node):
        self.generic_visit(node)
        first = node.body[0] if node.body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            if isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
        return node

    visit_Module = strip
    visit_ClassDef = strip
    visit_FunctionDef = strip
    visit_AsyncFunctionDef = strip


class WithoutAnnotations(ast.NodeTransformer):
    """Drops every annotation: of arguments, of return values and of variables."""

    def visit_arg(self, node):
        node.annotation = None
        return node

    def visit_FunctionDef(self, node):
        self.generic_visit(node)
        node.returns = None
        return node

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        self.generic_visit(node)
        node.body = node.body or [ast.Pass()]
        return node

    def visit_AnnAssign(self, node):
        if node.value is None:
            return None
        return ast.Assign(targets=[node.target], value=node.value, lineno=node.lineno)


def text_variants(files, root, folder):
    """{variant: [files]}: `files` as shipped, then rewritten by ast.unparse into `folder`
    with less and less of what a reader needs and the interpreter does not: comments (and
    the layout), then docstrings too, then annotations too. Compiled only to count what each
    kind of text costs; never shipped, never run."""
    variants: dict = {"as shipped": list(files), "without comments": [],
                      "without docstrings too": [], "without annotations too": []}
    for path in files:
        tree = ast.parse(path.read_text())
        texts = {"without comments": ast.unparse(tree)}
        tree = WithoutDocstrings().visit(tree)
        texts["without docstrings too"] = ast.unparse(tree)
        tree = ast.fix_missing_locations(WithoutAnnotations().visit(tree))
        texts["without annotations too"] = ast.unparse(tree)
        for variant, text in texts.items():
            target = folder / variant.replace(" ", "-") / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            variants[variant].append(target)
    return variants


def report_compile_counts(after, files_by_configuration, before_file):
    """Compile instructions: the one-time setup, the file before the split, our modules per
    configuration and one by one, and the default configuration's modules without comments,
    docstrings and annotations (what each kind of text costs to compile)."""
    every_file = sorted(after.rglob("*.py"))
    default_files = files_by_configuration["default"]
    variants = text_variants(default_files, after, fresh_task("compile-variants"))
    files = list(every_file)
    for variant in list(variants)[1:]:
        files += variants[variant]
    if before_file is not None:
        files.append(before_file)
    counts = compile_instructions(pathlib.Path(sys.executable), files)
    report("compile: Python's one-time setup (any file from source)", counts["setup"] / 1e6,
           "M")
    if before_file is not None:
        report("compile: before the split, the one file", counts[before_file] / 1e6, "M")
    report("compile: after, what the default configuration loads",
           sum(map(counts.__getitem__, default_files)) / 1e6, "M")
    for variant in list(variants)[1:]:
        report(f"compile: the same, {variant}",
               sum(map(counts.__getitem__, variants[variant])) / 1e6, "M")
    report("compile: after, with DEDUP_TABLE + METRICS_NAMESPACE",
           sum(map(counts.__getitem__, files_by_configuration["features"])) / 1e6, "M")
    report("compile: after, every module", sum(map(counts.__getitem__, every_file)) / 1e6, "M")
    for path in sorted(every_file, key=counts.__getitem__, reverse=True):
        loaded = "on first use"
        if path in files_by_configuration["features"]:
            loaded = "with the features"
        if path in default_files:
            loaded = "default"
        report(f"compile: {path.relative_to(after)} ({loaded})", counts[path] / 1e6, "M")
    return sum(map(counts.__getitem__, default_files))


def compile_section():
    """Where our import time goes, in instructions (deterministic, unlike timings): compiling
    each module, and the whole import (compiling, running the module bodies, finding and
    reading the files) beyond an empty handler."""
    print("Our import in instructions (callgrind: the same count, within 0.1%, on every run "
          "whatever the machine's load)")
    if shutil.which("valgrind") is None:
        not_measured("instruction counts", "valgrind is not installed (Debian: apt-get install "
                     "valgrind)", optional=True)
        return
    after = our_task("compile-after")
    configurations = {"default": QSTASH_ONLY, "features": with_features()}
    candidates = {}
    files_by_configuration = {}
    for name, configuration in configurations.items():
        loaded = loaded_modules(after, configuration)
        files_by_configuration[name] = loaded["ours"]
        candidates[name] = ImportCandidate(after, loaded["stdlib"], configuration)
    candidates["empty"] = ImportCandidate(handler_task("compile-empty", EMPTY_HANDLER), [],
                                          QSTASH_ONLY)
    before = source_before_split()
    before_file = None
    if before is not None:
        before_task = handler_task("compile-before", before)
        before_file = before_task / "lambda_function.py"
        candidates["before"] = ImportCandidate(
            before_task, loaded_modules(before_task, QSTASH_ONLY)["stdlib"], QSTASH_ONLY)
    compiling = report_compile_counts(after, files_by_configuration, before_file)
    totals = {name: import_instructions(candidate) for name, candidate in candidates.items()}
    empty = totals["empty"]
    report("import: an empty handler file (the floor)", empty / 1e6, "M")
    if before is not None:
        report("import: before the split, beyond the floor", (totals["before"] - empty) / 1e6,
               "M")
    report("import: after, beyond the floor", (totals["default"] - empty) / 1e6, "M")
    report("import: after, of which compiling our modules", compiling / 1e6, "M")
    report("import: after, DEDUP_TABLE + METRICS_NAMESPACE, beyond it",
           (totals["features"] - empty) / 1e6, "M")


class ColdStart:
    """One candidate for a cold start: the /var/task folder and the environment variables
    the function is configured with."""

    def __init__(self, task, configuration):
        self.task = task
        self.configuration = configuration


def init_duration(candidate, event, attempts=3):
    """Init Duration (ms) that the emulator reports for one cold start of `candidate`. No
    bytecode is written beside the handler: Lambda's /var/task is read-only, so every cold
    start compiles the handler's source. Raises, with the emulator's output, unless Init
    succeeded and the handler answered the event. The emulator needs two free ports, and on
    a shared machine another program may take one first: that, and only that, is tried
    again, on other ports."""
    port = free_port()
    env = {**bare_environment(), "LAMBDA_TASK_ROOT": str(candidate.task),
           "PYTHONDONTWRITEBYTECODE": "1", **candidate.configuration}
    process = subprocess.Popen(rie.emulator_argv(port, free_port(), sys.executable),
                               cwd=candidate.task, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    answer = None
    try:
        if wait_for(port, process):
            with urllib.request.urlopen(urllib.request.Request(
                    f"http://127.0.0.1:{port}/2015-03-31/functions/function/invocations",
                    json.dumps(event).encode()), timeout=60) as response:
                answer = json.loads(response.read())
    except OSError as error:  # the emulator refused, reset or timed out: its output says why
        answer = "%s: %s" % (type(error).__name__, error)
    finally:
        process.terminate()
        output = process.communicate()[0]
    if "address already in use" in output and attempts > 1:
        return init_duration(candidate, event, attempts - 1)
    answered = isinstance(answer, dict) and "statusCode" in answer
    if "INIT RTDONE(status: success)" not in output or not answered:
        raise RuntimeError("the cold start of %s failed (answer: %s); the emulator said:\n%s"
                           % (candidate.task, answer, output[-3000:]))
    marker = "INIT REPORT(durationMs: "
    return float(output.split(marker)[1].split(")")[0])


def init_durations(candidates, event, rounds):
    """{name: [Init Duration in ms of each cold start]}, the candidates' cold starts
    interleaved, so that the machine's swings fall on all of them alike."""
    samples: dict = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, candidate in candidates.items():
            samples[name].append(init_duration(candidate, event))
    return samples


def runtime_section(rounds=25):
    """Cold starts of lambda.zip in AWS's runtime emulator against handlers that import the
    same standard-library modules and nothing else, in the default configuration and with
    deduplication and metrics; beside them an empty handler and the guides' PyJWT zip."""
    print("Cold start in AWS's runtime emulator: Init Duration, median of %d interleaved cold "
          "starts each (each starts Python and awslambdaric, then imports the handler from "
          "source)" % rounds)
    if not rie.rie_binary():
        not_measured("cold starts", "the runtime interface emulator could not be fetched (%s "
                     "from PyPI)" % rie.SAM_CLI)
        return
    url = "https://abc123.lambda-url.us-east-1.on.aws/"
    event = lambda_events.function_url(url=url, body=b"{}", headers=lambda_events.qstash_headers(
        CURRENT, b"{}", url))
    features = with_features()
    ours = our_task()
    default_modules = loaded_modules(ours, QSTASH_ONLY)["stdlib"]
    feature_modules = loaded_modules(ours, features)["stdlib"]
    print(f"  the stdlib-only handlers import {len(default_modules)} modules (default) and "
          f"{len(feature_modules)} (DEDUP_TABLE + METRICS_NAMESPACE): what a fresh "
          "interpreter loads importing ours, beyond its start-up set")
    candidates = {
        "ours": ColdStart(ours, QSTASH_ONLY),
        "stdlib": ColdStart(stdlib_only_task("stdlib-only", default_modules, QSTASH_ONLY),
                            QSTASH_ONLY),
        "ours, features": ColdStart(ours, features),
        "stdlib, features": ColdStart(stdlib_only_task("stdlib-only-features",
                                                       feature_modules, features), features),
        "empty": ColdStart(handler_task("empty", EMPTY_HANDLER), QSTASH_ONLY),
        "guide": ColdStart(guide_task(), QSTASH_ONLY),
    }
    samples = init_durations(candidates, event, rounds)
    ms = {name: statistics.median(values) for name, values in samples.items()}
    fastest = {name: min(values) for name, values in samples.items()}
    report("default: lambda.zip, QStash's keys only", ms["ours"], "ms")
    report("default: a handler importing the same stdlib modules", ms["stdlib"], "ms")
    report("default: so our own code costs", ms["ours"] - ms["stdlib"], "ms")
    report("default: what the 1.25x target allows our code", ms["stdlib"] * 0.25, "ms")
    report("features: lambda.zip, DEDUP_TABLE + METRICS_NAMESPACE", ms["ours, features"],
           "ms")
    report("features: a handler importing the same stdlib modules", ms["stdlib, features"],
           "ms")
    report("features: so our own code costs", ms["ours, features"] - ms["stdlib, features"],
           "ms")
    report("features: what the 1.5x target allows our code", ms["stdlib, features"] * 0.5,
           "ms")
    report("an empty handler", ms["empty"], "ms")
    report("the guides' handler + PyJWT", ms["guide"], "ms")
    report("default: lambda.zip vs the guides' (information)", ms["ours"] / ms["guide"], "x")
    # The fastest cold starts are those the machine's other work disturbed least.
    report("default: fastest cold starts, ours vs stdlib (information)",
           fastest["ours"] / fastest["stdlib"], "x")
    report("features: fastest cold starts, ours vs stdlib (information)",
           fastest["ours, features"] / fastest["stdlib, features"], "x")
    size = (ROOT / "lambda.zip").stat().st_size
    report("lambda.zip size (make zip prints the same)", size, "B")
    report("lambda.zip size", size / 1000, "kB")
    print("  targets")
    report("default: lambda.zip vs its stdlib imports alone", ms["ours"], "ms", 1.25,
           ms["ours"] / ms["stdlib"])
    report("features: lambda.zip vs their stdlib imports alone", ms["ours, features"], "ms",
           1.5, ms["ours, features"] / ms["stdlib, features"])


def serve_section():
    """`make serve` under a 10-second wrk load (an optional system tool)."""
    print("make serve under load: wrk, 1 thread, 4 connections, 10 s, signed 1 KB JSON")
    if not shutil.which("wrk"):  # a system tool: said, never installed behind the user's back
        not_measured("make serve under load", "wrk is not installed (Debian/Ubuntu: apt-get "
                     "install wrk; macOS: brew install wrk)", optional=True)
        return
    port = free_port()
    body = json.dumps({"pad": "x" * 1000}, separators=(",", ":"))
    url = f"http://127.0.0.1:{port}/bench"
    env = {**os.environ, "PORT": str(port), **QSTASH_ONLY}
    server = subprocess.Popen([sys.executable, str(ROOT / "tools/serve.py")], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_for(port, server):
            raise RuntimeError("make serve did not start")
        script = BENCH / "wrk.lua"
        script.parent.mkdir(parents=True, exist_ok=True)
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


def handler_seconds(event, rounds):
    """Best seconds per lambda_handler call on `event`."""
    return best({"handler": lambda: lf.lambda_handler(event, None)}, rounds=rounds,
                budget=0.01)["handler"]


def peak_memory(function, *args):
    """The peak of memory allocated while `function(*args)` runs (tracemalloc), its prints
    discarded."""
    import tracemalloc
    tracemalloc.start()
    with contextlib.redirect_stdout(io.StringIO()):
        function(*args)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def limits_section():
    """Time per byte from 1 KB to the 6 MB Lambda limit, and peak extra memory at 6 MB, for
    whole requests through lambda_handler (the body arrives inside the event already)."""
    print("Limits: whole signed requests through lambda_handler, 1 KB to 6 MB")
    url = "https://abc123.lambda-url.us-east-1.on.aws/big"
    os.environ.update(QSTASH_CURRENT_SIGNING_KEY=CURRENT, QSTASH_NEXT_SIGNING_KEY=NEXT,
                      SOKETI_SECRET=BENCH_SOKETI_SECRET)

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
                "X-Pusher-Signature": sign_pusher(BENCH_SOKETI_SECRET, signed)}},
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
            if status != 200:
                raise RuntimeError("%s of %d bytes was answered %d" % (kind, size, status))
            per_kb.setdefault(kind, {})[size] = seconds / sizes[kind] * 1024 * 1e6
            if size == 6 * 1000 * 1000:
                peak = peak_memory(lf.lambda_handler, event, None)
                if kind != "soketi direct invocation":
                    report(f"peak extra memory at 6 MB, {kind} (x body size)",
                           peak / sizes[kind], "x", 3, peak / sizes[kind])
                    continue
                # Checking time_ms means parsing the signed bytes, and handle gets that parse:
                # Python's objects for 6 MB of small events take about 9x the text by
                # themselves, so the target is set against json.loads of the same bytes.
                parsed = peak_memory(json.loads, node_json(event["payload"]))
                report(f"peak extra memory at 6 MB, {kind} (x body size)", peak / sizes[kind],
                       "x")
                report("json.loads of its signed bytes alone (x body size)",
                       parsed / sizes[kind], "x")
                report(f"peak extra memory at 6 MB, {kind} vs json.loads of its signed bytes",
                       peak / sizes[kind], "x", 1.5, peak / parsed)
    for kind, figures in per_kb.items():
        for size, microseconds in figures.items():
            report(f"time per KB at {size // 1024:,} KB, {kind}", microseconds, "us")
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
    print("soketi direct invocation, worst cases: a forged ~6 MB payload, rebuilt then refused")
    os.environ["SOKETI_SECRET"] = BENCH_SOKETI_SECRET
    sink = io.StringIO()
    for label, data in WORST_SOKETI_PAYLOADS.items():
        payload = {"time_ms": int(time.time() * 1000), "events": [{"name": "client_event",
                                                                  "data": data()}]}
        event = {"payload": payload, "headers": {"X-Pusher-Signature": "0" * 64}}
        rebuilt = len(node_json(payload))
        with contextlib.redirect_stdout(sink):
            assert lf.lambda_handler(event, None)["statusCode"] == 401
        peak = peak_memory(lf.lambda_handler, event, None)
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
    costs = import_costs(("boto3", "http.client, select, socket, ssl"), runs=9)
    report("cold import of boto3 (what deduplication with it would add)",
           costs["boto3"] * 1e3, "ms")
    report("cold import of http.client, select, socket, ssl (what ours loads)",
           costs["http.client, select, socket, ssl"] * 1e3, "ms")


class _Context:
    aws_request_id = "bench"

    @staticmethod
    def get_remaining_time_in_millis():
        return 30000


def _bench_message(message_id):
    request = Request("http", "POST", {"upstash-message-id": message_id}, b"{}", URL)
    claims = {"jti": "jwt_" + os.urandom(9).hex(), "sub": URL, "exp": int(time.time()) + 300,
              "body": "RBNvo1WzZ4oRRq0W9-hknpT7T8If536DEMBg9hyq_4o="}
    return Message("qstash", request, claims=claims)


def _ours(message_id):
    """One delivery through our client: run_once as the pipeline calls it."""
    context = _Context()
    context.aws_request_id = os.urandom(8).hex()
    settings = read_configuration()[0].dedup
    assert settings is not None
    answer = dedup.run_once(_bench_message(message_id), context,
                            lambda: Answer(200, '{"ok": true}'), settings,
                            dynamodb.DynamoDBStore(settings), clock_tolerance=5,
                            soketi_max_age=300)
    assert answer.status == 200, answer.reason


BENCH_SIGNED = ":" + "5" * 64  # the signed part of a record key (records.py), for boto3


def _boto3(client, message_id, new):
    """The same calls with boto3: token record, message record, completion (or, for a
    duplicate, the failed condition that returns the stored answer)."""
    now = int(time.time())
    owner = os.urandom(8).hex()
    message_key = "qstash:message:" + message_id + BENCH_SIGNED
    client.put_item(TableName="bench-dedup", Item={
        "id": {"S": "qstash:jti:jwt_" + os.urandom(9).hex() + BENCH_SIGNED},
        "owner": {"S": owner}, "message": {"S": message_key},
        "expires_at": {"N": str(now + 60)}},
        ConditionExpression="attribute_not_exists(id) OR expires_at < :now",
        ExpressionAttributeValues={":now": {"N": str(now)}},
        ReturnValuesOnConditionCheckFailure="ALL_OLD")
    try:
        client.put_item(
            TableName="bench-dedup", ReturnValues="ALL_OLD",
            Item={"id": {"S": message_key}, "state": {"S": "in_progress"},
                  "owner": {"S": owner}, "lease_until": {"N": str(now * 1000 + 31000)},
                  "expires_at": {"N": str(now + 60)},
                  "body_hash": {"S": "RBNvo1WzZ4oRRq0W9-hknpT7T8If536DEMBg9hyq_4o"},
                  "sub_sha256": {"S": "5" * 64}},
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
        TableName="bench-dedup", Key={"id": {"S": message_key}},
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
        report(f"ours vs boto3, {case} message", ours * 1e6, "us", 0.5, ours / boto3)


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



class Section:
    """One part of the run: `function` prints and reports its figures; `title` and `about`
    (what is measured, and why) head its part of docs/performance.md."""

    def __init__(self, name, function, title, about):
        self.name = name
        self.function = function
        self.title = title
        self.about = " ".join(about.split())


# Each section prints its figures and checks its own targets; add a section here.
SECTIONS = (
    Section("qstash", qstash_section, "QStash verify", """
        Our `verify` of an Upstash-Signature token beside the official Python SDK's
        `Receiver.verify` on the same token, and beside `hashlib.sha256` of the body alone,
        which any verifier must compute. The second key is tried only when the first fails,
        so a token signed with the next key costs one more HMAC, no more."""),
    Section("soketi", soketi_section, "soketi direct invocation", """
        A direct invocation carries the parsed payload, not the bytes soketi signed, so the
        receiver rebuilds Node's `JSON.stringify` output before checking the HMAC. Measured
        against `json.dumps` of the same payload, the cheapest serialization there is."""),
    Section("soketi_worst", soketi_worst_section, "soketi direct invocation, worst cases", """
        The payloads that once were the rebuild's worst cases, each about 6 MB and forged:
        the rebuild runs before the signature can be checked, so its memory and time must stay
        bounded by the payload's size for anyone who can invoke the function."""),
    Section("limits", limits_section, "Limits: 1 KB to Lambda's 6 MB", """
        Whole signed requests through `lambda_handler`, from 1 KB to the 6 MB Lambda accepts:
        the time per byte must not grow with the size (cost linear in the size), and the
        peak memory beyond the event must stay a small multiple of the body. A soketi
        webhook's freshness (`time_ms`) is checked on its signed bytes, parsed, and `handle`
        gets that parse: for 6 MB of small events Python's objects alone take about 9x the
        text, whoever parses it, so that case's target is set against `json.loads` of the same
        bytes, measured beside it."""),
    Section("import", import_section, "Import of our code", """
        The time `import lambda_function` takes in a fresh interpreter whose standard-library
        modules (those the import loads, measured) are loaded first, with no `__pycache__`,
        as on Lambda, where `/var/task` is read-only and holds sources only: what our own
        lines cost to compile and run. Before the split (the one file of commit 4255623)
        and after it (`lambda_function.py` and `signed_webhooks/`, default configuration),
        beside an empty handler file, which any handler compiled from source pays. The
        figure from `__pycache__` shows how much of it is compiling."""),
    Section("compile", compile_section, "Our import, in instructions", """
        The same import counted in instructions by callgrind (valgrind), which gives the
        same count (within 0.1%) on every run, whatever the machine's load: compiling each
        module, and the whole import beyond an empty handler file. It says which modules a
        cold start pays for, how much of our import is compiling rather than running module
        bodies, and what the comments, docstrings and annotations of the modules the
        default configuration loads cost to compile (the same modules rewritten without
        them, never shipped). valgrind is an optional system tool."""),
    Section("runtime", runtime_section, "Cold start in AWS's runtime emulator", """
        Init Duration as AWS's Runtime Interface Emulator reports it for `lambda.zip`
        unpacked (sources only, as Lambda's read-only `/var/task` holds them), the median of
        interleaved cold starts, against a handler that imports the same standard-library
        modules and nothing else: those modules are measured (what a fresh interpreter loads
        importing ours with that configuration), so the difference is the cost of our own
        code. "default": QStash's keys only (target 1.25x); "features": `DEDUP_TABLE` and
        `METRICS_NAMESPACE` set too, whose modules then load at Init (target 1.5x). Beside
        them an empty handler and the guides' handler with PyJWT. The fastest cold starts are
        those the machine's other work disturbed least: their ratio is shown as
        information."""),
    Section("serve", serve_section, "make serve under load", """
        The local Function URL (`make serve`) under a 10-second `wrk` load of signed 1 KB
        requests: what a developer's test loop can push through it. `wrk` is an optional
        system tool."""),
    Section("dedup", dedup_section, "Deduplication", """
        Exactly-once processing (`DEDUP_TABLE`) against a local moto_server: the client-side
        CPU per message of our DynamoDB client beside boto3 making the same calls, the
        requests a new message and a duplicate take (counted by a proxy in front of the
        store), and what importing each client costs."""),
)


class Transcript(io.TextIOBase):
    """Standard output, copied: what a section prints besides its figures becomes its
    notes in docs/performance.md."""

    def __init__(self, stream):
        self.stream = stream
        self.copy = io.StringIO()

    def write(self, text):
        self.stream.write(text)
        self.copy.write(text)
        return len(text)

    def flush(self):
        self.stream.flush()


class SectionRun:
    """What one section did: its notes (printed lines that are not figures), the seconds it
    took and the load average of the machine before and after it."""

    def __init__(self, section):
        self.section = section
        self.notes: list = []
        self.seconds = 0.0
        self.load_before = os.getloadavg()[0]
        self.load_after = self.load_before

    def figures(self):
        return [figure for figure in FIGURES if figure.section == self.section.name]

    def gaps(self):
        return [gap for gap in GAPS if gap.section == self.section.name]


def run_section(section):
    """Run one section, recording its figures; an exception is recorded as not measured
    (an error of ours), and so is a section that reported nothing. The environment is
    restored afterwards, so no section's settings leak into the next."""
    global current_section
    current_section = section.name
    run = SectionRun(section)
    saved = dict(os.environ)
    transcript = Transcript(sys.stdout)
    started = time.monotonic()
    try:
        with contextlib.redirect_stdout(transcript):
            section.function()
    except Exception as error:  # noqa: BLE001 - reported as not measured, and exit status 2
        traceback.print_exc()
        not_measured("the rest of the section", "%s: %s" % (type(error).__name__, error))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    run.seconds = time.monotonic() - started
    run.load_after = os.getloadavg()[0]
    if not run.figures() and not run.gaps():
        not_measured("everything", "the section reported no figure (its output says why)")
    printed = {figure.line() for figure in run.figures()} | {gap.line() for gap in run.gaps()}
    for line in transcript.copy.getvalue().splitlines():
        if line.startswith("  ") and line not in printed and line.strip() != "targets":
            run.notes.append(" ".join(line.split()))
    print()
    return run


def machine():
    """What the figures were measured on: {fact: text}."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError, IndexError, ValueError):
        first = pathlib.Path("/proc/meminfo").read_text().splitlines()[0]
        memory = "%.1f GB" % (int(first.split()[1]) * 1024 / 1e9)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "CPU": "%s, %d cores" % (cpu, os.cpu_count() or 0),
        "memory": memory,
        "Python": "%s %s (%s)" % (platform.python_implementation(), platform.python_version(),
                                  sys.executable),
        "system": platform.platform(),
        "code": measured_commit(),
    }


def measured_commit():
    """The commit whose code was measured, and whether files differed from it."""
    if shutil.which("git") is None:
        return "unknown (git is not available)"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                              ".", ":!docs/performance.md"], cwd=ROOT, capture_output=True,
                             text=True).stdout.strip()
    if not commit:
        return "unknown (not a git checkout)"
    if changed:
        return "commit %s, with uncommitted changes" % commit
    return "commit %s" % commit


def summary_lines():
    """Every target, met or missed, then everything not measured."""
    targets = [figure for figure in FIGURES if figure.target is not None]
    missed = [figure for figure in targets if not figure.met]
    lines = ["%d of %d targets met" % (len(targets) - len(missed), len(targets))]
    for figure in targets:
        verdict = "met   " if figure.met else "MISSED"
        lines.append("  %s %-13s %-58s ratio %.3f, target <= %s"
                     % (verdict, figure.section, figure.label, figure.ratio, figure.target))
    if GAPS:
        lines.append("not measured:")
        lines += [gap.line() for gap in GAPS]
    return lines


def exit_status():
    """2 when something could not be measured through an error of ours (anything but an
    optional system tool missing); else 1 for a missed target under BENCH_STRICT=1; else 0."""
    if any(not gap.optional for gap in GAPS):
        return 2
    strict = os.environ.get("BENCH_STRICT") == "1"
    if strict and any(not figure.met for figure in FIGURES):
        return 1
    return 0


def cell(text):
    """Text for one cell of a Markdown table."""
    return str(text).replace("|", "\\|").strip()


def page(facts, runs, seconds):
    """docs/performance.md: the machine, the summary, then each section's figures."""
    targets = [figure for figure in FIGURES if figure.target is not None]
    met = sum(figure.met for figure in targets)
    out = ["# Performance", "",
           "Generated by `make bench` (tools/bench.py); every figure below comes from one run "
           "of it, and a new run rewrites this page. Timings swing with the machine's load; "
           "the targets are ratios between candidates measured side by side in the same run, "
           "which hold much better than the timings themselves.", "",
           "## The run", "", "| | |", "|---|---|"]
    for name, value in facts.items():
        out.append("| %s | %s |" % (name, cell(value)))
    out.append("| duration | %.0f s |" % seconds)
    out += ["", "## Summary", "", "%d of %d targets met." % (met, len(targets)), "",
            "| section | target | figure | ratio | limit | result |",
            "|---|---|---|---|---|---|"]
    for figure in targets:
        out.append("| %s | %s | %s %s | %.3f | <= %s | %s |" % (
            cell(figure.section), cell(figure.label), figure.value(), figure.unit,
            figure.ratio, figure.target, "met" if figure.met else "**missed**"))
    if GAPS:
        out += ["", "Not measured:", ""]
        for gap in GAPS:
            kind = " (an optional system tool)" if gap.optional else ""
            out.append("- %s: %s: %s%s" % (gap.section, gap.what, gap.reason, kind))
    for run in runs:
        busy = ""
        if max(run.load_before, run.load_after) > (os.cpu_count() or 1):
            busy = " The machine was busier than its cores: its timings are less reliable."
        out += ["", "## " + run.section.title, "", run.section.about, "",
                "Section `%s`: %.0f s; load average %.2f before, %.2f after.%s"
                % (run.section.name, run.seconds, run.load_before, run.load_after, busy), ""]
        figures = run.figures()
        if figures:
            out += ["| measure | figure | unit | ratio | target | result |",
                    "|---|---:|---|---:|---|---|"]
        for figure in figures:
            judged = ["", "", ""]
            if figure.target is not None:
                judged = ["%.3f" % figure.ratio, "<= %s" % figure.target,
                          "met" if figure.met else "**missed**"]
            out.append("| %s | %s | %s | %s |" % (cell(figure.label), figure.value(),
                                                  cell(figure.unit), " | ".join(judged)))
        if figures and (run.notes or run.gaps()):
            out.append("")
        out += ["- " + cell(note) for note in run.notes]
        out += ["- not measured: %s: %s" % (gap.what, gap.reason) for gap in run.gaps()]
    return "\n".join(out) + "\n"


def keep_temporary_files_in_build():
    """Point the system temporary directory at build/bench/tmp, for this process and every
    tool it starts (pip, servers): nothing is left outside the project."""
    folder = BENCH / "tmp"
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["TMPDIR"] = str(folder)
    tempfile.tempdir = str(folder)


def main(argv):
    """Run the sections named in argv (all when none), print the summary, write the page
    after a full run; the exit status (exit_status)."""
    names = [section.name for section in SECTIONS]
    if argv == ["--list"]:
        print("\n".join(names))
        return 0
    unknown = [name for name in argv if name not in names]
    if unknown:
        print("unknown section(s) %s; the sections: %s" % (", ".join(unknown), ", ".join(names)))
        return 2
    chosen = [section for section in SECTIONS if not argv or section.name in argv]
    keep_temporary_files_in_build()
    facts = machine()
    print("%s; %s; Python %s\n" % (facts["date"], facts["CPU"], platform.python_version()))
    started = time.monotonic()
    runs = [run_section(section) for section in chosen]
    print("\n".join(summary_lines()))
    if not argv:
        PAGE.parent.mkdir(exist_ok=True)
        PAGE.write_text(page(facts, runs, time.monotonic() - started))
        print("\nwrote %s" % PAGE)
    return exit_status()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
