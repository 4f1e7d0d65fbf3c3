"""Where a run writes, and what it says while it waits.

- A run writes nothing outside the project: not in the system's temporary folders (pytest's
  tmp_path, tempfile, child processes, Node), not in HOME (npm's and pip's caches). So
  `make distclean` removes everything `make test` made. The Makefile sets the same places
  for make test, bench, stress and template; tests/conftest.py sets them for pytest started
  by hand.
- A long step (building CPython, fetching Pyodide, installing the SAM CLI or an npm peer,
  fetching the emulator) announces itself on the terminal, past pytest's output capture.
- `make clean` keeps what is slow to make again, and says so; `make distclean` removes all.

The first two are checked on one pytest run of their own (tests/probes/: each probe writes or
starts a long step the way the suite does), started as a developer starts pytest, without the
Makefile's variables, in a mount namespace where /tmp and /var/tmp are empty, fresh file
systems, listed when the run ends, and HOME is seen through an overlay that keeps every write
apart. A few seconds, not a whole suite."""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest

import conftest
from conftest import ROOT, need

PROBES = [ROOT / "tests" / "probes" / "writes.py", ROOT / "tests" / "probes" / "long_steps.py"]
# What the Makefile and conftest set, so that the probe run must set them itself.
MADE_BY_THE_CALLER = ("TMPDIR", *conftest.CACHES)
# Runs in the mount namespace: empty /tmp and /var/tmp, HOME as it is but with every write
# going to HOME_WRITES (when this kernel allows an overlay here), the probes' pytest run, then
# a listing of what it left in /tmp and /var/tmp (they end with the namespace).
IN_NAMESPACE = """
mount -t tmpfs probe-tmp /tmp && mount -t tmpfs probe-var-tmp /var/tmp || exit 97
layers="lowerdir=$HOME,upperdir=$HOME_WRITES,workdir=$HOME_WORK"
mount -t overlay probe-home -o "$layers" "$HOME" 2> "$HOME_WRITES.failed" && rm "$HOME_WRITES.failed"
"$@" > "$PROBE_OUTPUT" 2>&1
status=$?
find /tmp /var/tmp -mindepth 1 > "$PROBE_LEFT"
exit $status
"""


@pytest.fixture(scope="module")
def probe_run():
    """The probes' pytest run: its exit status, its terminal output, what it left in /tmp
    and /var/tmp, and what it wrote in HOME (None: no overlay on HOME, so not seen)."""
    need(shutil.which("unshare"), "unshare (util-linux) is needed for a private /tmp")
    namespace = subprocess.run(["unshare", "-rm", "true"], capture_output=True, text=True)
    need(namespace.returncode == 0, "cannot create a mount namespace: %s" % namespace.stderr)
    # The run's reports must be seen from both sides of the namespace: not under /tmp, even
    # when this run's own temporary files are (the failure this test looks for).
    (ROOT / "build").mkdir(exist_ok=True)
    reports = pathlib.Path(tempfile.mkdtemp(prefix="probe-run-", dir=ROOT / "build"))
    yield run_probes(reports)
    shutil.rmtree(reports)


def run_probes(folder):
    """Run the probes as the namespace's only process tree; read what they left."""
    home_writes = folder / "home-writes"
    home_writes.mkdir()
    (folder / "home-work").mkdir()
    env = {name: value for name, value in os.environ.items() if name not in MADE_BY_THE_CALLER}
    env.update(HOME=os.path.expanduser("~"), HOME_WRITES=str(home_writes),
               HOME_WORK=str(folder / "home-work"), PROBE_OUTPUT=str(folder / "output"),
               PROBE_LEFT=str(folder / "left"))
    argv = ["unshare", "-rm", "sh", "-c", IN_NAMESPACE, "probe",
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *map(str, PROBES)]
    status = subprocess.run(argv, cwd=ROOT, env=env, timeout=300).returncode
    assert status != 97, "could not mount a fresh /tmp in the namespace"
    output = (folder / "output").read_text()
    left = (folder / "left").read_text().split()
    overlay_failed = (folder / "home-writes.failed")
    in_home = None
    if not overlay_failed.exists():
        in_home = sorted(str(path.relative_to(home_writes)) for path in home_writes.rglob("*"))
    return {"status": status, "output": output, "left": left, "in_home": in_home,
            "overlay_failed": overlay_failed.read_text() if in_home is None else ""}


def test_a_run_writes_nothing_in_the_system_temporary_folders(probe_run):
    assert probe_run["left"] == []
    assert probe_run["status"] == 0, probe_run["output"][-4000:]


def test_a_run_writes_nothing_in_home(probe_run):
    """npm's cache and log (~/.npm), pip's cache (~/.cache/pip) and anything else."""
    need(probe_run["in_home"] is not None,
         "no overlay on HOME here: %s" % probe_run["overlay_failed"])
    assert probe_run["in_home"] == []
    assert probe_run["status"] == 0, probe_run["output"][-4000:]


