"""Start real peers on loopback for the tests: AWS's Runtime Interface Emulator, make serve,
moto_server. Each is installed or fetched from the package registries by the tests
themselves; under CI=true a missing peer fails the test instead of skipping it."""
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

import loopback
import progress
import rie
from loopback import free_port  # noqa: F401 (the tests import it from here)
from conftest import ROOT, need

PEERS = rie.PEERS


def wait_for_port(port, process, timeout=30):
    if not loopback.wait_for_port(port, process, timeout):
        raise RuntimeError("nothing listened on 127.0.0.1:%d (exit %s): %s"
                           % (port, process.poll(), read_log(process)))


def read_log(process):
    process.log.flush()
    return open(process.log.name, encoding="utf-8", errors="replace").read()


@contextlib.contextmanager
def running(argv, *, env=None, cwd=None, port=None):
    """Run argv in its own process group; yield it once `port` accepts; kill the group.
    Its output is in `process.log` (readable with read_log) while the block runs."""
    log = tempfile.NamedTemporaryFile("w+", suffix=".log")
    process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    process.log = log
    try:
        if port:
            wait_for_port(port, process)
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def rie_binary():
    """aws-lambda-rie, taken out of the aws-sam-cli wheel (fetched once into build/peers)."""
    announced = contextlib.nullcontext()
    if not (PEERS / "aws-lambda-rie").exists():
        doing = ("downloading the %s wheel from PyPI, for AWS's Runtime Interface Emulator "
                 "inside it, into %s" % (rie.SAM_CLI, progress.shown(PEERS)))
        announced = progress.step(doing, "8 MB, usually a few seconds")
    with announced:
        binary = rie.rie_binary()
        need(binary, "could not download %s (it carries the Runtime Interface Emulator)"
             % rie.SAM_CLI)
    return binary


# How long each npm peer's first install usually takes here (most of it is downloading).
NPM_INSTALL_TAKES = {"soketi": "about 300 MB, usually under a minute"}


def npm_install(name, package_json):
    """Install a test peer's package.json (pinned versions) into build/peers/NAME, once.
    npm's download cache is build/cache/npm (npm_config_cache, set by conftest)."""
    import shutil
    need(shutil.which("node") and shutil.which("npm"), "Node.js and npm are needed for " + name)
    folder = PEERS / name
    spec = package_json.read_text()
    if not (folder / "node_modules").exists() or (folder / "package.json").read_text() != spec:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "package.json").write_text(spec)
        doing = "installing %s from npm into %s" % (name, progress.shown(folder))
        with progress.step(doing, NPM_INSTALL_TAKES.get(name, "usually a few seconds")):
            result = subprocess.run(["npm", "install", "--no-audit", "--no-fund",
                                     "--loglevel=error"], cwd=folder, capture_output=True,
                                    text=True, timeout=600)
            need(result.returncode == 0,
                 "npm could not install %s: %s" % (name, result.stderr[-500:]))
    return folder


def build_task(tmp_path):
    """make zip, unzipped into a fresh folder: what Lambda puts in /var/task."""
    subprocess.run(["make", "-s", "zip"], cwd=ROOT, check=True, capture_output=True)
    return rie.unpack(tmp_path / "task")


@contextlib.contextmanager
def lambda_runtime(task, env_vars, handler="lambda_function.lambda_handler", python=None):
    """AWS's emulator running `python -m awslambdaric HANDLER` in `task`, on loopback."""
    need(_has_awslambdaric(python), "awslambdaric is not installed (make test installs it)")
    port = free_port()
    env = {"PATH": os.environ["PATH"], "LAMBDA_TASK_ROOT": str(task), "HOME": str(task),
           "AWS_LAMBDA_FUNCTION_TIMEOUT": "30", **env_vars}
    rie_binary()
    argv = rie.emulator_argv(port, free_port(), python or sys.executable, handler)
    with running(argv, env=env, cwd=task, port=port) as process:
        process.url = "http://127.0.0.1:%d/2015-03-31/functions/function/invocations" % port
        yield process


def _has_awslambdaric(python):
    return subprocess.run([python or sys.executable, "-c", "import awslambdaric"],
                          capture_output=True).returncode == 0


def post(url, data, headers=None, method="POST", timeout=30):
    """(status, headers, body bytes) of one HTTP request; HTTP errors are answers too."""
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()
