"""Lambda's oldest and newest Python runtimes: the core suites run again on real CPython 3.9
and 3.13, built from source by tools/cpython.py (once, about two minutes each)."""
import json
import os
import subprocess

import pytest

import cpython
from conftest import ROOT, need

CORE = ["tests/test_verify.py", "tests/test_handler.py", "tests/test_shapes.py",
        "tests/test_soketi.py", "tests/test_robustness.py", "tests/test_secrets.py",
        "tests/test_attack.py"]


def environment(version):
    try:
        return cpython.build(version), cpython.venv(version, ROOT / "requirements-compat.txt")
    except (RuntimeError, OSError, subprocess.CalledProcessError) as error:
        need(False, "Python %s could not be set up: %s" % (version, error))


@pytest.mark.parametrize("version", list(cpython.RELEASES))
def test_core_suites_pass_on_lambdas_other_pythons(version):
    _, python = environment(version)
    run = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *CORE],
                         cwd=ROOT, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr[-2000:]
    print("Python %s: %s" % (version, summary))
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " passed" in summary and "failed" not in summary and "error" not in summary


@pytest.mark.parametrize("version", list(cpython.RELEASES))
def test_import_and_every_sample_event_raise_no_warning(version):
    """-W error turns any DeprecationWarning the handler triggers there into a failure."""
    interpreter, _ = environment(version)
    script = ("import glob, json, lambda_function\n"
              "for name in sorted(glob.glob('events/*.json')):\n"
              "    response = lambda_function.lambda_handler(json.load(open(name)), None)\n"
              "    print(json.dumps([name, response['statusCode']]))\n")
    run = subprocess.run([str(interpreter), "-X", "dev", "-W", "error", "-c", script], cwd=ROOT,
                         capture_output=True, text=True, timeout=60,
                         env={"PATH": os.environ["PATH"], "PYTHONDONTWRITEBYTECODE": "1",
                              "QSTASH_CURRENT_SIGNING_KEY": "sig_a", "QSTASH_NEXT_SIGNING_KEY":
                              "sig_b", "SOKETI_SECRET": "s"})
    assert run.returncode == 0, run.stderr[-3000:]
    answered = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("[")]
    assert len(answered) == len(list((ROOT / "events").glob("*.json"))) > 0
    # Sample keys differ from these: every signed sample is refused, none crashes.
    assert {status for _, status in answered} == {401}, answered

