"""soketi/Pusher webhooks: the direct-invocation signature rebuilt exactly as Node computes it
(real Node is the oracle), HTTP webhooks over every door, rotation, key and time window."""
import base64
import json
import random
import shutil
import subprocess
import sys
import time

import pytest

import lambda_events as ev
from conftest import APP_KEY, NEXT_SECRET, ROOT, SECRET, need
from lambda_function import SignatureError, verify_pusher
from signed_webhooks.node_json import node_json
from signer import sign_pusher

TRICKY_FLOATS = [1e-7, 0.000025, 0.1, 1e21, 123456789.125, 1e-6, 0.000001, 1e20, 5.0, -0.0,
                 1.5e300, -2.5e-9, 1e16, 2.0 ** 53, 2.0 ** 53 + 2, 123456789012345680000.0,
                 0.1 + 0.2, 1 / 3, -1e-300, 5e-324, 1.7976931348623157e308, 100.0, 1e-5]
CHARS = ("abcXYZ 09\"\\/\b\f\n\r\t\x00\x01\x1f\x7f\u00e9\u00df\u4e2d\u2028\u2029\ufeff"
         "\U0001f44b\U0001f600\ud800\udbff\udc00\udfff")


def node_oracle(cases):
    """[(secret, payload)] -> [(Node's JSON.stringify bytes, Node's signature)], one process."""
    node = shutil.which("node")
    need(node, "Node.js is required for the soketi oracle tests (apt-get install nodejs)")
    lines = "".join(json.dumps([secret, json.dumps(payload)]) + "\n" for secret, payload in cases)
    out = subprocess.run([node, str(ROOT / "tests/node/soketi_sign.js")], input=lines,
                         capture_output=True, text=True, check=True, timeout=300).stdout
    return [(base64.b64decode(b64), sig) for b64, sig in map(json.loads, out.splitlines())]


def random_string(rng):
    return "".join(rng.choice(CHARS) for _ in range(rng.randint(0, 12)))


