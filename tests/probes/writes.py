"""Run by tests/test_workspace.py as a pytest run of its own (pytest collects this file only
when named): each test writes the way the suite does, through pytest's tmp_path, tempfile,
a child process, npm and Node, and says something through progress.say, so that the outer
test can look at what landed outside the project and at what reached the terminal."""
import os
import shutil
import subprocess
import sys
import tempfile

import progress
from conftest import ROOT, need
from peers import read_log, running

BUILD_TMP = ROOT / "build" / "tmp"
ANNOUNCEMENT = "probe: a long step announces itself"


def test_tmp_path_and_its_factory(tmp_path, tmp_path_factory):
    (tmp_path / "file").write_text("x")
    (tmp_path_factory.mktemp("shared") / "file").write_text("x")
    assert tmp_path.is_relative_to(BUILD_TMP)


def test_tempfile_in_this_process():
    folder = tempfile.mkdtemp()
    with tempfile.NamedTemporaryFile() as named:
        assert named.name.startswith(str(BUILD_TMP))
    assert folder.startswith(str(BUILD_TMP))
    os.rmdir(folder)


def test_a_child_process_and_a_peer_log():
    """A child's own temporary file, written while peers.running keeps its log in a
    temporary file too."""
    script = "import tempfile; print(tempfile.mkdtemp())"
    with running([sys.executable, "-c", script]) as process:
        process.wait(30)
        folder = read_log(process).strip()
    assert folder.startswith(str(BUILD_TMP)), folder
    os.rmdir(folder)


def test_npm_and_node(tmp_path):
    """npm writes a debug log into its cache on every run, offline or not; Node's
    os.tmpdir() is where its programs put temporary files."""
    need(shutil.which("node") and shutil.which("npm"), "Node.js and npm are needed")
    (tmp_path / "package.json").write_text('{"name": "probe", "version": "1.0.0"}')
    subprocess.run(["npm", "install", "--offline", "--no-audit", "--no-fund",
                    "--loglevel=error"], cwd=tmp_path, check=True, capture_output=True)
    made = subprocess.run(["node", "-e", "const fs = require('fs'), os = require('os');"
                           "console.log(fs.mkdtempSync(os.tmpdir() + '/probe-'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    assert made.startswith(str(BUILD_TMP)), made
    os.rmdir(made)


def test_a_long_step_is_announced_on_the_terminal():
    """A passing test: pytest shows nothing it captured, so the line can only reach the
    terminal past the capture."""
    progress.say(ANNOUNCEMENT)
    print("captured: pytest keeps this")
