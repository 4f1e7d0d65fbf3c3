"""requirements.txt: make zip installs it for Lambda's machine and Python, not this one's
(built here for arm64 on x86_64), reproducibly, and prints what it vendored; the zip holds
exactly the wheels' files (the wheels' own RECORD is the oracle); an extracted zip imports
the pure package and answers a signed request; make invoke runs the same requirements
installed for this machine. One pure package (six) and one with compiled wheels
(markupsafe), both small: PyPI is reached once per module, then pip's cache in build/."""
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

import lambda_events
from conftest import KEY, NEXT, ROOT, need
from peers import free_port, read_log, running

REQUIREMENTS = "six==1.17.0\nmarkupsafe==3.0.3\n"
HANDLE = """

import six  # from requirements.txt


def handle(message):
    return {"six": six.__version__, "from": six.__file__, "job": message.json}
"""
SO = "markupsafe/_speedups.cpython-314-aarch64-linux-gnu.so"
ELF_MACHINE = {183: "aarch64", 62: "x86_64"}  # the ELF header's e_machine
OFFLINE = ("Could not find a version", "NewConnectionError", "Temporary failure in name "
           "resolution", "Network is unreachable", "No matching distribution")


def pip_env():
    """pip's downloads cached inside the project, never in your home folder."""
    return {"PATH": os.environ["PATH"], "PIP_CACHE_DIR": str(ROOT / "build" / "pip-cache")}


def needs_pypi(result):
    """A pip run that failed because PyPI cannot be reached skips (fails under CI=true)."""
    output = result.stdout + result.stderr
    if result.returncode != 0 and any(sign in output for sign in OFFLINE):
        need(False, "PyPI is not reachable: %s" % output[-400:])
    assert result.returncode == 0, output


