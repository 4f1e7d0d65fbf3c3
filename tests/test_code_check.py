"""make zip refuses what Lambda could not load (tools/code_check.py): a file that does not
compile, an import nothing shipped provides. Python itself is the oracle: each verdict is
compared with importing the same code in a bare interpreter, and the standard library the
check assumes with the function's Python's own list. make invoke, make serve and make
deploy print the very lines make zip prints."""
import json
import os
import shutil
import subprocess
import sys

import pytest

import build_zip
import code_check
import cpython
import pyodide
from conftest import KEY, NEXT, ROOT, need
from peers import free_port, read_log, running


def small_project(folder, handler_source):
    """A folder holding `handler_source` as lambda_function.py, a package `billing` (with a
    module `rates`) and a folder `notes` that is not a package."""
    folder.mkdir()
    (folder / "lambda_function.py").write_text(handler_source)
    (folder / "billing").mkdir()
    (folder / "billing" / "__init__.py").write_text("")
    (folder / "billing" / "rates.py").write_text("RATE = 7\n")
    (folder / "notes").mkdir()
    (folder / "notes" / "todo.py").write_text("")
    return folder


def python_imports(folder):
    """None when a bare interpreter (no site-packages) imports lambda_function in `folder`,
    else the exception's type name."""
    code = ("import sys\ntry:\n    import lambda_function\nexcept BaseException as error:\n"
            "    print(type(error).__name__)\nelse:\n    print('None')\n")
    result = subprocess.run([sys.executable, "-S", "-E", "-s", "-c", code], cwd=folder,
                            capture_output=True, text=True, check=True)
    answer = result.stdout.strip().splitlines()[-1]
    return None if answer == "None" else answer


# What Python 3.11 and Lambda's 3.14 agree on (this suite runs on 3.11): each source is
# refused by the check exactly when importing it fails.
AGREED = {
    "stdlib": "import json\nfrom collections import abc\n",
    "not installed": "import yaml\n",
    "your package's module": "import billing.rates\nfrom billing.rates import RATE\n",
    "from your package": "from billing import rates\n",
    "no such module in your package": "import billing.missing\n",
    "a module is not a package": "import billing.rates.deeper\n",
    "optional": "try:\n    import yaml\nexcept ImportError:\n    yaml = None\n",
    "optional, in a tuple": "try:\n    import yaml\nexcept (ValueError, ModuleNotFoundError):\n"
                            "    yaml = None\n",
    "optional, bare except": "try:\n    import yaml\nexcept:\n    yaml = None\n",
    "caught as something else": "try:\n    import yaml\nexcept ValueError:\n    yaml = None\n",
    "its fallback is missing": "try:\n    import yaml\nexcept ImportError:\n"
                               "    import ruamel\n",
    "the else of a try": "try:\n    import json\nexcept ImportError:\n    pass\nelse:\n"
                         "    import yaml\n",
    "type checking only": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                          "    import yaml\n",
    "type checking only, else": "import typing\nif typing.TYPE_CHECKING:\n    import yaml\n"
                                "else:\n    import json\n",
    "run as a script only": "if __name__ == '__main__':\n    import yaml\n",
    "relative import outside a package": "from . import rates\n",
    "syntax": "def handle(message:\n    return 1\n",
    "what only the compiler refuses": "return 1\n",
    "a bad escape is only a warning": "PATTERN = '\\d'\n",
    "null byte": "x = 1\0\n",
}


@pytest.mark.parametrize("case", AGREED)
def test_refused_exactly_when_python_cannot_import_it(tmp_path, case):
    folder = small_project(tmp_path / "project", AGREED[case])
    problems = build_zip.code_problems(folder, None)
    failure = python_imports(folder)
    assert bool(problems) == bool(failure), (problems, failure)
    if failure:
        assert len(problems) == 1 and str(problems[0]).startswith("lambda_function.py:")
        assert problems[0].error_type == ("Runtime.UserCodeSyntaxError"
                                          if failure in ("SyntaxError", "ValueError")
                                          else "Runtime.ImportModuleError"), failure


