"""Our accept/reject decisions against the official receivers, on generated cases (random
keys, URLs, bodies, clocks, claim sets and tamperings). Disagreements outside the documented
classes (differential.CLASSES, listed in SECURITY.md) fail the test."""
import collections
import json

import pytest

import attack
import differential
from conftest import ROOT
from peers import npm_install

N = 3000


@pytest.fixture(scope="module")
def results():
    node_dir = npm_install("qstash-js", ROOT / "tests/node/qstash-sdk/package.json")
    cases = differential.cases(attack.seeded(20261122), N)
    node = differential.node_sdk(node_dir, cases, ROOT / "tests/node/qstash_verify.js")
    rows = []
    for case, (node_ok, node_crash) in zip(cases, node):
        py_ok, py_crash = differential.python_sdk(case)
        rows.append((case, differential.ours(case), py_ok, py_crash, node_ok, node_crash))
    return rows


def tally(rows):
    counts = collections.defaultdict(collections.Counter)
    unexplained = []
    for case, we, py, py_crash, node, node_crash in rows:
        for sdk, theirs in (("python", py), ("node", node)):
            if theirs == we:
                counts[sdk]["agree"] += 1
                continue
            name = differential.explain(case, sdk, theirs, we)
            counts[sdk][name or "UNEXPLAINED"] += 1
            if not name:
                unexplained.append((sdk, case.feature, theirs, we))
        counts["python"]["crash"] += py_crash
        counts["node"]["crash"] += node_crash
    return counts, unexplained


def test_every_disagreement_is_a_documented_class(results):
    counts, unexplained = tally(results)
    (ROOT / "build").mkdir(exist_ok=True)
    (ROOT / "build/differential.json").write_text(json.dumps(counts, indent=1))
    assert not unexplained, unexplained[:10]


def test_valid_requests_are_accepted_by_all_three(results):
    valid = [r for r in results if r[0].feature == "valid"]
    assert len(valid) >= N // 3 - 1
    assert all(we and py and node for _, we, py, _, node, _ in valid)


def test_tampered_requests_are_refused_by_us(results):
    tampered = [r for r in results if r[0].feature.startswith("mutation: ")]
    assert tampered and not any(we for _, we, *_ in tampered)
