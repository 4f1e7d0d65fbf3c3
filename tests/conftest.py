import json
import os
import pathlib
import sys
import tempfile
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]

import lambda_function  # noqa: E402
import progress  # noqa: E402

# Where a run writes, inside the project so that make distclean removes it all, as the
# Makefile sets it for make test (this covers pytest started by hand): temporary files,
# pytest's tmp_path among them (TMPDIR, read by tempfile here and by every program the tests
# start), and npm's and pip's download caches. Not under Pyodide, whose /tmp is its own memory.
BUILD_TMP = ROOT / "build" / "tmp"
CACHES = {"npm_config_cache": ROOT / "build" / "cache" / "npm",
          "PIP_CACHE_DIR": ROOT / "build" / "cache" / "pip"}
if sys.platform != "emscripten":
    BUILD_TMP.mkdir(parents=True, exist_ok=True)
    os.environ["TMPDIR"] = str(BUILD_TMP)
    tempfile.tempdir = str(BUILD_TMP)  # tempfile read TMPDIR once already, when pytest started
    for variable, folder in CACHES.items():
        os.environ[variable] = str(folder)

VECTORS = json.loads((ROOT / "tests/fixtures/qstash_vectors.json").read_text())["vectors"]
SIGNED_VECTORS = [v for v in VECTORS if v["current_signing_key"]]
KEY, NEXT = "sig_TestCurrentKey4f9a2b7c1d", "sig_TestNextKey8e3d6c5b0a"
SECRET, NEXT_SECRET, APP_KEY = "test-app-secret-5f1e2d3c", "test-app-next-secret-7a9b", "test-app-key"


def pytest_configure(config):
    """A long step (building CPython, fetching Pyodide, installing the SAM CLI) says what it
    does on the terminal as it starts: pytest's output capture would hold the words until
    the test ended, leaving the run silent for minutes."""
    progress.send_to(lambda text: to_terminal(config, text))


def pytest_unconfigure(config):
    progress.send_to(None)


def to_terminal(config, text):
    """One line on the terminal now, on a line of its own, whatever pytest is capturing."""
    capture = config.pluginmanager.getplugin("capturemanager")
    reporter = config.pluginmanager.getplugin("terminalreporter")
    if capture is None or reporter is None:  # -p no:capture, or no terminal output
        print(text, file=sys.__stderr__, flush=True)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(text)
        reporter.flush()


def in_ci():
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition, why):
    """Skip when a real component is missing; under CI=true that is a failure instead."""
    if not condition:
        if in_ci():
            pytest.fail(f"required under CI: {why}")
        pytest.skip(why)


def self_signed_certificate(folder):
    """(certificate file, key file): a self-signed certificate for 127.0.0.1, made by
    openssl in `folder`, for loopback servers that speak TLS."""
    import shutil
    import subprocess
    need(shutil.which("openssl"), "openssl is needed to make a test certificate")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return str(cert), str(key)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """Each test starts with none of the handler's configuration set."""
    for name in list(os.environ):
        if "QSTASH" in name or name.startswith("SOKETI"):
            monkeypatch.delenv(name)


@pytest.fixture
def qstash_env(monkeypatch):
    monkeypatch.setenv("QSTASH_CURRENT_SIGNING_KEY", KEY)
    monkeypatch.setenv("QSTASH_NEXT_SIGNING_KEY", NEXT)


@pytest.fixture
def soketi_env(monkeypatch):
    monkeypatch.setenv("SOKETI_SECRET", SECRET)
    monkeypatch.setenv("SOKETI_KEY", APP_KEY)


@pytest.fixture
def clock(monkeypatch):
    """clock(t) pins time.time() (what the handler reads) to t."""
    return lambda t: monkeypatch.setattr(time, "time", lambda: t)


@pytest.fixture
def call(capsys):
    """Run lambda_handler; return (response, parsed log line). Exactly one line is logged."""
    def run(event, context=None):
        capsys.readouterr()
        response = lambda_function.lambda_handler(event, context)
        lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
        assert len(lines) == 1, lines
        return response, json.loads(lines[0])
    return run


@pytest.fixture
def received(monkeypatch):
    """Record the Messages that reach the business logic (the default handle still runs)."""
    seen, original = [], lambda_function.handle

    def recording(message):
        seen.append(message)
        return original(message)
    monkeypatch.setattr(lambda_function, "handle", recording)
    return seen


try:  # no wall-clock limits in unit tests: hypothesis's default deadline is one
    from hypothesis import settings
    settings.register_profile("project", deadline=None, print_blob=True)
    settings.load_profile("project")
except ImportError:
    pass
