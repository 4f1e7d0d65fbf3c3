"""The configuration: read on every request (a change takes effect on the next one), judged
once per distinct environment, and refused when it would defeat what it configures.
Tokens are minted by PyJWT, events built by tools/lambda_events.py as AWS builds them."""
import json
import os
import sys
import threading

import jwt  # PyJWT: an independent signer
import pytest

import lambda_events as ev
from conftest import APP_KEY, KEY, NEXT, SECRET
from signed_webhooks import config
from signed_webhooks.errors import SignatureError
from signed_webhooks.qstash import verify
from signer import sign_pusher
from test_trust import BODY, FUNCTION_URL, PUBLIC_URL, T0, pyjwt_token, qstash_body_hash

REGION_KEY, REGION_NEXT = "sig_EuCentral1CurrentKey012345", "sig_EuCentral1NextKey0123456789"


def signed_event(url=FUNCTION_URL, key=KEY, **headers):
    return ev.function_url(url=FUNCTION_URL, body=BODY, now=T0, headers={
        "Upstash-Signature": pyjwt_token(url, key=key), **headers})


# --- Read on every request ------------------------------------------------------------------

def test_every_change_between_requests_takes_effect(qstash_env, monkeypatch, clock, call):
    """Each request sees the environment as it is then: a key set, a regional set added and
    removed, the destination set and unset, the tolerance changed, the keys removed."""
    clock(T0 + 1)
    assert call(signed_event())[0]["statusCode"] == 200
    monkeypatch.setenv("QSTASH_CURRENT_SIGNING_KEY", "sig_AnotherCurrentKey0123456")
    assert call(signed_event())[0]["statusCode"] == 401
    monkeypatch.setenv("QSTASH_CURRENT_SIGNING_KEY", KEY)
    assert call(signed_event())[0]["statusCode"] == 200

    regional = signed_event(key=REGION_KEY, **{"Upstash-Region": "EU-CENTRAL-1"})
    assert call(regional)[0]["statusCode"] == 401  # no such set yet: the plain keys
    monkeypatch.setenv("EU_CENTRAL_1_QSTASH_CURRENT_SIGNING_KEY", REGION_KEY)
    monkeypatch.setenv("EU_CENTRAL_1_QSTASH_NEXT_SIGNING_KEY", REGION_NEXT)
    assert call(regional)[0]["statusCode"] == 200
    monkeypatch.delenv("EU_CENTRAL_1_QSTASH_NEXT_SIGNING_KEY")
    response, log = call(regional)
    assert response["statusCode"] == 500 and "EU_CENTRAL_1_QSTASH_NEXT" in log["reason"]
    monkeypatch.delenv("EU_CENTRAL_1_QSTASH_CURRENT_SIGNING_KEY")

    monkeypatch.setenv("QSTASH_DESTINATION_URL", PUBLIC_URL)
    assert call(signed_event())[0]["statusCode"] == 401
    assert call(signed_event(PUBLIC_URL))[0]["statusCode"] == 200
    monkeypatch.delenv("QSTASH_DESTINATION_URL")
    assert call(signed_event())[0]["statusCode"] == 200

    clock(T0 + 300 + 30)  # expired by 30 s
    assert call(signed_event())[0]["statusCode"] == 401
    monkeypatch.setenv("QSTASH_CLOCK_TOLERANCE", "60")
    assert call(signed_event())[0]["statusCode"] == 200

    monkeypatch.delenv("QSTASH_CURRENT_SIGNING_KEY")
    monkeypatch.delenv("QSTASH_NEXT_SIGNING_KEY")
    assert call(signed_event())[0]["statusCode"] == 500


def test_an_unchanged_environment_is_judged_once_and_any_change_judged_again(qstash_env,
                                                                            monkeypatch):
    """The judgement is reused while nothing changed; any variable set, changed or removed,
    even one the configuration does not read, means a fresh judgement."""
    first, _ = config.read()
    assert config.read()[0] is first
    monkeypatch.setenv("SOME_UNRELATED_VARIABLE", "1")
    second, _ = config.read()
    assert second is not first and config.read()[0] is second
    monkeypatch.setenv("SOME_UNRELATED_VARIABLE", "2")
    third, _ = config.read()
    assert third is not second
    monkeypatch.delenv("SOME_UNRELATED_VARIABLE")
    assert config.read()[0] is not third
    assert config.read()[0].qstash_keys == {"": (KEY, NEXT)}