def test_each_problem_is_one_line_naming_the_file_the_line_and_the_module(tmp_path):
    source = ("import json\n"
              "import yaml\n"
              "from billing import rates\n"
              "import billing.missing\n"
              "import notes.todo\n"
              "from . import nothing\n")
    folder = small_project(tmp_path / "project", source)
    (folder / "billing" / "__init__.py").write_text("from .rates import RATE\n"
                                                    "from .gone import X\n"
                                                    "from ... import far\n")
    lines = [str(problem) for problem in build_zip.code_problems(folder, None)]
    assert lines == [
        "billing/__init__.py:2: cannot import .gone: billing has no module gone",
        "billing/__init__.py:3: cannot import ...: relative import beyond the top-level "
        "package",
        "lambda_function.py:2: cannot import yaml: not in python3.14's standard library, not "
        "in the zip, and no requirements.txt installs it",
        "lambda_function.py:4: cannot import billing.missing: billing has no module missing",
        "lambda_function.py:5: cannot import notes.todo: notes/ has no __init__.py, so make "
        "zip does not ship it (a folder ships as a package)",
        "lambda_function.py:6: cannot import .: relative import in a module outside any "
        "package"]


def test_imports_inside_functions_count_even_inside_a_try(tmp_path):
    """A function's imports run when it is called: a try around its def guards nothing."""
    source = ("try:\n    def later():\n        import yaml\nexcept ImportError:\n    pass\n"
              "def handle(message):\n    try:\n        import ujson\n    except ImportError:\n"
              "        ujson = None\n")
    folder = small_project(tmp_path / "project", source)
    lines = [str(problem) for problem in build_zip.code_problems(folder, None)]
    assert len(lines) == 1 and lines[0].startswith("lambda_function.py:3: cannot import yaml")


def test_the_standard_library_is_the_functions_pythons(tmp_path):
    """cgi and imghdr left in 3.13; annotationlib and compression came in 3.14. (Their
    lists, per version, are checked against real interpreters below.)"""
    source = "import annotationlib\nimport compression\nimport tomllib\nimport cgi\nimport imghdr\n"
    folder = small_project(tmp_path / "project", source)
    assert [str(problem) for problem in build_zip.code_problems(folder, None)] == [
        "lambda_function.py:4: cannot import cgi: it left the standard library in Python 3.13",
        "lambda_function.py:5: cannot import imghdr: it left the standard library in Python "
        "3.13"]


def test_newer_syntax_is_read_as_the_newest_this_interpreter_knows(tmp_path):
    folder = small_project(tmp_path / "project", "type Rate = int\n")  # Python 3.12 syntax
    lines = [str(problem) for problem in build_zip.code_problems(folder, None)]
    if sys.version_info >= (3, 12):
        assert lines == []
    else:
        assert len(lines) == 1 and lines[0].startswith("lambda_function.py:1: SyntaxError: ")
        assert lines[0].endswith("(read as Python %d.%d; PYTHON=python3.14 reads it as the "
                                 "function does)" % sys.version_info[:2])


def public(names):
    return sorted(name for name in names if not name.startswith("_"))


def test_the_standard_library_lists_match_python_3_14_itself():
    """The function's Python, run here by Pyodide: its own sys.stdlib_module_names."""
    try:
        argv = pyodide.command("3.14", ROOT / "requirements-compat.txt", "-c",
                               "import sys, json; print(json.dumps(sorted("
                               "sys.stdlib_module_names)))")
    except RuntimeError as error:
        need(False, str(error))
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    need(result.returncode == 0, "Pyodide 3.14 did not run: %s" % result.stderr[-500:])
    real = json.loads(result.stdout.strip().splitlines()[-1])
    assert public(code_check.stdlib_of((3, 14))) == public(real)


def test_the_standard_library_is_found_on_python_3_9_too():
    """Python 3.9 has no sys.stdlib_module_names: the check lists its library's folders.
    Compared with this interpreter's list, moved back to 3.9 (Windows-only modules apart)."""
    try:
        python = cpython.build("3.9")
    except (RuntimeError, OSError, subprocess.CalledProcessError) as error:
        need(False, "Python 3.9 could not be built: %s" % error)
    code = ("import json, code_check; "
            "print(json.dumps(sorted(code_check.this_interpreters_stdlib())))")
    result = subprocess.run([str(python), "-E", "-s", "-c", code], cwd=ROOT / "tools",
                            capture_output=True, text=True, check=True)
    found = set(public(json.loads(result.stdout)))
    expected = set(public(sys.stdlib_module_names)) - {"tomllib"}
    expected |= {"formatter", "parser", "symbol", "binhex"}  # gone in 3.10 and 3.11
    windows_only = {"msilib", "msvcrt", "nt", "winreg", "winsound"}
    assert expected - windows_only <= found


# --- make zip, make invoke, make serve and make deploy: the same line ---------------------

