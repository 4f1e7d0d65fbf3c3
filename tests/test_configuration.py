"""The configuration: read on every request (a change takes effect on the next one), judged
once per distinct environment, and refused when it would defeat what it configures.
Tokens are minted by PyJWT, events built by tools/lambda_events.py as AWS builds them."""
import json
import os
import re
import sys
import threading
from urllib.parse import urlsplit

import jwt  # PyJWT: an independent signer
import pytest

import lambda_events as ev
from conftest import APP_KEY, KEY, NEXT, SECRET
from signed_webhooks import config, dedup_config, keys
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
    assert last - first == dedup_config.QSTASH_TOKEN_LIFETIME + 2 * tolerance


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


# --- Each variable's rule, at its edges -------------------------------------------------------

KEYS = {"QSTASH_CURRENT_SIGNING_KEY": KEY, "QSTASH_NEXT_SIGNING_KEY": NEXT}


def problems_of(**variables):
    return config.configuration_errors({**KEYS, **variables})


def test_the_defaults_are_the_documented_ones(qstash_env, soketi_env, monkeypatch, clock, call):
    """README: QSTASH_CLOCK_TOLERANCE 5 s, SOKETI_MAX_AGE 300 s, DEDUP_TTL 604800 s (7 days),
    each when its variable is unset; measured on requests for the first two."""
    expires = T0 + 300  # signed_event's token: iat T0, exp T0 + 300
    clock(expires + 4.999)
    assert call(signed_event())[0]["statusCode"] == 200
    clock(expires + 5)
    assert call(signed_event())[0]["statusCode"] == 401
    sent = T0 + 1000  # soketi_event's time_ms
    clock(sent + 300)
    assert call(soketi_event(SECRET, now=sent))[0]["statusCode"] == 200
    clock(sent + 300.001)
    assert call(soketi_event(SECRET, now=sent))[0]["statusCode"] == 401
    monkeypatch.setenv("DEDUP_TABLE", "dedup")
    assert config.read()[0].dedup.ttl == 604800


@pytest.mark.parametrize("ttl, refused", [
    ("3600", False), ("3599", True), ("31622400", False), ("31622401", True),
    ("86400", False), ("0", True), ("-3600", True), ("3600.0", True), ("3600 ", True),
    ("soon", True), ("\uff13\uff16\uff10\uff10", True),  # fullwidth digits: int() reads them
    ("1" * 5000, True),  # over int()'s digit limit: refused by its length, never read
])
def test_dedup_ttl_is_whole_seconds_from_3600_to_31622400(ttl, refused):
    problems = problems_of(DEDUP_TABLE="dedup", DEDUP_TTL=ttl)
    expected = ["DEDUP_TTL must be whole seconds from 3600 to 31622400"] if refused else []
    assert problems == expected
    if not refused:
        settings = config.read({**KEYS, "DEDUP_TABLE": "dedup", "DEDUP_TTL": ttl})[0].dedup
        assert settings.ttl == int(ttl)


def test_dedup_ttl_is_judged_without_a_table_too():
    """A DEDUP_TTL set is a DEDUP_TTL meant: without DEDUP_TABLE it is still judged (a typo in
    the table's variable should not hide a broken TTL), and deduplication stays off."""
    assert problems_of(DEDUP_TTL="soon") == [
        "DEDUP_TTL must be whole seconds from 3600 to 31622400"]
    configuration, problems = config.read({**KEYS, "DEDUP_TTL": "86400"})
    assert problems == [] and configuration.dedup is None


@pytest.mark.parametrize("name", ["QSTASH_CLOCK_TOLERANCE", "SOKETI_MAX_AGE"])
@pytest.mark.parametrize("value, refused", [
    ("0", False), ("86400", False), ("86400.5", True), ("86401", True), ("-1", True),
    ("nan", True), ("1e9", True), ("five", True)])
