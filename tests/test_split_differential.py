"""The receiver moved from one file into a package without changing what it answers.

tests/fixtures/split-differential.json.gz was recorded on the single-file handler (commit
4255623) by tests/split_recording.py: every call the trust, AWS-sample-event, sample-event,
handler, shape, callback and metrics tests made with the default `handle`. Each record is
replayed here under the same configuration, clock and request id, and must give the same
status, headers, body and log line (timing fields aside), except where a rule below says
what changed on purpose since."""
import collections
import contextlib
import gzip
import io
import json
import os
import re
import time
import types

import pytest

import lambda_function
from conftest import ROOT
from signed_webhooks import config, keys
from split_recording import RELEVANT, comparable_log

RECORDING = ROOT / "tests/fixtures/split-differential.json.gz"
RECORDS = json.loads(gzip.decompress(RECORDING.read_bytes()))["records"]
SOKETI_SECRET_NAMES = ("SOKETI_SECRET", "SOKETI_NEXT_SECRET")
PUBLISHED_SOKETI_SECRET = "app-secret"  # soketi's default, allowed by ALLOW_PUBLIC_DEV_KEYS=1
# Variables judged before the soketi secrets: the dev-key opt-in and every QStash key set.
JUDGED_BEFORE_SOKETI = re.compile(
    r"ALLOW_PUBLIC_DEV_KEYS|([A-Z0-9_]+_)?QSTASH_(CURRENT|NEXT)_SIGNING_KEY")

# The answers that changed on purpose after the split, each as a rule: which records it
# covers and what they must answer now. Each covered record is also replayed with the rule's
# change undone, and must then give its recorded answer exactly: the rule changed nothing
# else. Every record no rule covers must give its recorded answer exactly.
#
# Not rules, since no record can show them: message.callback no longer looks at
# Upstash-Message-Id (the recording ran the default handle, which never reads it), and
# DEDUP_TTL must outlast a delivery's verifiable window (nothing was recorded with
# DEDUP_TABLE set).


def short_soketi_secret(record):
    """Rule 1: a SOKETI_SECRET or SOKETI_NEXT_SECRET shorter than 20 characters (Pusher's
    are 20) is refused like a placeholder QStash key: 500 naming it. Returns the variable the
    record must now be refused for, or None when its recorded answer stands: no such secret
    (soketi's published one counts only without ALLOW_PUBLIC_DEV_KEYS=1, which lets it
    through), an unreadable event (400: the event is read before the configuration is
    judged), or a configuration already refused for a variable judged no later (the QStash
    keys, then each secret with its own earlier rules: whitespace, published)."""
    environ = record["environ"]
    opted_in = environ.get("ALLOW_PUBLIC_DEV_KEYS", "").lower() in ("1", "true", "yes")
    short = [name for name in SOKETI_SECRET_NAMES
             if 0 < len(environ.get(name, "")) < 20
             and not (opted_in and environ[name] == PUBLISHED_SOKETI_SECRET)]
    if not short or record["response"]["statusCode"] == 400:
        return None
    if record["response"]["statusCode"] == 500:
        refused_for = record["log"]["reason"].split(" ", 1)[0]
        if JUDGED_BEFORE_SOKETI.fullmatch(refused_for):
            return None
        if refused_for in SOKETI_SECRET_NAMES and \
                SOKETI_SECRET_NAMES.index(refused_for) <= SOKETI_SECRET_NAMES.index(short[0]):
            return None
    return short[0]


def before_short_soketi_secrets(patch):
    """Rule 1 undone: any soketi secret length passes, as at the split."""
    patch.setattr(keys, "MIN_SOKETI_SECRET_LENGTH", 1)