def test_long_steps_say_what_they_do_on_the_terminal_past_the_capture(probe_run):
    """Every probe passes, so pytest shows nothing it captured: the lines are on the
    terminal only because they went past the capture."""
    output = probe_run["output"]
    assert probe_run["status"] == 0, output[-4000:]
    assert "captured: pytest keeps this" not in output  # the capture was on
    assert "probe: a long step announces itself" in output
    announced = [line for line in output.splitlines() if "(once; " in line]
    starts = ["building CPython 3.9.2 from source into ",
              "downloading Pyodide 0.27.7 (Python 3.12) from the npm registry into ",
              "installing aws-sam-cli==1.170.0 and cfn-lint==",
              "installing probe-peer from npm into ",
              "downloading the "]
    assert len(announced) == len(starts), announced
    for line, start in zip(announced, starts):
        assert line.lstrip(".").startswith(start), line
        assert "usually" in line, line  # how long it usually takes
    assert output.count("  ...failed after ") == len(starts)


# --- what make sets, and what make clean and make distclean remove ------------------------

def printing_environment():
    """A command that prints the variables a make recipe gets, whatever arguments follow."""
    script = "import json, os, sys; print(json.dumps(dict(os.environ)))"
    return "%s -c '%s'" % (sys.executable, script)


@pytest.mark.parametrize("target", ["test", "bench", "stress", "template"])
def test_make_keeps_temporary_files_and_downloads_inside_the_project(target):
    """Each target's recipe runs with an interpreter that prints its environment instead
    (-o: the prerequisites count as made)."""
    command = printing_environment()
    result = subprocess.run(
        ["make", "-s", "-o", ".venv/.installed", "-o", "zip", target, "VPY=" + command,
         "PYTHON=" + command], cwd=ROOT, capture_output=True, text=True,
        env={"PATH": os.environ["PATH"]})
    assert result.returncode == 0, result.stderr
    environments = [json.loads(line) for line in result.stdout.splitlines()
                    if line.startswith("{")]
    assert environments
    for environment in environments:
        assert environment["TMPDIR"] == str(ROOT / "build" / "tmp")
        assert os.path.isdir(environment["TMPDIR"])
        for variable, folder in conftest.CACHES.items():
            assert environment[variable] == str(folder)


def project_copy(tmp_path):
    """The project's files, without its .git, .venv or build/."""
    copy = tmp_path / "project"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "lambda.zip", "__pycache__", ".hypothesis", ".pytest_cache"))
    return copy


def fill_as_make_test_does(project):
    """What a make test run leaves in the project: each kind of thing, one file of each."""
    made = [".venv/bin/python", "lambda.zip", ".hypothesis/examples/x", "tools/__pycache__/x.pyc",
            "build/peers/cpython-3.9/bin/python3.9", "build/sam-venv/bin/sam",
            "build/cache/npm/_logs/x.log", "build/cache/pip/http/x", "build/tmp/pytest-of-x/y",
            "build/lint-cache/mypy/x", "build/serve-no-bytecode/x", "build/differential.json"]
    for name in made:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text("")
    return made


def test_make_clean_keeps_what_is_slow_to_make_again_and_says_so(tmp_path):
    project = project_copy(tmp_path)
    fill_as_make_test_does(project)
    result = subprocess.run(["make", "-s", "clean"], cwd=project, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    left = sorted(str(path.relative_to(project)) for path in (project / "build").iterdir())
    assert left == ["build/cache", "build/peers", "build/sam-venv"]
    assert not (project / ".venv").exists() and not (project / "lambda.zip").exists()
    assert not (project / "tools" / "__pycache__").exists()
    for kept in ("build/peers", "build/sam-venv", "build/cache", "make distclean"):
        assert kept in result.stdout


def test_make_distclean_removes_everything_make_test_made(tmp_path):
    project = project_copy(tmp_path)
    before = sorted(path.relative_to(project) for path in project.rglob("*"))
    fill_as_make_test_does(project)
    result = subprocess.run(["make", "-s", "distclean"], cwd=project, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert sorted(path.relative_to(project) for path in project.rglob("*")) == before


def test_distclean_removes_everything_git_ignores():
    """What the tests made here, as git sees it (ignored: made, never committed), is among
    what make distclean removes: nothing a run makes in the project outlives distclean."""
    need(shutil.which("git") and (ROOT / ".git").exists(), "git and a clone are needed")
    listed = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=ROOT,
                            capture_output=True, text=True)
    need(listed.returncode == 0, "git status failed: %s" % listed.stderr)
    ignored = [line[3:].rstrip("/") for line in listed.stdout.splitlines()
               if line.startswith("!! ")]
    removed = subprocess.run(["make", "-n", "--no-print-directory", "distclean"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
    removed = removed.split("\n")[0].split()
    assert removed[:2] == ["rm", "-rf"], removed
    assert [path for path in ignored if path not in removed[2:]] == []