def test_seconds_are_from_0_to_86400_and_a_refused_value_is_one_problem(name, value, refused):
    """A refused value is reported once, by its own rule: the configuration goes on with the
    default, so the rules that read it (DEDUP_TTL's windows) do not report it again."""
    environ = {**KEYS, "SOKETI_SECRET": SECRET, "DEDUP_TABLE": "dedup", name: value}
    configuration, problems = config.read(environ)
    if refused:
        assert problems == ["%s must be a number of seconds from 0 to 86400" % name]
        assert configuration.clock_tolerance == 5 and configuration.soketi_max_age == 300
    elif name == "SOKETI_MAX_AGE" and value == "0":
        assert len(problems) == 1 and problems[0].startswith("SOKETI_MAX_AGE is 0")
    else:
        assert problems == []


@pytest.mark.parametrize("table, refused", [
    ("abc", False), ("a" * 255, False), ("My_Table-1.x", False),
    ("ab", True), ("a" * 256, True), ("a b", True), ("dedup/other", True)])
def test_dedup_table_is_a_dynamodb_table_name(table, refused):
    expected = ["DEDUP_TABLE must be a DynamoDB table name: 3 to 255 of a-z, A-Z, 0-9, _ . -"]
    assert problems_of(DEDUP_TABLE=table) == (expected if refused else [])


@pytest.mark.parametrize("value, problem", [
    ("ftp://hooks.example.com/x", "must be an absolute http(s) URL"),
    ("hooks.example.com/x", "must be an absolute http(s) URL"),
    ("/relative/path", "must be an absolute http(s) URL"),
    ("https://", "must be an absolute http(s) URL"),
    ("https:///no-host", "must be an absolute http(s) URL"),
    ("http://[::1/x", "a value is not a URL"),
    ("https://ok.example/a ftp://other.example/", "must be an absolute http(s) URL"),
    ("https://ok.example/a http://[::1]:8080/b?x=1", None),
])
def test_each_destination_url_is_an_absolute_http_url(value, problem, qstash_env, monkeypatch,
                                                      clock, call, received):
    """Every value of QSTASH_DESTINATION_URL is an absolute http(s) URL (what QStash was
    given); anything else is a 500 naming the variable and the rule, for every request."""
    problems = problems_of(QSTASH_DESTINATION_URL=value)
    if problem is None:
        assert problems == []
        return
    assert len(problems) == 1 and problems[0].startswith("QSTASH_DESTINATION_URL: "), problems
    assert problem in problems[0]
    monkeypatch.setenv("QSTASH_DESTINATION_URL", value)
    clock(T0 + 1)
    response, log = call(signed_event())
    assert response["statusCode"] == 500 and "QSTASH_DESTINATION_URL" in log["reason"]
    assert not received