def test_the_problems_returned_are_the_callers_own(monkeypatch):
    monkeypatch.setenv("QSTASH_CURRENT_SIGNING_KEY", "short")
    problems = config.read()[1]
    assert problems
    problems.clear()
    assert config.read()[1]


def test_a_variable_changed_while_requests_are_read_is_seen_once_it_settles(qstash_env,
                                                                            monkeypatch):
    """Threads read the configuration while this one flips QSTASH_DESTINATION_URL: every read
    sees one of the two values, and each time the flipping stops, the next read sees the
    value set last (a judgement filed under a newer environment than it read would not)."""
    urls = ["https://a.example/hook", "https://b.example/hook"]
    monkeypatch.setenv("QSTASH_DESTINATION_URL", urls[0])
    for number in range(300):  # a longer judgement: more time for a flip to land inside one
        monkeypatch.setenv("UNRELATED_%d" % number, "x" * 100)
    seen = set()
    stale = []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            seen.add(tuple(config.read()[0].destination_urls))

    readers = [threading.Thread(target=reader) for _ in range(3)]
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # threads take turns often, so reads meet the flips
    for thread in readers:
        thread.start()
    try:
        for settle in range(200):
            for flip in range(21 + settle % 10):
                os.environ["QSTASH_DESTINATION_URL"] = urls[flip % 2]
            last = os.environ["QSTASH_DESTINATION_URL"]
            if config.read()[0].destination_urls != [last]:
                stale.append(settle)
    finally:
        stop.set()
        for thread in readers:
            thread.join()
        sys.setswitchinterval(switch_interval)
    assert seen <= {(urls[0],), (urls[1],)}, seen
    assert not stale, stale


# --- Secrets shorter than the provider's --------------------------------------------------

def soketi_event(secret, now=T0):
    body = b'{"time_ms":%d,"events":[{"name":"channel_occupied","channel":"room"}]}' % (
        now * 1000)
    return ev.function_url(url=FUNCTION_URL, body=body, now=now,
                           headers=ev.soketi_headers(APP_KEY, secret, body))


@pytest.mark.parametrize("short", ["s", "-", "secret", "changeme", "x" * 19])
@pytest.mark.parametrize("variable", ["SOKETI_SECRET", "SOKETI_NEXT_SECRET"])
def test_a_soketi_secret_under_20_characters_is_a_500_naming_it(short, variable, monkeypatch,
                                                               clock, call, received):
    """Pusher's app secrets are 20 characters: a shorter one is a placeholder or a guessable
    word, and anyone who guesses it signs webhooks. It is refused like a placeholder QStash
    key, for every request (a QStash one too), and the secret itself is never said."""
    clock(T0 + 1)
    monkeypatch.setenv("SOKETI_SECRET", SECRET)
    monkeypatch.setenv(variable, short)
    monkeypatch.setenv("QSTASH_CURRENT_SIGNING_KEY", KEY)
    monkeypatch.setenv("QSTASH_NEXT_SIGNING_KEY", NEXT)
    for event in (soketi_event(short), signed_event()):
        response, log = call(event)
        assert response["statusCode"] == 500, log
        error = json.loads(response["body"])["error"]
        assert error.startswith(variable + " is shorter than 20 characters"), error
        assert log["reason"] == error and log["outcome"] == "error"
    assert not received


def test_a_soketi_secret_of_20_characters_is_accepted(monkeypatch, clock, call, received):
    secret = "s" * 20
    monkeypatch.setenv("SOKETI_SECRET", secret)
    clock(T0 + 1)
    response, log = call(soketi_event(secret))
    assert response["statusCode"] == 200, log
    assert received[0].source == "soketi"


