"""ruff and mypy over the shipped file and the tools, with the project's settings (ruff.toml,
mypy.ini): any finding fails `make test`, and the output names the file and line."""
import subprocess
import sys

from conftest import ROOT, need

TARGETS = ["lambda_function.py", "signed_webhooks", "tools"]


def run_tool(argv):
    """(exit status, output) of a tool installed in this interpreter's environment."""
    result = subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True,
                            text=True)
    return result.returncode, result.stdout + result.stderr


def installed(module):
    return subprocess.run([sys.executable, "-c", "import " + module],
                          capture_output=True).returncode == 0


def test_ruff_finds_nothing():
    need(installed("ruff"), "ruff is not installed (make test installs it)")
    status, output = run_tool(["ruff", "check", *TARGETS])
    assert status == 0, output


def test_mypy_finds_nothing():
    need(installed("mypy"), "mypy is not installed (make test installs it)")
    status, output = run_tool(["mypy", *TARGETS])
    assert status == 0, output


def test_the_checks_can_fail(tmp_path):
    """The same settings report a closure over a loop variable, an unsorted import and a
    type error, so a clean run above means something."""
    need(installed("ruff") and installed("mypy"), "ruff and mypy are not installed")
    sample = tmp_path / "sample.py"
    sample.write_text("import sys\nimport os\n\n\n"
                      "def later():\n    return [lambda: i for i in range(3)]\n\n\n"
                      "def length() -> int:\n    return len(os.sep) + sys.maxsize + 'x'\n")
    status, output = run_tool(["ruff", "check", "--no-cache", "--config",
                               str(ROOT / "ruff.toml"), str(sample)])
    assert status == 1 and "I001" in output and "B023" in output, output
    status, output = run_tool(["mypy", str(sample)])
    assert status == 1 and "Unsupported operand types" in output, output
