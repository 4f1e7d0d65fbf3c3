"""The handler never falls over: arbitrary JSON values as events, and real event shapes with
fields replaced by arbitrary values, always get a well-formed 4xx/5xx response and one log
line, and never reach the business logic."""
import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import ROOT
from make_events import SAMPLE_QSTASH_KEYS, SAMPLE_SOKETI

SAMPLES = [json.loads(p.read_text()) for p in sorted((ROOT / "events").glob("*.json"))]
SAMPLE_ALB_URL = "https://hooks.example.com/hooks/qstash?tenant=7"  # events/alb.json's
leaves = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50)
          | st.sampled_from(["", "2.0", "/", "%%%", "\ud800", "a" * 5000, "true", "{}"]))
json_values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=5),
                           max_leaves=25)


def check(response, log, received):
    assert isinstance(response, dict)
    assert isinstance(response["statusCode"], int) and 400 <= response["statusCode"] < 600
    assert isinstance(response["body"], str) and "error" in json.loads(response["body"])
    headers = response.get("headers") or {k: v[0] for k, v in response["multiValueHeaders"].items()}
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
    assert log["status"] == response["statusCode"] and log["reason"]
    assert not received


def replace_at(event, path, value):
    target = event
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


def paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, prefix + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from paths(item, prefix + (i,))


SETTINGS = settings(max_examples=600, suppress_health_check=list(HealthCheck))


@pytest.fixture(params=["configured", "unconfigured"])
def config(request, monkeypatch):
    """The keys the sample events were signed with, so mutated samples reach verification;
    the destination lets the ALB samples reach it too (an ALB's Host is not trusted)."""
    if request.param == "configured":
        monkeypatch.setenv("QSTASH_CURRENT_SIGNING_KEY", SAMPLE_QSTASH_KEYS[0])
        monkeypatch.setenv("QSTASH_NEXT_SIGNING_KEY", SAMPLE_QSTASH_KEYS[1])
        monkeypatch.setenv("QSTASH_DESTINATION_URL", SAMPLE_ALB_URL)
        monkeypatch.setenv("SOKETI_KEY", SAMPLE_SOKETI[0])
        monkeypatch.setenv("SOKETI_SECRET", SAMPLE_SOKETI[1])
        monkeypatch.setenv("ALLOW_PUBLIC_DEV_KEYS", "1")  # in case a sample secret is public


@SETTINGS
@given(event=json_values)
def test_arbitrary_json_values(event, config, call, received):
    check(*call(event), received)


@SETTINGS
@given(data=st.data())
def test_real_shapes_with_fields_replaced_or_removed(data, config, call, received):
    event = json.loads(json.dumps(data.draw(st.sampled_from(SAMPLES))))
    for _ in range(data.draw(st.integers(1, 4))):
        candidates = [p for p in paths(event) if p]
        if not candidates:
            break
        path = data.draw(st.sampled_from(candidates))
        if data.draw(st.booleans()) and isinstance(path[-1], str):
            target = event
            for key in path[:-1]:
                target = target[key]
            del target[path[-1]]
        else:
            replace_at(event, path, data.draw(json_values))
    check(*call(event), received)


@pytest.mark.parametrize("make", [
    lambda e: e.update(body="A" * 3_000_001, isBase64Encoded=True),  # one char too many
    lambda e: e.update(body="\ud800" * 1000),
    lambda e: e.update(body="////" * 1_000_000, isBase64Encoded=True),
    lambda e: e["headers"].update({"upstash-signature": "a" * 10_000_000}),
    lambda e: e["headers"].update({"upstash-signature": ".".join(["e30"] * 100_000)}),
    lambda e: e["headers"].update({"x-%d" % i: "v" for i in range(100_000)}),
    lambda e: e["headers"].update({"upstash-signature": ["x"] * 1000}),
    lambda e: e["headers"].update({"upstash-retried": "9" * 100000,
                                   "upstash-message-id": "m" * 10**6}),
    lambda e: e.update(headers={"Upstash-Signature": "a", "UPSTASH-signature": "b"}),
    lambda e: e.update(rawPath=None, rawQueryString=7),
])
def test_extreme_inputs(make, config, call, received):
    event = json.loads((ROOT / "events/function-url.json").read_text())
    make(event)
    check(*call(event), received)


def test_deep_nesting_everywhere(config, call, received):
    deep = []
    for _ in range(50_000):
        deep = [deep]
    for event in ({"version": "2.0", "headers": {"a": deep}}, {"payload": {"events": deep},
                                                               "headers": {}}, deep):
        check(*call(event), received)
