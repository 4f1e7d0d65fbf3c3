import json
import os
import pathlib
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]

import lambda_function  # noqa: E402

VECTORS = json.loads((ROOT / "tests/fixtures/qstash_vectors.json").read_text())["vectors"]
SIGNED_VECTORS = [v for v in VECTORS if v["current_signing_key"]]
KEY, NEXT = "sig_TestCurrentKey4f9a2b7c1d", "sig_TestNextKey8e3d6c5b0a"
SECRET, NEXT_SECRET, APP_KEY = "test-app-secret-5f1e2d3c", "test-app-next-secret-7a9b", "test-app-key"


def in_ci():
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition, why):
    """Skip when a real component is missing; under CI=true that is a failure instead."""
    if not condition:
        if in_ci():
            pytest.fail(f"required under CI: {why}")
        pytest.skip(why)


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