def random_value(rng, depth=0):
    kind = rng.randint(0, 9 if depth < 4 else 5)
    if kind == 0:
        return random_string(rng)
    if kind == 1:
        return rng.choice(TRICKY_FLOATS) * rng.choice([1, -1])
    if kind == 2:
        return rng.uniform(-1, 1) * 10.0 ** rng.randint(-30, 30)
    if kind == 3:
        return rng.randint(-2 ** 53, 2 ** 53)
    if kind == 4:
        return rng.choice([True, False, None, 0, -1, 7])
    if kind == 5:
        return rng.choice(TRICKY_FLOATS)
    if kind in (6, 7):
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {random_string(rng): random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def random_payload(rng):
    events = [{"name": "client_event", "channel": "private-" + random_string(rng),
               "event": "client-" + random_string(rng), "data": random_value(rng),
               "socket_id": "%d.%d" % (rng.randint(1, 9999), rng.randint(1, 9999)),
               "user_id": rng.choice([rng.randint(1, 10 ** 6), random_string(rng)])}
              for _ in range(rng.randint(1, 3))]
    return {"time_ms": int(time.time() * 1000), "events": events}


def test_rebuilt_bytes_equal_nodes_json_stringify_over_thousands_of_payloads():
    rng = random.Random(2028)
    payloads = [random_payload(rng) for _ in range(3000)]
    payloads += [{"time_ms": 1, "events": [{"name": "x", "data": f}]} for f in TRICKY_FLOATS]
    payloads += [{"time_ms": 1, "events": [{"name": "x", "data": c}]} for c in CHARS]
    results = node_oracle([(SECRET, p) for p in payloads])
    assert len(results) == len(payloads)
    # As in production: Node wrote the event text, the runtime parsed it, we rebuild the bytes.
    mismatches = [data for data, _ in results if node_json(json.loads(data)) != data]
    assert not mismatches, mismatches[:3]


def test_node_reorders_integer_like_keys_so_the_runtime_receives_them_in_node_order():
    """Why the test above parses Node's output: JS puts array-index keys first."""
    [(data, _)] = node_oracle([(SECRET, {"b": 1, "9": 2, "a": 3, "0": 4})])
    assert data == b'{"0":4,"9":2,"b":1,"a":3}'
    assert node_json(json.loads(data)) == data


@pytest.mark.parametrize("value, expected", [
    (1e-7, "1e-7"), (0.000025, "0.000025"), (0.1, "0.1"), (1e21, "1e+21"),
    (123456789.125, "123456789.125"), (5.0, "5"), (-0.0, "0"), (1e20, "100000000000000000000"),
    ("\ud800", '"\\ud800"'), ("\u2028", '"\u2028"'), ("\x1f", '"\\u001f"')])
def test_the_spec_cases_by_hand(value, expected):
    assert node_json(value) == expected.encode()


@pytest.fixture
def soketi_payload():
    return {"time_ms": int(time.time() * 1000), "events": [
        {"name": "member_added", "channel": "presence-r\u00e9union", "user_id": 42},
        {"name": "client_event", "channel": "private-c", "event": "client-typing",
         "data": {"text": "\U0001f44b\u2028\x07", "lone": "\udc00", "ratio": 1e-7,
                  "nested": [{"n": 0.000025}, 1e21, 123456789.125, 0.1]},
         "socket_id": "1.2"}]}


def invoke_event(payload, secret=SECRET, key=APP_KEY):
    """The event soketi's Lambda trigger produces: Node's JSON text, parsed by the runtime."""
    [(data, signature)] = node_oracle([(secret, payload)])
    return {"payload": json.loads(data),
            "headers": {"X-Pusher-Key": key, "X-Pusher-Signature": signature}}


def test_direct_invocation_signed_by_node_is_accepted(soketi_env, soketi_payload, call, received):
    response, log = call(invoke_event(soketi_payload))
    assert response["statusCode"] == 200, log
    assert log["shape"] == "soketi-invoke" and log["source"] == "soketi"
    message = received[0]
    assert message.source == "soketi" and message.events == soketi_payload["events"]
    assert message.json["events"][1]["data"]["ratio"] == 1e-7


def test_forged_direct_invocation_returns_401_and_never_raises(soketi_env, soketi_payload,
                                                               call, received):
    event = invoke_event(soketi_payload)
    event["payload"]["events"][0]["user_id"] = 43
    response, log = call(event)
    assert response["statusCode"] == 401 and "does not match" in log["reason"]
    assert not received


def test_direct_invocation_with_the_wrong_secret_is_401(soketi_env, soketi_payload, call):
    response, log = call(invoke_event(soketi_payload, secret="other-secret"))
    assert response["statusCode"] == 401


def test_rotation_second_secret(soketi_env, monkeypatch, soketi_payload, call):
    event = invoke_event(soketi_payload, secret=NEXT_SECRET)
    assert call(event)[0]["statusCode"] == 401
    monkeypatch.setenv("SOKETI_NEXT_SECRET", NEXT_SECRET)
    assert call(event)[0]["statusCode"] == 200


def test_app_key_must_match_when_configured(soketi_env, monkeypatch, soketi_payload, call):
    event = invoke_event(soketi_payload, key="another-app")
    response, log = call(event)
    assert response["statusCode"] == 401 and "X-Pusher-Key" in log["reason"]
    monkeypatch.delenv("SOKETI_KEY")
    assert call(event)[0]["statusCode"] == 200


def test_direct_invocation_header_names_are_exact_case_but_read_case_insensitively(
        soketi_env, soketi_payload, call):
    event = invoke_event(soketi_payload)
    event["headers"] = {k.lower(): v for k, v in event["headers"].items()}
    assert call(event)[0]["statusCode"] == 200


def test_upstash_signature_on_a_direct_invocation_is_not_trusted(qstash_env, soketi_env, call):
    """QStash only calls over HTTP: a direct invocation has no URL to bind a token to."""
    event = {"payload": {"time_ms": 1, "events": []},
             "headers": {"Upstash-Signature": "a.b.c"}}
    response, log = call(event)
    assert response["statusCode"] == 401 and "no Upstash-Signature or X-Pusher" in log["reason"]


# --- Over HTTP --------------------------------------------------------------------------------

def http_body(payload):
    return json.dumps(payload, separators=(",", ":")).encode()


@pytest.mark.parametrize("door", ["function_url", "rest", "alb", "alb_multi"])
def test_http_webhook_through_every_door(door, soketi_env, soketi_payload, call, received):
    body = http_body(soketi_payload)
    headers = ev.soketi_headers(APP_KEY, SECRET, body)
    event = {"function_url": lambda: ev.function_url(headers=headers, body=body),
             "rest": lambda: ev.rest(headers=headers, body=body),
             "alb": lambda: ev.alb(headers=headers, body=body),
             "alb_multi": lambda: ev.alb(headers=headers, body=body, multi_value=True)}[door]()
    response, log = call(event)
    assert response["statusCode"] == 200, log
    assert received[0].events == soketi_payload["events"]


def test_http_signature_covers_the_exact_bytes(soketi_env, soketi_payload, call):
    body = json.dumps(soketi_payload, indent=1).encode()  # any bytes soketi chose to send
    event = ev.function_url(headers=ev.soketi_headers(APP_KEY, SECRET, body), body=body)
    assert call(event)[0]["statusCode"] == 200
    event["body"] = event["body"].replace("\n", " ")
    assert call(event)[0]["statusCode"] == 401


@pytest.mark.parametrize("mutate", [str.upper, lambda s: s[:-1], lambda s: s + "0",
                                    lambda s: " " + s[1:], lambda s: s[:10] + "\u00e9" + s[11:]])
def test_signature_variants_are_refused(mutate, soketi_payload):
    body = http_body(soketi_payload)
    with pytest.raises(SignatureError):
        verify_pusher(mutate(sign_pusher(SECRET, body)), SECRET, body)


def test_time_window(soketi_payload, monkeypatch, soketi_env, call):
    soketi_payload["time_ms"] -= 400 * 1000
    body = http_body(soketi_payload)
    with pytest.raises(SignatureError, match="time_ms"):
        verify_pusher(sign_pusher(SECRET, body), SECRET, body)
    assert verify_pusher(sign_pusher(SECRET, body), SECRET, body, max_age=500)
    assert verify_pusher(sign_pusher(SECRET, body), SECRET, body, max_age=0)
    event = ev.function_url(headers=ev.soketi_headers(APP_KEY, SECRET, body), body=body)
    response, log = call(event)
    assert response["statusCode"] == 401 and "SOKETI_MAX_AGE" in log["reason"]
    monkeypatch.setenv("SOKETI_MAX_AGE", "0")
    assert call(event)[0]["statusCode"] == 200
    monkeypatch.setenv("SOKETI_MAX_AGE", "600")
    assert call(event)[0]["statusCode"] == 200


@pytest.mark.parametrize("time_ms", [None, "1", 10 ** 30, True, float("nan")])
def test_missing_or_odd_time_ms_is_refused_while_the_window_is_on(time_ms):
    payload = {"events": []} if time_ms is None else {"time_ms": time_ms, "events": []}
    body = json.dumps(payload).encode()
    with pytest.raises(SignatureError, match="time_ms"):
        verify_pusher(sign_pusher(SECRET, body), SECRET, body)


def test_signed_body_that_is_not_a_webhook_payload_is_refused():
    for body in (b"not json", b"[]", b'{"events": {}}'):
        with pytest.raises(SignatureError, match="events list"):
            verify_pusher(sign_pusher(SECRET, body), SECRET, body, max_age=0)


def test_large_payloads_take_the_sliced_path_and_still_match_node_byte_for_byte():
    """Over 1 MB, the payload is rebuilt slice by slice (bounded memory): same bytes as Node."""
    rng = random.Random(6)
    events = [{"name": "client_event", "channel": "private-%d" % i, "user_id": i,
               "data": {"f": rng.choice(TRICKY_FLOATS), "s": random_string(rng) * 40,
                        "pad": "\U0001f44b\u2028\ud800" + "x" * 300}} for i in range(3001)]
    [(data, signature)] = node_oracle([(SECRET, {"time_ms": 1, "events": events})])
    assert len(data) > 1 << 20
    payload = json.loads(data)
    assert node_json(payload) == data
    assert verify_pusher(signature, SECRET, node_json(payload), max_age=0)
    for count in (0, 1, 63, 64, 65, 129):  # slice boundaries
        small = {"time_ms": 1, "events": events[:count], "pad": "y" * (1 << 20)}
        [(data, _)] = node_oracle([(SECRET, small)])
        assert node_json(json.loads(data)) == data, count


# --- Every path of the rebuild, against Node ---------------------------------------------------

def chain_of(depth, wrap, leaf=0):
    value = leaf
    for _ in range(depth):
        value = wrap(value)
    return value


def rebuild_paths():
    """Payloads that take each path of node_json.py: deep chains of lists and objects with
    floats before or after the child (494 levels under the payload, events and event: 497),
    floats at depth, runs of lone surrogates, empty containers, parts crossing the 4 KB and
    16 KB thresholds, long strings inside nested parts."""
    rng = random.Random(11)
    data = {
        "list chain, float after": chain_of(494, lambda v: [v, 1e-7]),
        "list chain, float before": chain_of(494, lambda v: [-0.0, v]),
        "object chain, floats": chain_of(494, lambda v: {"f": 5.0, "\u2028": v}),
        "float-free chain": chain_of(494, lambda v: [v]),
        "floats at depth": [chain_of(40, lambda v: {"k": [v]}, rng.choice(TRICKY_FLOATS))
                            for _ in range(50)],
        "surrogate runs": ["\ud800a" * 3000, "\udfff" * 5000 + "x", {"\udbff": "\udc00" * 9}],
        "empty containers": [[], {}, [[]], [{}], {"": []}, {"": {}}] * 2000,
        "small objects": [{"k": index / 7, "s": "x"} for index in range(3000)],
        "mixed runs": [0 if index % 3 else [1e21] for index in range(5000)],
        "long strings nested": [{"a": ["\U0001f44b" * 70000, 1e-7]}, "y" * 140000],
        "around the thresholds": [["z" * size, {"n": size * 1.5}] for size in
                                  (4000, 4095, 4096, 4097, 8190, 16383, 16384, 16385, 70000)],
    }
    return {name: {"time_ms": 1, "events": [{"name": "client_event", "data": value}]}
            for name, value in data.items()}


def test_every_path_of_the_rebuild_matches_node_byte_for_byte():
    payloads = rebuild_paths()
    results = node_oracle([(SECRET, payload) for payload in payloads.values()])
    for name, (data, signature) in zip(payloads, results):
        rebuilt = node_json(json.loads(data))
        assert rebuilt == data, name
        assert verify_pusher(signature, SECRET, rebuilt, max_age=0), name


@pytest.mark.parametrize("wrap", [lambda v: [v, 0.5], lambda v: {"a": v, "b": 0.5}],
                         ids=["lists", "objects"])
def test_nesting_within_the_limit_is_rebuilt_and_accepted(wrap, soketi_env, call, received):
    """494 levels of lists or objects under data (497 in all, MAX_NESTING is 500) are
    rebuilt as Node wrote them: the signed invocation is accepted, never a RecursionError."""
    payload = {"time_ms": int(time.time() * 1000),
               "events": [{"name": "client_event", "data": chain_of(494, wrap)}]}
    response, log = call(invoke_event(payload))
    assert response["statusCode"] == 200, log
    assert received[0].events == payload["events"]


@pytest.mark.parametrize("wrap", [lambda v: [v, 0.5], lambda v: {"a": v, "b": 0.5},
                                  lambda v: [v], lambda v: {"a": v}],
                         ids=["lists", "objects", "bare lists", "bare objects"])
def test_nesting_past_the_limit_is_a_400_naming_it(wrap, soketi_env, call, received):
    """One level more than MAX_NESTING: 400 naming the limit, for lists as for objects."""
    from signed_webhooks.node_json import MAX_NESTING
    payload = {"events": [{"data": chain_of(MAX_NESTING - 2, wrap)}]}  # 501 levels
    headers = {"X-Pusher-Key": APP_KEY, "X-Pusher-Signature": "0" * 64}
    response, log = call({"payload": payload, "headers": headers})
    assert response["statusCode"] == 400, log
    assert log["reason"] == "payload is nested deeper than %d levels" % MAX_NESTING
    assert not received
    payload["events"][0]["data"] = chain_of(MAX_NESTING - 3, wrap)  # 500 levels: rebuilt
    response, log = call({"payload": payload, "headers": headers})
    assert response["statusCode"] == 401 and "does not match" in log["reason"], log


# --- Linear: twice the size or twice the depth, twice the work at most ------------------------

def traced_events(payload):
    """Python-level events (calls, lines, returns) of one rebuild: a deterministic count of
    the interpreted work, whatever the machine's speed. What runs in C (the encoder, the
    codec, str methods) is one event per call, and linear in its input by itself."""
    count = 0

    def tracer(frame, event, arg):
        nonlocal count
        count += 1
        return tracer
    sys.settrace(tracer)
    try:
        rebuilt = node_json(payload)
    finally:
        sys.settrace(None)
    return count, len(rebuilt)


LINEAR_CASES = {  # (depth, copies) -> payload data
    "chains of [v, 1e-7]": lambda depth, copies: [chain_of(depth, lambda v: [v, 1e-7])
                                                   for _ in range(copies)],
    "chains of [1e-7, v]": lambda depth, copies: [chain_of(depth, lambda v: [1e-7, v])
                                                   for _ in range(copies)],
    "float-free chains": lambda depth, copies: [chain_of(depth, lambda v: [v, "s"])
                                                 for _ in range(copies)],
    "object chains": lambda depth, copies: [chain_of(depth, lambda v: {"k": v, "f": 0.5})
                                             for _ in range(copies)],
    "floats at depth": lambda depth, copies: [chain_of(depth, lambda v: [[v]], 1e-7)
                                               for _ in range(copies)],
    "flat small objects": lambda depth, copies: [{"k": 0.5, "s": "x"}] * (depth * copies),
    "empty containers": lambda depth, copies: [[], {}] * (depth * copies),
    "lone surrogates": lambda depth, copies: ["\ud800a" * (depth * copies * 10)],
}


@pytest.mark.parametrize("make", LINEAR_CASES.values(), ids=LINEAR_CASES)
def test_rebuild_work_per_byte_stays_flat_when_size_or_depth_doubles(make):
    """SECURITY.md: every other path is linear. The interpreted work per rebuilt byte, counted
    by sys.settrace (deterministic; no clock), may not grow when the payload gets twice as
    large or twice as deep. A rebuild that rechecks each part at every level (bytes x depth)
    or copies parts per level fails here. Depths stay well inside MAX_NESTING."""
    def per_byte(depth, copies):
        payload = {"time_ms": 1, "events": [{"name": "client_event", "data": make(depth, copies)}]}
        events, size = traced_events(payload)
        return events / size
    base = per_byte(50, 150)  # past the one-call path for payloads under 16 KB (_FAST)
    assert per_byte(50, 300) <= base * 1.1, "twice the size"
    assert per_byte(100, 150) <= base * 1.1, "twice the depth"


def test_a_body_given_as_text_or_none_is_checked_as_its_bytes():
    """The body may be given as str (UTF-8) or None (empty): the HMAC covers those bytes,
    and an empty body, correctly signed, is refused for what it is, not by an exception."""
    text = '{"time_ms":1,"events":[{"name":"caf\u00e9"}]}'
    assert verify_pusher(sign_pusher(SECRET, text.encode()), SECRET, text, max_age=0)
    for body in (None, b"", ""):
        with pytest.raises(SignatureError, match="events list"):
            verify_pusher(sign_pusher(SECRET, b""), SECRET, body, max_age=0)


def test_time_ms_from_1e16_in_magnitude_is_refused_however_wide_the_window():
    """time_ms is a number below 1e16 in magnitude (so its record's lifetime is a finite
    number): 1e16 itself is refused even by a window that would reach it."""
    now = 10 ** 13  # seconds: time_ms 10**16 is now, to the millisecond
    for time_ms, accepted in ((10 ** 16 - 1, True), (10 ** 16, False), (-(10 ** 16), False)):
        body = json.dumps({"time_ms": time_ms, "events": []}).encode()
        signature = sign_pusher(SECRET, body)
        if accepted:
            assert verify_pusher(signature, SECRET, body, max_age=10 ** 14, now=now)
            continue
        with pytest.raises(SignatureError, match="time_ms"):
            verify_pusher(signature, SECRET, body, max_age=10 ** 14, now=now)