def test_soketis_published_default_is_refused_as_published_and_allowed_only_by_the_opt_in(
        monkeypatch, clock, call):
    """`app-secret` is 10 characters, but what is wrong with it is that it is published: that
    is what the 500 says, and ALLOW_PUBLIC_DEV_KEYS=1 (make serve, local tests) still lets it
    through. No other short secret is let through by the opt-in."""
    clock(T0 + 1)
    monkeypatch.setenv("SOKETI_SECRET", "app-secret")
    response, log = call(soketi_event("app-secret"))
    assert response["statusCode"] == 500 and "published development key" in log["reason"]
    monkeypatch.setenv("ALLOW_PUBLIC_DEV_KEYS", "1")
    response, log = call(soketi_event("app-secret"))
    assert response["statusCode"] == 200, log
    monkeypatch.setenv("SOKETI_SECRET", "app-secret-2")
    response, log = call(soketi_event("app-secret-2"))
    assert response["statusCode"] == 500 and "shorter than 20" in log["reason"]



def test_configuration_errors_lists_every_problem_at_once():
    """Every variable with a problem is named in one call, whichever order they come in."""
    problems = config.configuration_errors({
        "QSTASH_CURRENT_SIGNING_KEY": "sig_short", "QSTASH_NEXT_SIGNING_KEY": NEXT,
        "SOKETI_SECRET": "s", "SOKETI_NEXT_SECRET": "also-short", "SOKETI_KEY": APP_KEY,
        "QSTASH_DESTINATION_URL": "https://qstash.upstash.io",
        "QSTASH_CLOCK_TOLERANCE": "7200", "DEDUP_TABLE": "dedup", "DEDUP_TTL": "3600",
        "METRICS_NAMESPACE": "AWS/Mine"})
    named = [problem.split(" ")[0].rstrip(":") for problem in problems]
    assert named == ["QSTASH_CURRENT_SIGNING_KEY", "SOKETI_SECRET", "SOKETI_NEXT_SECRET",
                     "QSTASH_DESTINATION_URL", "DEDUP_TTL", "METRICS_NAMESPACE"], problems
    assert "QSTASH_CLOCK_TOLERANCE" in problems[4]
    said = "\n".join(problems)
    for value in ("sig_short", "also-short", NEXT, APP_KEY):
        assert value not in said


# --- Configuration that would defeat deduplication ------------------------------------------

DEDUP = {"DEDUP_TABLE": "dedup", "AWS_REGION": "us-east-1"}


def go_zero_time_token(iat, url=FUNCTION_URL):
    """A token shaped like QStash's: exp = iat + 300, nbf Go's zero time, minted by PyJWT."""
    return jwt.encode({"aud": "", "body": qstash_body_hash(BODY), "exp": iat + 300, "iat": iat,
                       "iss": "Upstash", "jti": "jwt_window0001", "nbf": -62135596800,
                       "sub": url}, KEY, algorithm="HS256")


@pytest.mark.parametrize("tolerance", [0, 5, 1800, 86400])
def test_a_qstash_token_verifies_for_its_lifetime_plus_twice_the_tolerance(tolerance):
    """The rule's window, measured on verify itself: the earliest moment a token verifies is
    iat - tolerance (its iat may be that far in the future), the last just before
    exp + tolerance; a record kept for less than the span between can expire while the
    token still verifies."""
    def verifies(now):
        try:
            verify(go_zero_time_token(T0), (KEY, NEXT), BODY, FUNCTION_URL, now=now,
                   clock_tolerance=tolerance)
        except SignatureError:
            return False
        return True
    first, last = T0 - tolerance, T0 + 300 + tolerance
    assert verifies(first) and not verifies(first - 0.001)
    assert verifies(last - 0.001) and not verifies(last)
    assert last - first == config.QSTASH_TOKEN_LIFETIME + 2 * tolerance


