"""The receiver's layout: the import table in signed_webhooks/__init__.py is the truth, every
module keeps to its row, and optional features cost nothing unless configured.

The user's file (lambda_function.py) is short, `handle` first, and everything it offers
(verify, verify_pusher, SignatureError, the exceptions handle raises) stays importable."""
import ast
import json
import os
import subprocess
import sys

import pytest

import lambda_function
import signed_webhooks
from conftest import KEY, NEXT, ROOT

PACKAGE = ROOT / "signed_webhooks"
MODULES = sorted(path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__")


def import_table():
    """[(module, optional, [modules it may import])] in the docstring's order."""
    lines = signed_webhooks.__doc__.splitlines()
    header = next(index for index, line in enumerate(lines) if line.split()[:3] == [
        "module", "holds", "imports"])
    imports_column = lines[header].index("imports")
    rows = []
    for line in lines[header + 1:]:
        if not line.strip():
            break
        name = line[:imports_column].split()[0] if line[:8].strip() else ""
        allowed = [part.strip() for part in line[imports_column:].split(",") if part.strip()]
        allowed = [part for part in allowed if part != "-"]
        if name:
            optional = line[:imports_column].split()[1:2] == ["*"]
            rows.append((name, optional, allowed))
        else:
            rows[-1][2].extend(allowed)
    return rows


TABLE = import_table()


def imports_of(path):
    """(package modules it imports, top-level names of the other modules it imports)."""
    tree = ast.parse(path.read_text(), feature_version=(3, 9))
    ours, others = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                ours.add(node.module.split(".")[0])
            else:
                ours.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, path
            others.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            others.update(alias.name.split(".")[0] for alias in node.names)
    return ours, others


def test_the_table_names_every_module_once_in_an_order_with_no_upward_import():
    names = [name for name, _, _ in TABLE]
    assert sorted(names) == MODULES and len(set(names)) == len(names)
    for position, (name, _, allowed) in enumerate(TABLE):
        above = set(names[:position])
        assert set(allowed) <= above, (name, set(allowed) - above)


@pytest.mark.parametrize("name, allowed", [(name, allowed) for name, _, allowed in TABLE])
def test_every_module_imports_only_its_row_and_the_standard_library(name, allowed):
    ours, others = imports_of(PACKAGE / (name + ".py"))
    assert ours <= set(allowed), ours - set(allowed)
    assert others <= set(sys.stdlib_module_names), others - set(sys.stdlib_module_names)


def test_the_test_above_can_fail(tmp_path):
    """An import outside a row, and one of a package from PyPI, are both seen."""
    sample = tmp_path / "sample.py"
    sample.write_text("import jwt\nfrom . import dedup\nfrom .store import Store\n")
    assert imports_of(sample) == ({"dedup", "store"}, {"jwt"})


def test_the_package_init_imports_only_the_core_and_its_lazy_names():
    ours, others = imports_of(PACKAGE / "__init__.py")
    optional = {name for name, is_optional, _ in TABLE if is_optional}
    assert others <= set(sys.stdlib_module_names)
    assert ours & optional == {"pusher", "callbacks"}  # inside __getattr__, on first use


def test_each_module_is_a_size_a_reader_holds_at_once():
    for path in PACKAGE.glob("*.py"):
        assert len(path.read_text().splitlines()) <= 320, path.name


# --- Optional features cost nothing unless configured --------------------------------------

def run_fresh(code, **environ):
    """Run `code` in a new interpreter with the project on its path; its last line, parsed."""
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": "%s:%s/tools" % (ROOT, ROOT),
           "PYTHONDONTWRITEBYTECODE": "1", **environ}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


LOADED = "print(json.dumps(sorted(m for m in sys.modules if m.startswith('signed_webhooks.'))))"
DEFAULT_REQUEST = (
    "import json, sys, lambda_events as ev, lambda_function as lf\n"
    "h = ev.qstash_headers(%r, b'{}', 'https://x.example/')\n"
    "answer = lf.lambda_handler(ev.function_url(url='https://x.example/', headers=h, "
    "body=b'{}'), None)\n"
    "assert answer['statusCode'] == 200, answer\n" % KEY)
QSTASH_KEYS = {"QSTASH_CURRENT_SIGNING_KEY": KEY, "QSTASH_NEXT_SIGNING_KEY": NEXT}
CORE = sorted("signed_webhooks." + name for name, optional, _ in TABLE if not optional)


