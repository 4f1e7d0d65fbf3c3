"""soketi for real, in a network namespace that has only loopback: two apps (one with the
handler's secret, one with another), a pusher-js client joining and leaving channels, and
soketi's webhooks delivered both over HTTP (to make serve) and as Lambda triggers (through
AWS's runtime emulator). The handler must accept every webhook of the first app and refuse
every one of the second, on both paths."""
import json
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, need
from peers import build_task, npm_install, rie_binary


def install_soketi():
    return npm_install("soketi", ROOT / "tests/soketi/package.json")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    soketi = install_soketi()
    need(shutil.which("unshare") and shutil.which("ip"),
         "unshare and ip are needed to keep soketi inside a loopback-only network namespace")
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True)
    need(probe.returncode == 0, "cannot create a network namespace: %s" % probe.stderr[-200:])
    task = build_task(tmp_path_factory.mktemp("soketi"))
    scenario = ROOT / "tests/soketi/scenario.py"
    result = subprocess.run(["unshare", "-rn", sys.executable, str(scenario),
                             str(ROOT), str(soketi), str(rie_binary()), str(task)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout)
    assert data["error"] is None, (data["error"], data["client_tail"], data["soketi_tail"][-2000:])
    return data


def by_app(records):
    return {app: [r for r in records if r.get("path") == "/" + app] for app in ("app-1", "app-2")}


def test_http_webhooks_from_soketi_are_verified(report):
    apps = by_app(report["serve"])
    assert len(apps["app-1"]) >= 5, report["serve_tail"]
    assert all(r["status"] == 200 and r["source"] == "soketi" for r in apps["app-1"])


def test_http_webhooks_signed_with_another_secret_are_refused(report):
    apps = by_app(report["serve"])
    assert len(apps["app-2"]) == len(apps["app-1"])
    assert all(r["status"] == 401 and "X-Pusher-Signature" in r["reason"] for r in apps["app-2"])


def test_lambda_trigger_webhooks_from_soketi_are_verified(report):
    """The direct invocation carries no body: the handler rebuilt Node's JSON.stringify of
    payloads holding a client event with 1e-7, 0.000025, U+2028 and an emoji."""
    records = report["lambda"]
    accepted = [r for r in records if r["status"] == 200]
    refused = [r for r in records if r["status"] == 401]
    assert all(r["shape"] == "soketi-invoke" for r in records)
    assert len(accepted) == len(by_app(report["serve"])["app-1"]), report["lambda_tail"]
    assert len(refused) == len(accepted) and len(accepted) + len(refused) == len(records)
    assert "panic" not in report["lambda_tail"] and "errorMessage" not in report["lambda_tail"]
