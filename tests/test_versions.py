"""Every Python Lambda runs: the core suites run again on 3.9 and 3.13 (real CPython, built from
source by tools/cpython.py, about two minutes each, once) and on 3.10 and 3.12 (Pyodide, CPython
compiled to WebAssembly, run by Node: tools/pyodide.py). 3.11 is the suite's own Python."""
import json
import os
import subprocess

import pytest

import cpython
import pyodide
from conftest import ROOT, need

CORE = ["tests/test_verify.py", "tests/test_handler.py", "tests/test_shapes.py",
        "tests/test_soketi.py", "tests/test_robustness.py", "tests/test_secrets.py",
        "tests/test_attack.py", "tests/test_callbacks.py"]
VERSIONS = sorted([*cpython.RELEASES, *pyodide.RELEASES],
                  key=lambda version: tuple(map(int, version.split("."))))
REQUIREMENTS = ROOT / "requirements-compat.txt"
NODE_ONLY = "Node.js is required"  # the oracle tests spawn Node: Pyodide has no subprocesses


def python(version, *args, packages=True):
    """argv running `python *args` on that version; with the test packages, or the bare
    interpreter (CPython: outside any virtual environment)."""
    try:
        if version in pyodide.RELEASES:
            return pyodide.command(version, REQUIREMENTS, *args)
        if packages:
            return [str(cpython.venv(version, REQUIREMENTS)), *args]
        return [str(cpython.build(version)), *args]
    except (RuntimeError, OSError, subprocess.CalledProcessError) as error:
        need(False, "Python %s could not be set up: %s" % (version, error))


@pytest.mark.parametrize("version", VERSIONS)
def test_core_suites_pass_on_lambdas_other_pythons(version):
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    if version in pyodide.RELEASES:  # its skips are checked below
        env.pop("CI", None)
    run = subprocess.run(python(version, "-m", "pytest", "-q", "-p", "no:cacheprovider", *CORE),
                         cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr[-2000:]
    print("Python %s: %s" % (version, summary))
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " passed" in summary and "failed" not in summary and "error" not in summary
    if version in pyodide.RELEASES:  # the Node.js oracle tests, and only they, may skip there
        skipped = [line for line in run.stdout.splitlines() if line.startswith("SKIPPED")]
        assert all(NODE_ONLY in line for line in skipped), skipped


@pytest.mark.parametrize("version", VERSIONS)
def test_import_and_every_sample_event_raise_no_warning(version):
    """Warnings are errors (and CPython runs in development mode): any DeprecationWarning the
    handler triggers on that version fails the test."""
    script = ("import glob, json, warnings\n"
              "warnings.simplefilter('error')\n"
              "import lambda_function\n"
              "for name in sorted(glob.glob('events/*.json')):\n"
              "    response = lambda_function.lambda_handler(json.load(open(name)), None)\n"
              "    print(json.dumps([name, response['statusCode']]))\n")
    flags = [] if version in pyodide.RELEASES else ["-X", "dev", "-W", "error"]
    run = subprocess.run(python(version, *flags, "-c", script, packages=False), cwd=ROOT,
                         capture_output=True, text=True, timeout=120,
                         env={"PATH": os.environ["PATH"], "PYTHONDONTWRITEBYTECODE": "1",
                              "QSTASH_CURRENT_SIGNING_KEY": "sig_VersionsCurrentKey012345",
                              "QSTASH_NEXT_SIGNING_KEY": "sig_VersionsNextKey0123456789",
                              "QSTASH_DESTINATION_URL": "https://hooks.example.com/hooks/qstash",
                              "SOKETI_SECRET": "s"})
    assert run.returncode == 0, run.stderr[-3000:]
    answered = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("[")]
    assert len(answered) == len(list((ROOT / "events").glob("*.json"))) > 0
    # Sample keys differ from these: every signed sample is refused, none crashes.
    assert {status for _, status in answered} == {401}, answered