def project(folder, requirements=REQUIREMENTS):
    """A copy of the project with a requirements.txt and a handle that imports six."""
    folder.mkdir(parents=True)
    shutil.copy(ROOT / "Makefile", folder / "Makefile")
    for name in ("signed_webhooks", "tools", "events"):
        shutil.copytree(ROOT / name, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
    handler = (ROOT / "lambda_function.py").read_text() + HANDLE
    (folder / "lambda_function.py").write_text(handler)
    (folder / "requirements.txt").write_text(requirements)
    return folder


def make(folder, *args, **env):
    return subprocess.run(["make", "-s", *args], cwd=folder, capture_output=True, text=True,
                          env={**pip_env(), **env})


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Two copies, each built on its own for arm64: two pip installs, two zips."""
    first = project(tmp_path_factory.mktemp("vendor") / "a")
    second = project(tmp_path_factory.mktemp("vendor") / "b")
    printed = make(first, "zip", "ARCH=arm64")
    needs_pypi(printed)
    needs_pypi(make(second, "zip", "ARCH=arm64"))
    return first, second, printed.stdout


@pytest.fixture(scope="module")
def wheels(built, tmp_path_factory):
    """The wheels themselves, fetched by pip download for the same platform."""
    folder = tmp_path_factory.mktemp("wheels")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps",
         "--only-binary=:all:", "--platform", "manylinux2014_aarch64", "--implementation",
         "cp", "--python-version", "3.14", "-d", str(folder),
         *REQUIREMENTS.split()], capture_output=True, text=True, env=pip_env())
    needs_pypi(result)
    return sorted(folder.glob("*.whl"))


def test_the_vendored_zip_is_reproducible(built):
    first, second, _ = built
    assert (first / "lambda.zip").read_bytes() == (second / "lambda.zip").read_bytes()


def test_make_zip_prints_what_it_vendored(built):
    printed = built[2]
    assert ("requirements.txt: vendored for arm64 python3.14: MarkupSafe 3.0.3 (cp314, "
            "aarch64), six 1.17.0 (pure Python)") in printed.splitlines()


def record_digests(wheel):
    """{path: sha256 as RECORD writes it} for every file the wheel itself lists."""
    with zipfile.ZipFile(wheel) as archive:
        record = next(name for name in archive.namelist() if name.endswith(".dist-info/RECORD"))
        rows = archive.read(record).decode().splitlines()
    digests = {}
    for row in rows:
        path, digest, _ = row.rsplit(",", 2)
        digests[path] = digest
    return digests


def test_the_zip_holds_exactly_the_wheels_files_for_lambdas_machine(built, wheels):
    first = built[0]
    with zipfile.ZipFile(first / "lambda.zip") as archive:
        ours = {info.filename: info for info in archive.infolist()}
        contents = {name: archive.read(name) for name in ours}
    assert list(ours) == sorted(ours, key=lambda name: name.split("/"))  # folder by folder
    expected = {}
    for wheel in wheels:
        expected.update(record_digests(wheel))
    vendored = {name for name in ours if name not in expected and not name.startswith(
        ("lambda_function.py", "signed_webhooks/"))}
    assert vendored == set()  # nothing of pip's own: no INSTALLER, REQUESTED, bin/, bytecode
    for path, digest in expected.items():
        if path.endswith(".dist-info/RECORD"):  # lists pip's files too: never shipped
            assert path not in ours
            continue
        assert path in ours, path
        algorithm, _, value = digest.partition("=")
        assert algorithm == "sha256", path
        actual = base64.urlsafe_b64encode(hashlib.sha256(contents[path]).digest())
        assert actual.rstrip(b"=").decode() == value, path
        assert ours[path].date_time == (1980, 1, 1, 0, 0, 0)
    so = contents[SO]
    assert so[:4] == b"\x7fELF" and so[4] == 2  # a 64-bit ELF shared object ...
    assert ELF_MACHINE[int.from_bytes(so[18:20], "little")] == "aarch64"  # ... for arm64


def test_an_extracted_zip_imports_the_vendored_package_and_answers(built, tmp_path):
    """A bare interpreter (no site-packages), the extracted zip its only code."""
    first = built[0]
    with zipfile.ZipFile(first / "lambda.zip") as archive:
        archive.extractall(tmp_path / "task")
    url = "https://abc123.lambda-url.us-east-1.on.aws/jobs"
    body = b'{"job":1}'
    event = lambda_events.function_url(url=url, body=body,
                                       headers=lambda_events.qstash_headers(KEY, body, url))
    code = ("import json, sys; sys.path.insert(0, '.'); import lambda_function as f; "
            "print(json.dumps(f.lambda_handler(json.loads(sys.argv[1]), None)))")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code, json.dumps(event)],
                         cwd=tmp_path / "task", capture_output=True, text=True, check=True,
                         env={"QSTASH_CURRENT_SIGNING_KEY": KEY, "QSTASH_NEXT_SIGNING_KEY": NEXT})
    response = json.loads(out.stdout.splitlines()[-1])
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == {"six": "1.17.0", "job": {"job": 1},
                                            "from": str(tmp_path / "task" / "six.py")}


def installed_here(first, answer):
    """The answer's six was imported from requirements.txt installed for this machine (the
    interpreter running the tools may have a six of its own)."""
    local = list((first / "build" / "requirements").glob("local-*/six.py"))
    assert len(local) == 1 and answer["from"] == str(local[0])
    return True


def test_make_invoke_runs_the_requirements_installed_for_this_machine(built):
    first = built[0]
    keys = {"QSTASH_CURRENT_SIGNING_KEY": KEY, "QSTASH_NEXT_SIGNING_KEY": NEXT}
    event = subprocess.run([sys.executable, "tools/make_events.py", "--fresh", "function-url"],
                           cwd=first, capture_output=True, text=True, check=True,
                           env={**pip_env(), **keys}).stdout
    (first / "fresh.json").write_text(event)
    result = make(first, "invoke", "EVENT=fresh.json", **keys)
    needs_pypi(result)
    response = json.loads(result.stdout.split("\n", 1)[1])
    answer = json.loads(response["body"])
    assert answer["six"] == "1.17.0" and installed_here(first, answer)


def test_make_serve_runs_the_requirements_installed_for_this_machine(built):
    first = built[0]
    keys = {"QSTASH_CURRENT_SIGNING_KEY": KEY, "QSTASH_NEXT_SIGNING_KEY": NEXT}
    port = free_port()
    with running(["make", "-s", "serve"], env={**pip_env(), **keys, "PORT": str(port)},
                 cwd=first, port=port) as process:
        sent = make(first, "send", "URL=http://127.0.0.1:%d/" % port, 'BODY={"job":2}', **keys)
        log = read_log(process)
    assert sent.returncode == 0, sent.stdout + sent.stderr + log
    status, answer = sent.stdout.splitlines()[:2]
    answer = json.loads(answer)
    assert status == "200" and answer["job"] == {"job": 2} and installed_here(first, answer)


def test_an_import_requirements_txt_does_not_install_is_refused(built, tmp_path):
    first = built[0]
    copy = tmp_path / "copy"
    shutil.copytree(first, copy)  # with build/: no pip run
    with open(copy / "lambda_function.py", "a") as source:
        source.write("import yaml\n")
    line = len((copy / "lambda_function.py").read_text().splitlines())
    result = make(copy, "zip", "ARCH=arm64")
    assert result.returncode != 0 and not (copy / "lambda.zip").exists()
    assert result.stderr.splitlines()[0] == (
        "lambda_function.py:%d: cannot import yaml: not in python3.14's standard library, "
        "not in the zip, and requirements.txt installs no such module" % line)


def test_a_requirement_with_no_wheel_for_lambda_stops_the_build(tmp_path):
    folder = project(tmp_path / "project", requirements="six==0.0.0\n")
    result = make(folder, "zip")
    if any(sign in result.stderr for sign in OFFLINE[1:4]):
        need(False, "PyPI is not reachable: %s" % result.stderr[-400:])
    assert result.returncode != 0 and not (folder / "lambda.zip").exists()
    lines = [line for line in result.stderr.splitlines() if not line.startswith("make: ")]
    assert lines[0] == ("requirements.txt: pip could not install it for arm64 python3.14 "
                        "(wheels only):")
    assert any("six==0.0.0" in line for line in lines[1:]) and "Traceback" not in result.stderr


def test_an_unknown_arch_is_one_line(tmp_path):
    folder = project(tmp_path / "project")
    result = make(folder, "zip", "ARCH=sparc")
    assert result.returncode != 0
    assert result.stderr.splitlines()[0] == "ARCH=sparc: Lambda runs arm64 or x86_64"
