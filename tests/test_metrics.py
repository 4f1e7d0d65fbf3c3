"""CloudWatch Embedded Metric Format on the log line (METRICS_NAMESPACE), and `cold_start`.

Oracles: the JSON schema AWS publishes in the EMF specification (tests/fixtures/emf_schema.json,
source inside), the specification's rules the schema cannot express (every referenced member
present at the root, numbers for metrics, strings for dimensions), AWS's own
`aws-embedded-metrics` library emitting the same metrics, and AWS's runtime for cold starts."""
import json
import os
import string
import subprocess
import sys
import time

import jsonschema
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import lambda_events as ev
import lambda_function
from conftest import KEY, NEXT, ROOT
from lambda_function import NonRetryableError
from signed_webhooks.config import metrics_namespace_error
from signed_webhooks.metrics import METRIC_OUTCOMES, metrics_fields
from peers import build_task, lambda_runtime, post

URL = "https://abc123.lambda-url.us-east-1.on.aws/jobs"
NAMESPACE = "Webhooks/Test"
FUNCTION = "qstash-webhook"
SCHEMA = json.loads((ROOT / "tests/fixtures/emf_schema.json").read_text())
# The schema's "$id" values are draft 7 style; it names no draft itself.
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)
LOG_FIELDS = ("outcome", "status", "reason", "shape", "source", "ms", "request_id",
              "cold_start")


