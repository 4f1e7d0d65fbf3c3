"""Run by tests/test_workspace.py with tests/probes/writes.py: each long step of a first
`make test` or `make template`, started for real where it has nothing to reuse (an empty
folder) and pointed at something that fails at once (a closed loopback port, a missing
file), so that it announces itself and then fails within a second or two. The outer test
reads the announcements on this run's terminal."""
import socket

import pytest

import cpython
import peers
import pyodide
import rie
import template


@pytest.fixture
def closed_url():
    """http://127.0.0.1:PORT/ with nothing listening there."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return "http://127.0.0.1:%d/" % port


def test_building_cpython(monkeypatch, tmp_path, closed_url):
    monkeypatch.setattr(cpython, "PEERS", tmp_path)
    monkeypatch.setattr(cpython, "POOL", closed_url)
    with pytest.raises(RuntimeError, match="could not download"):
        cpython.build("3.9")


def test_fetching_pyodide(monkeypatch, tmp_path, closed_url):
    monkeypatch.setattr(pyodide, "PEERS", tmp_path)
    monkeypatch.setattr(pyodide, "TARBALL", closed_url + "pyodide-%s.tgz")
    with pytest.raises(RuntimeError, match="could not download"):
        pyodide.fetch("3.12")


def test_installing_the_sam_cli(monkeypatch, tmp_path):
    (tmp_path / "a-file").write_text("")  # no venv can be made under a file
    monkeypatch.setattr(template, "SAM_VENV", tmp_path / "a-file" / "sam-venv")
    with pytest.raises(RuntimeError, match="could not create the venv"):
        template.sam_venv_bin()


def test_installing_an_npm_peer(monkeypatch, tmp_path):
    monkeypatch.setattr(peers, "PEERS", tmp_path / "peers")
    package_json = tmp_path / "package.json"
    package_json.write_text("{not JSON")  # npm stops at once, before any download
    with pytest.raises((pytest.skip.Exception, pytest.fail.Exception)):
        peers.npm_install("probe-peer", package_json)


def test_fetching_the_emulator(monkeypatch, tmp_path):
    monkeypatch.setattr(peers, "PEERS", tmp_path)
    monkeypatch.setattr(rie, "PEERS", tmp_path)
    monkeypatch.setattr(rie, "SAM_CLI", str(tmp_path / "aws_sam_cli-0-py3-none-any.whl"))
    with pytest.raises((pytest.skip.Exception, pytest.fail.Exception)):
        peers.rie_binary()