def test_the_default_path_imports_only_the_core_modules():
    assert run_fresh(DEFAULT_REQUEST + LOADED, **QSTASH_KEYS) == CORE


def test_configured_features_are_imported_at_init_before_any_request():
    loaded = run_fresh("import json, sys, lambda_function\n" + LOADED, **QSTASH_KEYS,
                       DEDUP_TABLE="dedup", METRICS_NAMESPACE="Webhooks", SOKETI_SECRET="s" * 20)
    optional = {"signed_webhooks." + name for name, is_optional, _ in TABLE if is_optional}
    assert set(loaded) - set(CORE) == optional - {"signed_webhooks.callbacks"}


def test_a_callback_body_is_read_only_when_handle_asks_for_it():
    body = json.dumps({"status": 200, "sourceMessageId": "msg_1", "url": "https://x.example/",
                       "method": "POST", "body": "", "sourceBody": ""}).encode()
    request = (
        "import json, sys, lambda_events as ev, lambda_function as lf\n"
        "seen = []\n"
        "lf.handle = lambda message: seen.append('signed_webhooks.callbacks' in sys.modules)"
        " or (seen.append(message.callback.source_message_id) if ASK else None)\n"
        "h = ev.qstash_headers(%r, %r, 'https://x.example/')\n"
        "lf.lambda_handler(ev.function_url(url='https://x.example/', headers=h, body=%r), None)\n"
        "print(json.dumps(seen + ['signed_webhooks.callbacks' in sys.modules]))\n"
        % (KEY, body, body))
    assert run_fresh("ASK = False\n" + request, **QSTASH_KEYS) == [False, False]
    assert run_fresh("ASK = True\n" + request, **QSTASH_KEYS) == [False, "msg_1", True]


# --- The user's file ----------------------------------------------------------------------------

def test_the_users_file_is_short_with_handle_first():
    source = (ROOT / "lambda_function.py").read_text()
    tree = ast.parse(source)
    functions = [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]
    assert functions[:2] == ["handle", "lambda_handler"]
    assert len(source.splitlines()) <= 70
    assert ast.get_docstring(tree)


def test_the_names_code_and_docs_use_stay_importable_from_the_users_file():
    from lambda_function import (Message, NonRetryableError, Reject, RetryLater,  # noqa: F401
                                 SignatureError, verify, verify_pusher)
    assert verify is signed_webhooks.qstash.verify
    assert verify_pusher is signed_webhooks.pusher.verify_pusher
    with pytest.raises(AttributeError):
        lambda_function.no_such_name  # noqa: B018


def test_a_replaced_handle_is_the_one_that_runs(monkeypatch, qstash_env, call):
    import lambda_events as ev
    monkeypatch.setattr(lambda_function, "handle", lambda message: {"replaced": True})
    headers = ev.qstash_headers(KEY, b"{}", "https://x.example/")
    response, _ = call(ev.function_url(url="https://x.example/", headers=headers, body=b"{}"))
    assert json.loads(response["body"]) == {"replaced": True}


def test_a_traceback_from_handle_lists_every_frame_outside_the_receiver(
        monkeypatch, qstash_env, call, tmp_path):
    """handle calls a helper module of the user's own, which fails: the log line's traceback
    shows handle and the helper's frames (file:line in function), none of the receiver's."""
    import lambda_events as ev
    (tmp_path / "billing_helper.py").write_text(
        "def charge(amount):\n    return amount / 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import billing_helper

    def handle(message):
        return billing_helper.charge(message.json["amount"])
    monkeypatch.setattr(lambda_function, "handle", handle)
    body = b'{"amount": 7}'
    headers = ev.qstash_headers(KEY, body, "https://x.example/")
    response, log = call(ev.function_url(url="https://x.example/", headers=headers, body=body))
    assert response["statusCode"] == 500 and "ZeroDivisionError" in log["reason"]
    frames = log["traceback"]
    assert frames[-1] == "billing_helper.py:2 in charge", frames
    assert any(frame.startswith("test_layout.py:") and frame.endswith(" in handle")
               for frame in frames), frames
    package_files = {path.name for path in PACKAGE.glob("*.py")}
    assert not [frame for frame in frames if frame.split(":")[0] in package_files], frames