def test_a_clock_tolerance_longer_than_the_dedup_ttl_allows_is_a_500_naming_both(
        qstash_env, monkeypatch, clock, call, received):
    """The reproduction: QSTASH_CLOCK_TOLERANCE=86400 with DEDUP_TTL=3600 let a token run
    handle again two hours later, its record gone. Now every request is the configuration
    500 naming both variables, before any table is touched or handle runs."""
    for name, value in {**DEDUP, "DEDUP_TTL": "3600", "QSTASH_CLOCK_TOLERANCE": "86400"}.items():
        monkeypatch.setenv(name, value)
    for now in (T0 + 1, T0 + 2 * 3600):
        clock(now)
        response, log = call(ev.function_url(url=FUNCTION_URL, body=BODY, now=now, headers={
            "Upstash-Signature": go_zero_time_token(T0)}))
        assert response["statusCode"] == 500, log
        error = json.loads(response["body"])["error"]
        assert "DEDUP_TTL" in error and "QSTASH_CLOCK_TOLERANCE" in error, error
        assert "173100 s" in error  # 300 + 2 x 86400
    assert not received


@pytest.mark.parametrize("tolerance, ttl, refused", [
    ("1800", "3900", False), ("1800", "3899", True),  # 300 + 2 x 1800 = 3900
    ("1650", "3600", False), ("1650.5", "3600", True),
    ("86400", "173100", False), ("86400", "173099", True),
    ("86400", "", False),  # the default DEDUP_TTL, 7 days
])
def test_dedup_ttl_must_cover_the_token_lifetime_plus_twice_the_tolerance(tolerance, ttl,
                                                                          refused):
    environ = {"QSTASH_CURRENT_SIGNING_KEY": KEY, "QSTASH_NEXT_SIGNING_KEY": NEXT, **DEDUP,
               "QSTASH_CLOCK_TOLERANCE": tolerance, "DEDUP_TTL": ttl}
    problems = config.configuration_errors(environ)
    named = [problem for problem in problems
             if "DEDUP_TTL" in problem and "QSTASH_CLOCK_TOLERANCE" in problem]
    assert bool(named) is refused, problems
    assert len(problems) == len(named)
    without_table = {name: value for name, value in environ.items() if name != "DEDUP_TABLE"}
    assert config.configuration_errors(without_table) == []


@pytest.mark.parametrize("max_age", [0, 1, 150, 300, 86400])
def test_a_soketi_webhook_verifies_for_twice_the_max_age(max_age):
    """The same window for soketi, measured on verify_pusher: a webhook verifies while
    |now - time_ms| <= SOKETI_MAX_AGE, 2 x SOKETI_MAX_AGE seconds; with 0, always."""
    from signed_webhooks.pusher import verify_pusher
    body = b'{"time_ms":%d,"events":[]}' % (T0 * 1000)
    signature = sign_pusher(SECRET, body)

    def verifies(now):
        try:
            verify_pusher(signature, SECRET, body, max_age=max_age, now=now)
        except SignatureError:
            return False
        return True
    if max_age == 0:
        assert verifies(T0 - 10 ** 9) and verifies(T0 + 10 ** 9)
        return
    assert verifies(T0 - max_age) and not verifies(T0 - max_age - 0.001)
    assert verifies(T0 + max_age) and not verifies(T0 + max_age + 0.001)


@pytest.mark.parametrize("max_age, ttl, refused", [
    ("1800", "3600", False), ("1801", "3600", True), ("", "3600", False),
    ("86400", "172800", False), ("86400", "172799", True), ("0", "", True), ("0", "3600", True),
])
def test_dedup_ttl_must_cover_twice_the_soketi_max_age(max_age, ttl, refused, monkeypatch,
                                                      clock, call, received):
    environ = {"SOKETI_SECRET": SECRET, **DEDUP, "SOKETI_MAX_AGE": max_age, "DEDUP_TTL": ttl}
    problems = config.configuration_errors(environ)
    assert bool(problems) is refused, problems
    assert all("SOKETI_MAX_AGE" in problem and "DEDUP_TTL" in problem for problem in problems)
    without_table = {name: value for name, value in environ.items() if name != "DEDUP_TABLE"}
    assert config.configuration_errors(without_table) == []
    if refused:  # and through the handler: every request is the 500, handle never runs
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        clock(T0 + 1)
        response, log = call(soketi_event(SECRET))
        assert response["statusCode"] == 500 and "SOKETI_MAX_AGE" in log["reason"], log
        assert not received
