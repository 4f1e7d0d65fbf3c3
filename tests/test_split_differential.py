"""The receiver moved from one file into a package without changing what it answers.

tests/fixtures/split-differential.json.gz was recorded on the single-file handler (commit
4255623) by tests/split_recording.py: every call the trust, AWS-sample-event, sample-event,
handler, shape, callback and metrics tests made with the default `handle`. Each record is
replayed here under the same configuration, clock and request id, and must give the same
status, headers, body and log line (timing fields aside)."""
import collections
import contextlib
import gzip
import io
import json
import os
import time
import types

import pytest

import lambda_function
from conftest import ROOT
from split_recording import RELEVANT, comparable_log

RECORDING = ROOT / "tests/fixtures/split-differential.json.gz"
RECORDS = json.loads(gzip.decompress(RECORDING.read_bytes()))["records"]
# Records whose answer changed on purpose after the split, by the issue that changed it:
# {(test, index among that test's records): why}. Each is still replayed and must differ.
CHANGED_ON_PURPOSE: dict = {}


def replay(record, monkeypatch):
    for name in list(os.environ):
        if any(part in name for part in RELEVANT):
            monkeypatch.delenv(name)
    for name, value in record["environ"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(time, "time", lambda: record["now"])
    context = types.SimpleNamespace(aws_request_id=record["request_id"]) \
        if record["request_id"] else None
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        response = lambda_function.lambda_handler(record["event"], context)
    log = json.loads(output.getvalue().strip().splitlines()[-1])
    return {"response": response, "log": comparable_log(log)}


def keyed(records):
    seen = collections.Counter()
    for record in records:
        yield (record["test"], seen[record["test"]]), record
        seen[record["test"]] += 1


# A published development key's 500 used to suggest ALLOW_PUBLIC_DEV_KEYS=1, which make create
# and make deploy refuse; it now says "use your own key", the advice every tool accepts.
OLD_DEV_KEY_ADVICE = "use your own, or set ALLOW_PUBLIC_DEV_KEYS=1 for local tests only"
CHANGED_ON_PURPOSE.update({key: "the dev-key advice" for key, record in keyed(RECORDS)
                           if OLD_DEV_KEY_ADVICE in record["response"]["body"]})


@pytest.fixture
def default_handle(monkeypatch):
    """The recording was made with the default handle: replay with the default handle."""
    assert lambda_function.handle.__module__ == "lambda_function"


def test_every_recorded_answer_is_given_again(default_handle, monkeypatch):
    differences = []
    for key, record in keyed(RECORDS):
        with monkeypatch.context() as patch:
            got = replay(record, patch)
        expected = {"response": record["response"], "log": record["log"]}
        if (got == expected) == (key in CHANGED_ON_PURPOSE):
            differences.append((key, expected, got))
    assert not differences, "%d of %d records differ; first: %s" % (
        len(differences), len(RECORDS), json.dumps(differences[0], indent=1)[:3000])


def test_the_recording_covers_the_sample_events_the_trust_tests_and_aws_events():
    files = collections.Counter(record["test"].split("::")[0] for record in RECORDS)
    assert files["tests/test_trust.py"] >= 150
    assert files["tests/test_aws_events.py"] >= 279
    sample_events = {json.dumps(json.loads(path.read_text()), sort_keys=True)
                     for path in (ROOT / "events").glob("*.json")}
    recorded = {json.dumps(record["event"], sort_keys=True) for record in RECORDS}
    assert sample_events <= recorded
    statuses = collections.Counter(record["response"]["statusCode"] for record in RECORDS)
    assert {200, 400, 401, 500} <= set(statuses), statuses
