"""Every Python Lambda runs: the core suites run again on 3.9 and 3.13 (real CPython, built from
source by tools/cpython.py, about two minutes each, once) and on 3.10, 3.12 and 3.14 (Pyodide,
CPython compiled to WebAssembly, run by Node: tools/pyodide.py). 3.11 is the suite's own Python.
python3.9 and python3.10 are deprecated runtimes that Lambda still invokes: see the README."""
import json
import os
import re
import subprocess
import sys

import pytest

import cpython
import deploy
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


def deselected(version):
    """pytest arguments leaving out the tests that cannot run on that version
    (pyodide.CANNOT_RUN says which and why); none on most versions."""
    cannot_run = pyodide.CANNOT_RUN.get(version, {})
    return [argument for node in cannot_run for argument in ("--deselect", node)]


def deselected_count(summary):
    """How many tests pytest's closing line says it deselected."""
    found = re.search(r"(\d+) deselected", summary)
    return int(found.group(1)) if found else 0


def collected_count(node_ids):
    """How many tests these node ids name (parametrized ones count each case), as the suite's
    own Python collects them; fails when one names no test any more."""
    if not node_ids:
        return 0
    run = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p",
                          "no:cacheprovider", *node_ids], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    return sum(1 for line in run.stdout.splitlines() if "::" in line)


@pytest.mark.parametrize("version", VERSIONS)
def test_core_suites_pass_on_lambdas_other_pythons(version):
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    if version in pyodide.RELEASES:  # its skips are checked below
        env.pop("CI", None)
    argv = python(version, "-m", "pytest", "-q", "-p", "no:cacheprovider", *deselected(version),
                  *CORE)
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr[-2000:]
    print("Python %s: %s" % (version, summary))
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " passed" in summary and "failed" not in summary and "error" not in summary
    # Exactly the tests named are left out: a renamed one would otherwise run, and stop Pyodide.
    left_out = list(pyodide.CANNOT_RUN.get(version, {}))
    assert deselected_count(summary) == collected_count(left_out), summary
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
                              "SOKETI_SECRET": "versions-app-secret-0123"})
    assert run.returncode == 0, run.stderr[-3000:]
    answered = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("[")]
    assert len(answered) == len(list((ROOT / "events").glob("*.json"))) > 0
    # Sample keys differ from these: every signed sample is refused, none crashes.
    assert {status for _, status in answered} == {401}, answered


def test_make_create_asks_for_the_newest_runtime_tested_here():
    """`make create` (tools/deploy.py) and the template name the newest Python run above."""
    newest = "python" + VERSIONS[-1]
    assert deploy.RUNTIME == newest
    template = ROOT / "template.yaml"
    if template.exists():  # every Runtime: line in it
        runtimes = re.findall(r"^\s*Runtime:\s*[\"']?([\w.]+)", template.read_text(), re.MULTILINE)
        assert runtimes and set(runtimes) == {newest}, runtimes