def assert_refused_for_a_short_secret(got, record, variable):
    """The configuration 500 naming `variable`, in the record's shape, logged with the
    request's claimed headers as unverified."""
    response = got["response"]
    error = json.loads(response["body"])["error"]
    assert error.startswith(variable + " is shorter than 20 characters: not a real Pusher or "
                            "soketi app secret"), error
    recorded = record["response"]
    expected = {"statusCode": 500, "headers": {"content-type": "application/json"},
                "body": json.dumps({"error": error}), "isBase64Encoded": False}
    if "statusDescription" in recorded:  # an ALB event
        expected["statusDescription"] = "500 Internal Server Error"
        if "multiValueHeaders" in recorded:
            expected["multiValueHeaders"] = {"content-type": ["application/json"]}
            del expected["headers"]
    assert response == expected
    log = record["log"]
    assert "_aws" not in log  # no metrics in these records: the line below is all of it
    assert got["log"] == {
        "outcome": "error", "status": 500, "reason": error, "shape": log["shape"],
        "source": None,
        "unverified_message_id": log.get("message_id", log.get("unverified_message_id")),
        "unverified_retried": log.get("retried", log.get("unverified_retried")),
        "dedup": None, "request_id": log["request_id"]}


# Rule 2: a published development key's 500 used to suggest ALLOW_PUBLIC_DEV_KEYS=1, which make
# create and make deploy refuse; it now says "use your own key", the advice every tool accepts.
OLD_DEV_KEY_ADVICE = "; use your own, or set ALLOW_PUBLIC_DEV_KEYS=1 for local tests only"
NEW_DEV_KEY_ADVICE = ": use your own key"


def old_dev_key_advice(record):
    """The records whose answer gave the old advice (None for the others)."""
    if OLD_DEV_KEY_ADVICE in record["response"]["body"]:
        return OLD_DEV_KEY_ADVICE
    return None


def reworded(value):
    """`value` with the old dev-key advice replaced by the new."""
    return json.loads(json.dumps(value).replace(OLD_DEV_KEY_ADVICE, NEW_DEV_KEY_ADVICE))


def assert_the_new_advice_and_nothing_else(got, record, old):
    """The recorded answer and log line, with the advice replaced and nothing else."""
    assert got == {"response": reworded(record["response"]), "log": reworded(record["log"])}


# In order: the first rule that covers a record says what it answers now.
RULES = [(short_soketi_secret, before_short_soketi_secrets, assert_refused_for_a_short_secret),
         (old_dev_key_advice, None, assert_the_new_advice_and_nothing_else)]


def replay(record, monkeypatch):
    for name in list(os.environ):
        if any(part in name for part in RELEVANT):
            monkeypatch.delenv(name)
    for name, value in record["environ"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(time, "time", lambda: record["now"])
    monkeypatch.setattr(config, "_last_read", None)  # judged afresh, under today's rules
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


@pytest.fixture
def default_handle(monkeypatch):
    """The recording was made with the default handle: replay with the default handle."""
    assert lambda_function.handle.__module__ == "lambda_function"


def test_every_recorded_answer_is_given_again(default_handle, monkeypatch):
    """Every record no rule covers gives its recorded answer; each one a rule covers gives
    what the rule says, and its recorded answer with the rule undone."""
    differences = []
    changed = collections.Counter()
    for key, record in keyed(RECORDS):
        expected = {"response": record["response"], "log": record["log"]}
        with monkeypatch.context() as patch:
            got = replay(record, patch)
        covered = False
        for rule, undo, check in RULES:
            change = rule(record)
            if change is None:
                continue
            covered = True
            changed[rule.__name__] += 1
            try:
                check(got, record, change)
            except AssertionError as exc:
                differences.append((key, rule.__name__, str(exc)[:2000], got))
            if undo is None:  # the check compared the whole answer
                break
            with monkeypatch.context() as patch:
                undo(patch)
                undone = replay(record, patch)
            if old_dev_key_advice(record):  # the other rule's rewording stays
                expected = {"response": reworded(record["response"]), "log": reworded(
                    record["log"])}
            if undone != expected:
                differences.append((key, rule.__name__ + " undone", expected, undone))
            break  # the first rule that covers a record says what it answers now
        if not covered and got != expected:
            differences.append((key, expected, got))
    assert not differences, "%d of %d records differ; first: %s" % (
        len(differences), len(RECORDS), json.dumps(differences[0], indent=1)[:3000])
    assert changed["short_soketi_secret"] > 300, changed  # the rules are exercised
    assert changed["old_dev_key_advice"] > 10, changed


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