def emf_problems(line):
    """Everything in `line` that breaks the EMF specification: the published schema, then the
    rules it states in prose (target members on the root node, their types, the limits)."""
    problems = [error.message for error in VALIDATOR.iter_errors(line)]
    if problems:
        return problems
    for directive in line["_aws"]["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            for key in dimension_set:
                value = line.get(key)
                if not isinstance(value, str) or not value:
                    problems.append("dimension %r is %r, not a non-empty string" % (key, value))
        if len(directive["Metrics"]) > 100:
            problems.append("more than 100 metrics in one directive")
        for metric in directive["Metrics"]:
            value = line.get(metric["Name"])
            values = value if isinstance(value, list) else [value]
            numeric = [type(item) in (int, float) for item in values]
            if not values or not all(numeric) or len(values) > 100:
                problems.append("metric %r is %r, not a number" % (metric["Name"], value))
    return problems


def qstash_event(body=b'{"job":1}'):
    return ev.function_url(url=URL, body=body, headers={
        **ev.qstash_headers(KEY, body, URL), "Content-Type": "application/json"})


def raise_non_retryable(message):
    raise NonRetryableError("never works")


def raise_bug(message):
    raise KeyError("bug")


# outcome name: (how to set the request up, the event); every outcome the handler gives today
HANDLER_CASES = {
    "accepted": (None, qstash_event),
    "rejected 401": (None, lambda: {**qstash_event(), "body": '{"job":2}'}),
    "rejected 400": (None, lambda: "not an event"),
    "dropped": (raise_non_retryable, qstash_event),
    "error in handle": (raise_bug, qstash_event),
}


@pytest.fixture
def metrics_env(monkeypatch):
    monkeypatch.setenv("QSTASH_CURRENT_SIGNING_KEY", KEY)
    monkeypatch.setenv("QSTASH_NEXT_SIGNING_KEY", NEXT)
    monkeypatch.setenv("METRICS_NAMESPACE", NAMESPACE)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", FUNCTION)


def handler_line(case, monkeypatch, call):
    replacement, event = HANDLER_CASES[case]
    if replacement:
        monkeypatch.setattr(lambda_function, "handle", replacement)
    return call(event())[1]


@pytest.mark.parametrize("case", HANDLER_CASES)
def test_the_log_line_is_valid_emf_for_every_outcome(case, metrics_env, monkeypatch, call):
    before_ms = int(time.time() * 1000)
    line = handler_line(case, monkeypatch, call)
    assert emf_problems(line) == []
    assert before_ms <= line["_aws"]["Timestamp"] <= int(time.time() * 1000)
    assert line["_aws"]["CloudWatchMetrics"][0]["Namespace"] == NAMESPACE
    assert line["function_name"] == FUNCTION


@pytest.mark.parametrize("case", HANDLER_CASES)
def test_the_counts_say_which_outcome_it_was(case, metrics_env, monkeypatch, call):
    line = handler_line(case, monkeypatch, call)
    counts = {name: line[name] for name in METRIC_OUTCOMES}
    assert counts == {name: int(name == line["outcome"]) for name in METRIC_OUTCOMES}
    assert line["outcome"] == case.split()[0]
    assert line["latency"] == line["ms"]
    assert line["cold_starts"] == int(line["cold_start"])


@pytest.mark.parametrize("outcome", METRIC_OUTCOMES)
def test_every_outcome_name_gives_valid_emf(outcome):
    log = {"outcome": outcome, "ms": 1.5, "source": "qstash", "cold_start": False}
    line = {**log, **metrics_fields(log, NAMESPACE, FUNCTION, 1_790_000_000_000)}
    assert emf_problems(line) == []
    assert [name for name in METRIC_OUTCOMES if line[name] == 1] == [outcome]


def test_the_checks_refuse_a_broken_line():
    """The oracle itself can fail: a float Timestamp, a null dimension, a text metric."""
    log = {"outcome": "accepted", "ms": 1.5, "source": "qstash", "cold_start": False}
    line = {**log, **metrics_fields(log, NAMESPACE, FUNCTION, 1_790_000_000_000)}
    assert emf_problems({**line, "_aws": {**line["_aws"], "Timestamp": 1.5}})
    assert emf_problems({**line, "source": None})
    assert emf_problems({**line, "latency": "1.5"})
    assert emf_problems({**line, "accepted": True})


def test_metric_members_leave_the_log_fields_as_they_were(metrics_env, monkeypatch, call):
    """Only `source` may change, and only from null (a dimension needs a string)."""
    tampered = {**qstash_event(), "body": '{"tampered":1}'}
    with_metrics = call(tampered)[1]
    monkeypatch.delenv("METRICS_NAMESPACE")
    plain = call(tampered)[1]
    assert "_aws" not in plain and not set(METRIC_OUTCOMES) & set(plain)
    for field in set(plain) - {"ms", "source"}:
        assert with_metrics[field] == plain[field], field
    assert plain["source"] is None and with_metrics["source"] == "none"


def test_without_metrics_namespace_every_line_still_says_cold_start(qstash_env, call):
    line = call(qstash_event())[1]
    assert set(LOG_FIELDS) <= set(line)
    assert line["cold_start"] is False  # this process has served requests before
    assert "_aws" not in line and "latency" not in line


def test_a_refused_namespace_is_a_500_whose_line_carries_no_metrics(metrics_env, monkeypatch,
                                                                     call):
    """A METRICS_NAMESPACE that breaks CloudWatch's rules is a 500 naming it, and the line
    defines no metrics under it (CloudWatch would drop them without a word)."""
    monkeypatch.setenv("METRICS_NAMESPACE", "AWS/Webhooks")
    response, line = call(qstash_event())
    assert response["statusCode"] == 500 and line["reason"].startswith("METRICS_NAMESPACE")
    assert "_aws" not in line and not set(METRIC_OUTCOMES) & set(line)


AWS_LIBRARY = """
import asyncio, json, sys
from aws_embedded_metrics.logger.metrics_logger_factory import create_metrics_logger

async def emit(case):
    metrics = create_metrics_logger()
    metrics.set_namespace(case["namespace"])
    metrics.set_dimensions(*case["dimensions"])
    for name, unit, value in case["metrics"]:
        metrics.put_metric(name, value, unit)
    await metrics.flush()

for case in json.loads(sys.argv[1]):
    asyncio.run(emit(case))
"""


def aws_library_lines(cases):
    """One line per case from aws-embedded-metrics in its Lambda environment (stdout sink)."""
    env = {**os.environ, "AWS_LAMBDA_FUNCTION_NAME": FUNCTION}
    result = subprocess.run([sys.executable, "-c", AWS_LIBRARY, json.dumps(cases)], env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return [json.loads(text) for text in result.stdout.splitlines()]


def definitions(line):
    """What CloudWatch makes of a line: namespace, dimension sets with their values, and
    each metric's unit and value."""
    (directive,) = line["_aws"]["CloudWatchMetrics"]
    return {
        "namespace": directive["Namespace"],
        "dimensions": [[(key, line[key]) for key in keys] for keys in directive["Dimensions"]],
        "metrics": sorted((metric["Name"], metric.get("Unit", "None"), line[metric["Name"]])
                          for metric in directive["Metrics"]),
    }


@pytest.mark.parametrize("case", HANDLER_CASES)
def test_aws_library_emitting_the_same_metrics_defines_the_same_ones(
        case, metrics_env, monkeypatch, call):
    ours = handler_line(case, monkeypatch, call)
    units = {"latency": "Milliseconds"}
    expected = {
        "namespace": NAMESPACE,
        "dimensions": [{"function_name": FUNCTION},
                       {"function_name": FUNCTION, "source": ours["source"]}],
        "metrics": [(name, units.get(name, "Count"), ours[name])
                    for name in (*METRIC_OUTCOMES, "latency", "cold_starts")],
    }
    (theirs,) = aws_library_lines([expected])
    assert emf_problems(theirs) == []
    assert definitions(ours) == definitions(theirs)


@pytest.mark.parametrize("namespace, problem", [
    ("Webhooks", None), ("Team A/webhooks:prod#1", None), ("a" * 255, None),
    ("", "1 to 255"), ("   ", "1 to 255"), ("a" * 256, "1 to 255"),
    ("Webhooks\u00e9", "1 to 255"), ("Web\nhooks", "1 to 255"), ("AWS/Lambda", "AWS/"),
    (string.ascii_letters + string.digits + " .-_/#:", None),  # every character allowed
])
def test_metrics_namespace_rules(namespace, problem):
    error = metrics_namespace_error(namespace)
    assert (error is None) if problem is None else (problem in error)
    assert error is None or "METRICS_NAMESPACE" in error


NAMESPACE_CHARACTERS = "aZ09._#:/-" + "\u00e9\t\n\"'@,*+=!?$%&()[]{}<>|~;"


@settings(max_examples=300)
@given(st.text(NAMESPACE_CHARACTERS, max_size=300))
def test_namespace_verdicts_agree_with_aws_library(namespace):
    """aws-embedded-metrics' own namespace check, on what both define alike: no spaces (which
    CloudWatch allows, the library not), at most 255 characters, not under AWS/. The library's
    regular expression ends in `$`, which lets one trailing newline through: left out too."""
    assume(len(namespace) <= 255 and not namespace.startswith("AWS/"))
    assume(not namespace.endswith("\n"))
    from aws_embedded_metrics.exceptions import InvalidNamespaceError
    from aws_embedded_metrics.validator import validate_namespace
    try:
        validate_namespace(namespace)
        library_accepts = True
    except InvalidNamespaceError:
        library_accepts = False
    assert (metrics_namespace_error(namespace) is None) == library_accepts


def test_cold_start_is_the_first_request_only_in_the_real_runtime(tmp_path):
    """AWS's runtime loads the module once: its first request is the cold start."""
    env = {"QSTASH_CURRENT_SIGNING_KEY": KEY, "QSTASH_NEXT_SIGNING_KEY": NEXT,
           "METRICS_NAMESPACE": NAMESPACE}
    with lambda_runtime(build_task(tmp_path), env) as runtime:
        for _ in range(3):
            status = post(runtime.url, json.dumps(qstash_event()).encode())[0]
            assert status == 200
        output = open(runtime.log.name).read()
    lines = [json.loads(text) for text in output.splitlines() if text.startswith('{"outcome"')]
    assert [line["cold_start"] for line in lines] == [True, False, False]
    assert [line["cold_starts"] for line in lines] == [1, 0, 0]
    assert [emf_problems(line) for line in lines] == [[], [], []]
    assert all(line["function_name"] not in ("", "unknown") for line in lines)