def project_copy(folder):
    """What make needs to run in a copy of the project."""
    folder.mkdir()
    for name in ("lambda_function.py", "Makefile"):
        shutil.copy(ROOT / name, folder / name)
    for name in ("signed_webhooks", "tools", "events"):
        shutil.copytree(ROOT / name, folder / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def make(folder, *args, **env):
    return subprocess.run(["make", "-s", *args], cwd=folder, capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"], **env})


def ours(stderr):
    """stderr without make's own closing line."""
    return [line for line in stderr.splitlines() if not line.startswith("make: ")]


@pytest.fixture
def broken(tmp_path):
    """A project whose handle imports a module nothing ships, after a good zip was built."""
    folder = project_copy(tmp_path / "project")
    assert make(folder, "zip").returncode == 0
    with open(folder / "lambda_function.py", "a") as source:
        source.write("\nimport pricing_engine  # not shipped\n")
    return folder


def test_make_zip_refuses_in_one_line_and_leaves_no_zip(broken):
    result = make(broken, "zip")
    line = len((broken / "lambda_function.py").read_text().splitlines())
    assert result.returncode != 0 and result.stdout == ""
    assert ours(result.stderr) == [
        "lambda_function.py:%d: cannot import pricing_engine: not in python3.14's standard "
        "library, not in the zip, and no requirements.txt installs it" % line]
    assert list(broken.glob("lambda.zip*")) == []  # not even the zip built before


def test_make_invoke_and_make_deploy_print_make_zips_line(broken):
    expected = ours(make(broken, "zip").stderr)
    invoked = make(broken, "invoke", "EVENT=events/function-url.json")
    assert invoked.returncode != 0 and invoked.stdout == ""
    assert ours(invoked.stderr) == expected
    deployed = make(broken, "deploy", "FUNCTION=webhook")  # make zip runs first, and stops it
    assert deployed.returncode != 0 and ours(deployed.stderr) == expected
    assert "Traceback" not in invoked.stderr + deployed.stderr


def test_make_serve_answers_502_and_prints_make_zips_line(broken):
    expected = ours(make(broken, "zip").stderr)
    port = free_port()
    env = {"PATH": os.environ["PATH"], "PORT": str(port), "QSTASH_CURRENT_SIGNING_KEY": KEY,
           "QSTASH_NEXT_SIGNING_KEY": NEXT}
    with running(["make", "-s", "serve"], env=env, cwd=broken, port=port) as process:
        status = subprocess.run(
            [sys.executable, "-c", "import urllib.request, urllib.error\ntry:\n"
             "    urllib.request.urlopen('http://127.0.0.1:%d/', b'{}', timeout=30)\n"
             "except urllib.error.HTTPError as error:\n    print(error.code)\n" % port],
            capture_output=True, text=True, check=True).stdout.strip()
        log = read_log(process)
    assert status == "502"
    assert ["serve: " + line for line in expected] == [
        line for line in log.splitlines() if line.startswith("serve: lambda_function.py:")]
    assert "[ERROR] Runtime.ImportModuleError: Unable to import module 'lambda_function': " \
           "No module named 'pricing_engine'" in log
    assert "Traceback" not in log


def test_make_invoke_reports_a_syntax_error_as_make_zip_does(tmp_path):
    folder = project_copy(tmp_path / "project")
    with open(folder / "lambda_function.py", "a") as source:
        source.write("\ndef handle(message:\n")
    zipped = make(folder, "zip")
    invoked = make(folder, "invoke", "EVENT=events/function-url.json")
    assert zipped.returncode != 0 and invoked.returncode != 0
    assert len(ours(zipped.stderr)) == 1 and ours(invoked.stderr) == ours(zipped.stderr)
    try:  # the line is Python's own verdict
        compile((folder / "lambda_function.py").read_text(), "lambda_function.py", "exec")
    except SyntaxError as error:
        assert ours(zipped.stderr)[0].startswith("lambda_function.py:%d: SyntaxError: %s"
                                                 % (error.lineno, error.msg))


def test_make_invoke_shows_an_error_raised_while_loading_without_its_own_frames(tmp_path):
    folder = project_copy(tmp_path / "project")
    with open(folder / "lambda_function.py", "a") as source:
        source.write("\nRATE = {}['missing']\n")
    invoked = make(folder, "invoke", "EVENT=events/function-url.json")
    assert invoked.returncode == 2 and invoked.stdout == ""
    assert invoked.stderr.startswith("make invoke: lambda_function.py does not load:\n")
    assert "KeyError: 'missing'" in invoked.stderr and "lambda_function.py" in invoked.stderr
    assert "tools/invoke.py" not in invoked.stderr and "importlib" not in invoked.stderr
