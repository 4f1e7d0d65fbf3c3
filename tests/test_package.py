"""What ships: lambda.zip holds lambda_function.py, the user's own modules and the receiver,
reproducibly; the shipped code imports only the standard library and parses as Python 3.9;
an extracted zip answers a signed request; the sample events do what README says."""
import ast
import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
import zipfile

import pytest

import lambda_events
import lambda_function
from conftest import KEY, NEXT, ROOT, need
from make_events import SAMPLE_QSTASH_KEYS, SAMPLE_SOKETI, SAMPLE_TIME

EVENTS = sorted((ROOT / "events").glob("*.json"))
ALB_EVENTS = [path for path in EVENTS if path.name.startswith("alb")]
SAMPLE_ALB_URL = "https://hooks.example.com/hooks/qstash?tenant=7"  # README, "Sample events"


def make_zip(tmp_path, name):
    subprocess.run(["make", "-s", "zip"], cwd=ROOT, check=True, capture_output=True)
    target = tmp_path / name
    target.write_bytes((ROOT / "lambda.zip").read_bytes())
    return target


def receiver_files():
    return sorted(path.relative_to(ROOT).as_posix() for path in (ROOT / "signed_webhooks").glob(
        "*.py"))


def test_make_zip_is_reproducible_and_holds_the_handler_and_the_receiver(tmp_path):
    first, second = make_zip(tmp_path, "a.zip"), make_zip(tmp_path, "b.zip")
    assert hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(
        second.read_bytes()).digest()
    with zipfile.ZipFile(first) as archive:
        assert archive.namelist() == ["lambda_function.py", *receiver_files()]
        for info in archive.infolist():
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert (info.external_attr >> 16) & 0o777 == 0o644
            assert archive.read(info) == (ROOT / info.filename).read_bytes()


def test_the_users_own_modules_ship_and_tools_tests_and_bytecode_never(tmp_path):
    """A copy of the project with a helper module and a helper package of the user's."""
    project = tmp_path / "project"
    shutil.copytree(ROOT, project, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "node_modules", "lambda.zip"))
    (project / "helpers.py").write_text("VALUE = 7\n")
    (project / "billing").mkdir()
    (project / "billing" / "__init__.py").write_text("")
    (project / "billing" / "rates.json").write_text("{}")
    (project / "billing" / "__pycache__").mkdir()
    (project / "billing" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"")
    (project / "notes").mkdir()  # a folder that is not a package
    (project / "notes" / "todo.py").write_text("")
    assert (project / "pyproject.toml").is_file()  # what pip builds the wheel from ...
    (project / "dist").mkdir()  # ... and what building it can leave
    (project / "dist" / "signed_webhooks-1.0.0-py3-none-any.whl").write_bytes(b"PK")
    (project / "signed_webhooks.egg-info").mkdir()
    (project / "signed_webhooks.egg-info" / "PKG-INFO").write_text("Name: signed-webhooks\n")
    (project / "dist" / "__init__.py").write_text("")  # even looking like a package
    subprocess.run([sys.executable, "tools/build_zip.py", "lambda.zip"], cwd=project,
                   check=True, capture_output=True)
    with zipfile.ZipFile(project / "lambda.zip") as archive:
        names = archive.namelist()
    assert names == ["billing/__init__.py", "billing/rates.json", "helpers.py",
                     "lambda_function.py", *receiver_files()]


def test_the_functions_python_and_machine_are_one_setting_with_template_yaml():
    """make zip, make create and the template build for, and deploy on, the same runtime
    and the same default machine."""
    import build_zip
    import template as sam_template
    need(importlib.util.find_spec("cfnlint"), "cfn-lint is not installed (make test does)")
    template = sam_template.load()
    assert template["Globals"]["Function"]["Runtime"] == build_zip.RUNTIME
    architecture = template["Parameters"]["Architecture"]
    assert architecture["Default"] == build_zip.DEFAULT_ARCH
    assert sorted(architecture["AllowedValues"]) == sorted(build_zip.ARCHITECTURES)


def test_shipped_code_imports_only_the_standard_library_and_parses_as_python_3_9():
    local = {"signed_webhooks"}
    for path in [ROOT / "lambda_function.py", *sorted((ROOT / "signed_webhooks").glob("*.py"))]:
        tree = ast.parse(path.read_text(), feature_version=(3, 9))
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
        assert imported <= set(sys.stdlib_module_names) | local, (path.name, imported)