@pytest.mark.parametrize("environ, region", [
    ({"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "ap-south-1"}, "eu-west-1"),
    ({"AWS_DEFAULT_REGION": "ap-south-1"}, "ap-south-1"),
    ({}, "us-east-1"),
])
def test_the_dedup_table_is_reached_in_the_region_and_with_the_credentials_lambda_sets(
        environ, region):
    """The table's settings come from what Lambda sets: AWS_REGION (else AWS_DEFAULT_REGION,
    else us-east-1), the endpoint of DynamoDB in that region, the function's credentials."""
    credentials = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEY000001",
                   "AWS_SECRET_ACCESS_KEY": "example-secret-access-key",
                   "AWS_SESSION_TOKEN": "example-session-token"}
    configuration, problems = config.read({**KEYS, "DEDUP_TABLE": "orders-dedup", **environ,
                                           **credentials})
    settings = configuration.dedup
    assert problems == [] and settings.table == "orders-dedup" and settings.region == region
    assert settings.endpoint == urlsplit("https://dynamodb.%s.amazonaws.com" % region)
    assert (settings.access_key_id, settings.secret_access_key, settings.session_token) == (
        "AKIAEXAMPLEKEY000001", "example-secret-access-key", "example-session-token")
    local = config.read({**KEYS, "DEDUP_TABLE": "t-1", **environ,
                         "AWS_ENDPOINT_URL": "http://127.0.0.1:8000"})[0].dedup
    assert local.endpoint == urlsplit("http://127.0.0.1:8000") and local.region == region


@pytest.mark.parametrize("endpoint, accepted", [
    ("https://ddb.example:0", False), ("http://127.0.0.1:0", False),
    ("https://ddb.example:1", True), ("http://127.0.0.1:65535", True)])
def test_an_endpoint_on_port_0_is_refused(endpoint, accepted):
    """Port 0 names no server: refused with the endpoint rule, as a port out of range is."""
    problems = problems_of(DEDUP_TABLE="dedup", AWS_ENDPOINT_URL=endpoint)
    assert problems == ([] if accepted else ["AWS_ENDPOINT_URL" + dedup_config.ENDPOINT_RULE])


def test_the_features_configured_are_the_variables_set():
    """The optional modules imported at start follow these: DEDUP_TABLE, METRICS_NAMESPACE,
    SOKETI_SECRET, each when set and not empty."""
    assert config.configured_features({}) == set()
    assert config.configured_features({"DEDUP_TABLE": "", "METRICS_NAMESPACE": "",
                                       "SOKETI_SECRET": ""}) == set()
    assert config.configured_features({"DEDUP_TABLE": "t"}) == {"dedup"}
    assert config.configured_features({"METRICS_NAMESPACE": "n"}) == {"metrics"}
    assert config.configured_features({"SOKETI_SECRET": "s"}) == {"soketi"}


def test_soketi_key_is_read_and_checked(soketi_env, monkeypatch, clock, call, received):
    """SOKETI_KEY, when set, is the app key X-Pusher-Key must equal; one pasted with
    whitespace is a 500 naming it."""
    clock(T0 + 1)
    assert config.read()[0].soketi_key == APP_KEY
    assert call(soketi_event(SECRET))[0]["statusCode"] == 200
    event = soketi_event(SECRET)
    event["headers"]["x-pusher-key"] = "another-app-key"
    response, log = call(event)
    assert response["statusCode"] == 401 and log["reason"] == "X-Pusher-Key is not SOKETI_KEY"
    monkeypatch.setenv("SOKETI_KEY", APP_KEY + "\n")
    response, log = call(soketi_event(SECRET))
    assert response["statusCode"] == 500 and log["reason"].startswith("SOKETI_KEY has leading")
    assert len(received) == 1


def test_without_os_environs_own_dict_the_environment_is_judged_on_every_request(
        qstash_env, monkeypatch):
    """A Python whose os.environ keeps no `_data` dict (the reuse compares that dict) still
    reads the configuration, afresh each time: a change takes effect at once."""
    monkeypatch.setattr(os, "environ", dict(os.environ))
    configuration, problems = config.read()
    assert problems == [] and configuration.qstash_keys == {"": (KEY, NEXT)}
    os.environ["QSTASH_DESTINATION_URL"] = "https://hooks.example.com/a"
    assert config.read()[0].destination_urls == ["https://hooks.example.com/a"]
    os.environ["QSTASH_CURRENT_SIGNING_KEY"] = "short"
    assert config.read()[1][0].startswith("QSTASH_CURRENT_SIGNING_KEY is shorter")


# --- The keys' and secrets' rules (keys.py) --------------------------------------------------

DEV_CURRENT = "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r"  # the QStash CLI dev server's, published
DEV_NEXT = "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs"


@pytest.mark.parametrize("value, allowed", [
    ("", False), ("0", False), ("false", False), ("No", False),
    ("1", True), ("true", True), ("YES", True)])
def test_allow_public_dev_keys_reads_yes_and_no_words(value, allowed):
    problems = config.configuration_errors({"QSTASH_CURRENT_SIGNING_KEY": DEV_CURRENT,
                                            "QSTASH_NEXT_SIGNING_KEY": DEV_NEXT,
                                            "ALLOW_PUBLIC_DEV_KEYS": value})
    assert (problems == []) is allowed, problems


@pytest.mark.parametrize("value", ["2", "on", "maybe", "1 "])
def test_allow_public_dev_keys_of_another_value_is_a_problem_and_allows_nothing(value):
    """A value that is neither yes nor no is a problem of its own, and does not let the
    published keys through either: every problem is listed."""
    problems = config.configuration_errors({"QSTASH_CURRENT_SIGNING_KEY": DEV_CURRENT,
                                            "QSTASH_NEXT_SIGNING_KEY": DEV_NEXT,
                                            "ALLOW_PUBLIC_DEV_KEYS": value})
    named = [problem.split(" ")[0] for problem in problems]
    assert named == ["ALLOW_PUBLIC_DEV_KEYS", "QSTASH_CURRENT_SIGNING_KEY",
                     "QSTASH_NEXT_SIGNING_KEY"], problems
    assert "published development key" in problems[1]


def test_soketi_next_secret_without_soketi_secret_is_a_problem():
    assert config.configuration_errors({"SOKETI_NEXT_SECRET": SECRET}) == [
        "SOKETI_NEXT_SECRET is set but SOKETI_SECRET is not"]


@pytest.mark.parametrize("soketi_key", ["k", "app-key", "app-secret"])
def test_soketi_key_may_be_short_or_published(soketi_key):
    """The app key is public (every client holds it): one character is enough, and a
    published one is no problem, with or without ALLOW_PUBLIC_DEV_KEYS."""
    assert problems_of(SOKETI_SECRET=SECRET, SOKETI_KEY=soketi_key) == []


@pytest.mark.parametrize("spoil", ['"{}', "{}'", "'{}", '{}"', " {}", "{}\t"])
def test_a_key_with_a_quote_or_space_at_one_end_only_is_refused(spoil):
    problems = problems_of(QSTASH_NEXT_SIGNING_KEY=spoil.format(NEXT))
    assert problems == ["QSTASH_NEXT_SIGNING_KEY has leading or trailing whitespace or quotes: "
                        "paste the key alone"]


def test_a_half_configured_key_set_names_the_key_missing():
    assert config.configuration_errors({"QSTASH_CURRENT_SIGNING_KEY": KEY}) == [
        "QSTASH_NEXT_SIGNING_KEY is not set: QStash keys come in pairs (current and next), "
        "copy both from the console"]
    assert config.configuration_errors({"EU_WEST_1_QSTASH_NEXT_SIGNING_KEY": NEXT})[0] == (
        "EU_WEST_1_QSTASH_CURRENT_SIGNING_KEY is not set: QStash keys come in pairs (current "
        "and next), copy both from the console")


@pytest.mark.parametrize("name, region", [
    ("EU_CENTRAL_1_QSTASH_CURRENT_SIGNING_KEY", "EU_CENTRAL_1"),
    ("US_EAST_1_QSTASH_NEXT_SIGNING_KEY", "US_EAST_1"),
    ("X__QSTASH_NEXT_SIGNING_KEY", "X_"),  # the prefix keeps every character before the last _
    ("_QSTASH_CURRENT_SIGNING_KEY", ""),  # no prefix
    ("QSTASH_CURRENT_SIGNING_KEY", ""),  # the plain set, not a region
    ("eu_central_1_QSTASH_CURRENT_SIGNING_KEY", ""),  # lower case: not a key set's name
    ("EU-CENTRAL-1_QSTASH_CURRENT_SIGNING_KEY", ""),
    ("EU_QSTASH_CURRENT_SIGNING_KEYS", ""),
    ("EU_QSTASH_SIGNING_KEY", ""),
    ("ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789_QSTASH_NEXT_SIGNING_KEY",  # every character allowed
     "ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789"),
])
def test_a_regional_key_sets_name_is_upper_case_letters_digits_and_underscores(name, region):
    """`REGION_QSTASH_CURRENT_SIGNING_KEY` names a key set when REGION is one or more of A-Z,
    0-9 and _ (the pattern ([A-Z0-9_]+)_QSTASH_(CURRENT|NEXT)_SIGNING_KEY, checked here with
    re as the oracle); any other name is not a key set's."""
    pattern = re.compile(r"([A-Z0-9_]+)_QSTASH_(?:CURRENT|NEXT)_SIGNING_KEY")
    match = pattern.fullmatch(name)
    assert (match.group(1) if match else "") == region
    assert keys.region_of(name) == region
    environ = {**KEYS, name: REGION_KEY, name.replace("CURRENT", "NEXT"): REGION_KEY}
    if name.endswith("NEXT_SIGNING_KEY"):
        environ[name.replace("NEXT", "CURRENT")] = REGION_KEY
    prefixes = keys.qstash_key_set_prefixes(environ)
    assert prefixes == sorted({""} | ({region} if region else set()))
