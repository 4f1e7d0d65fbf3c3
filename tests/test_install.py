"""The receiver in your own project: pyproject.toml builds a wheel holding signed_webhooks/
alone, at signed_webhooks.__version__, with no dependencies; installed into a fresh virtual
environment (in build/, removed afterwards), a handler of your own in another folder
verifies a signed request with it, and refuses a forged one."""
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

import lambda_events
import signed_webhooks
from conftest import KEY, NEXT, ROOT, need

HANDLER = """from signed_webhooks import receive


def handle(message):
    return {"mine": True, "job": message.json}


def lambda_handler(event, context):
    return receive(event, context, handle)
"""
OFFLINE = ("NewConnectionError", "Temporary failure in name resolution",
           "Network is unreachable", "Could not find a version")


def run(argv, **kwargs):
    """Run pip or Python with pip's downloads cached in build/, and its scratch files too."""
    env = {"PATH": os.environ["PATH"], "PIP_CACHE_DIR": str(ROOT / "build" / "pip-cache"),
           "PIP_ROOT_USER_ACTION": "ignore", **kwargs.pop("env", {})}
    return subprocess.run(argv, capture_output=True, text=True, env=env, **kwargs)


@pytest.fixture(scope="module")
def installed():
    """(the wheel, the virtual environment's python), built and installed once."""
    work = ROOT / "build" / ("install-test-%d" % os.getpid())
    shutil.rmtree(work, ignore_errors=True)
    (work / "tmp").mkdir(parents=True)
    try:
        built = run([sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check",
                     "--no-deps", "-w", str(work / "dist"), str(ROOT)],
                    env={"TMPDIR": str(work / "tmp")})
        if built.returncode != 0 and any(sign in built.stderr for sign in OFFLINE):
            need(False, "PyPI (for the build backend) is not reachable: " + built.stderr[-400:])
        assert built.returncode == 0, built.stdout + built.stderr
        (wheel,) = (work / "dist").glob("*.whl")
        venv = work / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        python = venv / "bin" / "python"
        done = run([sys.executable, "-m", "pip", "--python", str(python), "install",
                    "--disable-pip-version-check", "--no-index", str(wheel)],
                   env={"TMPDIR": str(work / "tmp")})
        assert done.returncode == 0, done.stdout + done.stderr
        yield wheel, python, work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_the_wheel_holds_the_receiver_alone_at_its_version(installed):
    wheel, _, _ = installed
    version = signed_webhooks.__version__
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read("signed_webhooks-%s.dist-info/METADATA" % version).decode()
        packaged = {name: archive.read(name) for name in names
                    if name.startswith("signed_webhooks/")}
    assert wheel.name == "signed_webhooks-%s-py3-none-any.whl" % version
    assert all(name.startswith(("signed_webhooks/", "signed_webhooks-%s.dist-info/" % version))
               for name in names), names
    receiver = {path.relative_to(ROOT).as_posix(): path.read_bytes()
                for path in sorted((ROOT / "signed_webhooks").glob("*.py"))}
    assert packaged == receiver  # every module, byte for byte, and nothing else
    headers = dict(line.split(": ", 1) for line in metadata.split("\n\n")[0].splitlines())
    assert headers["Version"] == version and headers["Name"] == "signed-webhooks"
    assert "Requires-Dist" not in metadata  # no dependencies: standard library only


def test_your_own_handler_elsewhere_verifies_with_the_installed_package(installed):
    _, python, work = installed
    elsewhere = work / "my-sam-app" / "src"
    elsewhere.mkdir(parents=True)
    (elsewhere / "app.py").write_text(HANDLER)
    url = "https://abc123.lambda-url.us-east-1.on.aws/jobs"
    body = b'{"job":7}'
    signed = lambda_events.function_url(url=url, body=body,
                                        headers=lambda_events.qstash_headers(KEY, body, url))
    forged = lambda_events.function_url(url=url, body=b'{"job":8}',
                                        headers=lambda_events.qstash_headers(KEY, body, url))
    code = ("import json, sys, app, signed_webhooks\nprint(signed_webhooks.__file__)\n"
            "for event in json.loads(sys.argv[1]):\n"
            "    print(json.dumps(app.lambda_handler(event, None)))\n")
    # -E -s: no PYTHONPATH, no user site; the folder itself is on the path, as a task root is
    result = run([str(python), "-E", "-s", "-c", code, json.dumps([signed, forged])],
                 cwd=elsewhere, env={"QSTASH_CURRENT_SIGNING_KEY": KEY,
                                     "QSTASH_NEXT_SIGNING_KEY": NEXT})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(str(work / "venv" / "lib"))  # the installed copy, not ROOT's
    answers = [json.loads(line) for line in lines if line.startswith('{"statusCode"')]
    assert answers[0]["statusCode"] == 200
    assert json.loads(answers[0]["body"]) == {"mine": True, "job": {"job": 7}}
    assert answers[1]["statusCode"] == 401