def test_an_extracted_zip_answers_a_signed_request_in_a_bare_interpreter(tmp_path):
    """No site-packages, nothing but the zip's contents on the path, as in the runtime."""
    with zipfile.ZipFile(make_zip(tmp_path, "l.zip")) as archive:
        archive.extractall(tmp_path / "task")
    url = "https://abc123.lambda-url.us-east-1.on.aws/jobs"
    event = lambda_events.function_url(url=url, body=b'{"job":1}', headers=lambda_events.
                                       qstash_headers(KEY, b'{"job":1}', url))
    code = ("import json, sys; sys.path.insert(0, '.'); import lambda_function as f; "
            "print(json.dumps([f.lambda_handler(json.loads(sys.argv[1]), None)['statusCode'], "
            "f.lambda_handler({}, None)['statusCode']]))")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code, json.dumps(event)],
                         cwd=tmp_path / "task", capture_output=True, text=True, check=True,
                         env={"QSTASH_CURRENT_SIGNING_KEY": KEY, "QSTASH_NEXT_SIGNING_KEY": NEXT})
    assert json.loads(out.stdout.splitlines()[-1]) == [200, 400]


@pytest.fixture
def sample_keys(monkeypatch):
    """The sample keys README gives for events/."""
    monkeypatch.setenv("QSTASH_CURRENT_SIGNING_KEY", SAMPLE_QSTASH_KEYS[0])
    monkeypatch.setenv("QSTASH_NEXT_SIGNING_KEY", SAMPLE_QSTASH_KEYS[1])
    monkeypatch.setenv("SOKETI_KEY", SAMPLE_SOKETI[0])
    monkeypatch.setenv("SOKETI_SECRET", SAMPLE_SOKETI[1])


@pytest.fixture
def sample_env(sample_keys, monkeypatch, request):
    """The sample keys, and for the ALB events the destination README gives: behind an ALB
    the URL is never derived from the caller's Host header."""
    if request.getfixturevalue("path") in ALB_EVENTS:
        monkeypatch.setenv("QSTASH_DESTINATION_URL", SAMPLE_ALB_URL)


@pytest.mark.parametrize("path", EVENTS, ids=lambda p: p.name)
def test_sample_event_is_accepted_at_its_signing_time(path, sample_env, clock, call):
    clock(SAMPLE_TIME + 10)
    response, log = call(json.loads(path.read_text()))
    assert response["statusCode"] == 200, log


@pytest.mark.parametrize("path", EVENTS, ids=lambda p: p.name)
def test_sample_event_today_is_401_for_its_age(path, sample_env, call):
    response, log = call(json.loads(path.read_text()))
    assert response["statusCode"] == 401
    assert "expired" in log["reason"] or "time_ms" in log["reason"]


@pytest.mark.parametrize("path", ALB_EVENTS, ids=lambda p: p.name)
def test_sample_alb_event_without_a_destination_is_500_naming_it(path, sample_keys, clock,
                                                                 call):
    clock(SAMPLE_TIME + 10)
    response, log = call(json.loads(path.read_text()))
    assert response["statusCode"] == 500 and "QSTASH_DESTINATION_URL" in response["body"]


@pytest.mark.parametrize("path", EVENTS, ids=lambda p: p.name)
def test_sample_event_without_configuration_is_500(path, call):
    response, _ = call(json.loads(path.read_text()))
    assert response["statusCode"] == 500 and "QSTASH_CURRENT_SIGNING_KEY" in response["body"]


def test_sample_events_are_what_the_generator_writes(tmp_path):
    before = {p.name: p.read_bytes() for p in EVENTS}
    subprocess.run([sys.executable, "make_events.py"], cwd=ROOT / "tools", check=True,
                   capture_output=True)
    assert {p.name: p.read_bytes() for p in sorted((ROOT / "events").glob("*.json"))} == before


def test_help_lists_every_target():
    out = subprocess.run(["make", "-s"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    makefile = (ROOT / "Makefile").read_text()
    targets = {line.split(":")[0] for line in makefile.splitlines()
               if "## " in line and not line.startswith("\t")}
    assert targets and all(f"make {t}" in out for t in targets)
    assert lambda_function.__doc__  # the module explains itself


def test_fresh_sample_event_is_accepted_now(monkeypatch, call):
    """README: `make_events.py --fresh function-url` prints an event valid for five minutes."""
    own_key, own_next = "sig_MyOwnCurrentKey0123456789", "sig_MyOwnNextKey0123456789ab"
    env = {**__import__("os").environ, "QSTASH_CURRENT_SIGNING_KEY": own_key}
    out = subprocess.run([sys.executable, "make_events.py", "--fresh", "function-url"],
                         cwd=ROOT / "tools", env=env, capture_output=True, text=True, check=True)
    monkeypatch.setenv("QSTASH_CURRENT_SIGNING_KEY", own_key)
    monkeypatch.setenv("QSTASH_NEXT_SIGNING_KEY", own_next)
    response, log = call(json.loads(out.stdout))
    assert response["statusCode"] == 200, log
