"""The trust boundary (issue 12): the URL, the keys and the verdict come from AWS-set fields,
signed claims and configuration, never from what the caller chose. One or more regression
tests per finding, in the issue's order. Tokens are minted by PyJWT (an independent signer);
events come from tools/lambda_events.py, which builds them as each AWS door does."""
import base64
import hashlib
import json
import math
import tracemalloc

import jwt  # PyJWT: mints QStash-shaped tokens independently of tools/signer.py
import pytest

import lambda_events as ev
import lambda_function
from conftest import APP_KEY, KEY, NEXT, ROOT, SECRET
from lambda_function import NonRetryableError, Reject
from signer import sign_pusher

T0 = 1_790_000_000
FUNCTION_URL = "https://abc123.lambda-url.us-east-1.on.aws/hook"
PUBLIC_URL = "https://hooks.example.com/qstash"  # a custom domain in front of the function
REST_BASE = "https://api789.execute-api.us-east-1.amazonaws.com/prod/hook"
BODY = b'{"order":42}'
DEV_CURRENT, DEV_NEXT = "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r", "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs"
SOKETI_DEFAULT_SECRET = "app-secret"
REGION_KEY, REGION_NEXT = "sig_UsEast1CurrentKey0123456789", "sig_UsEast1NextKey0123456789ab"
LAMBDA_SYNC_LIMIT = 6 * 1024 * 1024  # bytes: Lambda's synchronous invocation payload limit


# --- Helpers --------------------------------------------------------------------------------

def qstash_body_hash(body: bytes) -> str:
    """QStash's `body` claim, computed here from hashlib (not the project's signer)."""
    return base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode()


def pyjwt_token(url, body=BODY, key=KEY, now=T0, jti="jwt_trustBoundary0001"):
    """A token shaped like QStash's, minted by PyJWT."""
    claims = {"aud": "", "body": qstash_body_hash(body), "exp": now + 300, "iat": now,
              "iss": "Upstash", "jti": jti, "nbf": now, "sub": url}
    return jwt.encode(claims, key, algorithm="HS256")


def qstash_headers(url, body=BODY, key=KEY, message_id="msg_trust0001", **extra):
    """The headers QStash sends, with a PyJWT token for `url`."""
    return {"Upstash-Signature": pyjwt_token(url, body, key), "Upstash-Message-Id": message_id,
            "Upstash-Retried": "0", "User-Agent": "Upstash-QStash",
            "Content-Type": "application/json", **extra}


def function_url_event(signed_for, event_url=FUNCTION_URL, body=BODY, key=KEY, **extra):
    """A Function URL event arriving at `event_url`, carrying a token signed for `signed_for`."""
    return ev.function_url(url=event_url, headers=qstash_headers(signed_for, body, key, **extra),
                           body=body, now=T0)


def rest_event(signed_for, event_url=REST_BASE, body=BODY):
    return ev.rest(url=event_url, headers=qstash_headers(signed_for, body), body=body, now=T0)


def alb_event(signed_for, event_url="https://hooks.example.com/hook", body=BODY,
              multi_value=False, **extra):
    return ev.alb(url=event_url, headers=qstash_headers(signed_for, body, **extra), body=body,
                  multi_value=multi_value)


def soketi_body(now=T0):
    return json.dumps({"time_ms": now * 1000, "events": [
        {"name": "channel_occupied", "channel": "presence-room"}]},
        separators=(",", ":")).encode()


def soketi_http_event(build=ev.function_url, secret=SECRET, **options):
    body = soketi_body()
    return build(headers=ev.soketi_headers(APP_KEY, secret, body), body=body, **options)


def status(response):
    return response["statusCode"]


def error_text(response):
    return json.loads(response["body"])["error"]


def everything_said(response, log):
    """All text the handler gave away: the response and its log line."""
    return json.dumps(response) + json.dumps(log)


@pytest.fixture
def destination(monkeypatch):
    """destination(value) sets QSTASH_DESTINATION_URL."""
    return lambda value: monkeypatch.setenv("QSTASH_DESTINATION_URL", value)


@pytest.fixture
def at_t0(clock):
    clock(T0 + 1)


# === 1. The URL QStash signed ================================================================

# --- QSTASH_URL is Upstash's API base: ignored --------------------------------------------

def test_upstash_console_env_block_with_qstash_url_does_not_break_genuine_messages(
        qstash_env, monkeypatch, at_t0, call, received):
    """The console's block sets QSTASH_URL=https://qstash.upstash.io: it is not our URL."""
    monkeypatch.setenv("QSTASH_URL", "https://qstash.upstash.io")
    monkeypatch.setenv("QSTASH_TOKEN", "eyJVc2VySUQiOiJ0ZXN0LXRva2VuLW5vdC1yZWFsIn0=")
    response, log = call(function_url_event(FUNCTION_URL))
    assert status(response) == 200, log
    assert received


def test_qstash_url_no_longer_names_the_destination(qstash_env, monkeypatch, at_t0, call,
                                                    received):
    """QSTASH_URL used to replace the derived URL; now it plays no part at all."""
    monkeypatch.setenv("QSTASH_URL", PUBLIC_URL)
    response, log = call(function_url_event(PUBLIC_URL))
    assert status(response) == 401, log
    assert not received


# --- QSTASH_DESTINATION_URL: one URL or several, replacing the derived one -----------------

def test_destination_url_replaces_the_derived_url(qstash_env, destination, at_t0, call,
                                                  received):
    destination(PUBLIC_URL)
    response, log = call(function_url_event(PUBLIC_URL))
    assert status(response) == 200, log
    assert received[0].claims["sub"] == PUBLIC_URL


def test_with_a_destination_set_a_token_for_the_events_own_url_is_refused(
        qstash_env, destination, at_t0, call, received):
    destination(PUBLIC_URL)
    response, log = call(function_url_event(FUNCTION_URL))
    assert status(response) == 401, log
    assert not received


@pytest.mark.parametrize("separator", [" ", "\n", "\t", "  \n  ", "\r\n"])
def test_several_destination_urls_any_of_them_passes(separator, qstash_env, destination,
                                                     at_t0, call):
    urls = [PUBLIC_URL, FUNCTION_URL, "https://api.example.org/v1/hooks/qstash?tenant=7"]
    destination(separator.join(urls))
    for url in urls:
        response, log = call(function_url_event(url))
        assert status(response) == 200, (url, log)
    response, log = call(function_url_event("https://elsewhere.example.com/qstash"))
    assert status(response) == 401, log


def test_with_a_destination_set_the_events_host_path_and_query_play_no_part(
        qstash_env, destination, at_t0, call):
    destination(PUBLIC_URL)
    event = function_url_event(PUBLIC_URL, event_url="https://zzz.lambda-url.eu-west-1.on.aws"
                                                     "/any/path?x=1&y=2")
    response, log = call(event)
    assert status(response) == 200, log


@pytest.mark.parametrize("value", [
    "https://qstash.upstash.io",
    "https://qstash.upstash.io/v2/publish/",
    "https://qstash-us-east-1.upstash.io",
    "https://hooks.example.com/qstash https://qstash-eu-central-1.upstash.io/v2",
])
def test_destination_on_an_upstash_io_host_is_a_500_naming_the_variable(
        value, qstash_env, destination, at_t0, call, received):
    """That is QStash's API base, not this function's URL."""
    destination(value)
    response, log = call(function_url_event(FUNCTION_URL))
    assert status(response) == 500, log
    assert "QSTASH_DESTINATION_URL" in error_text(response)
    assert "QSTASH_DESTINATION_URL" in log["reason"]
    assert not received


@pytest.mark.parametrize("value", [
    "https://notupstash.io/qstash",
    "https://hooks.example.com/from/qstash.upstash.io",
    "https://hooks.example.com/qstash?via=upstash.io",
])
def test_only_an_upstash_io_host_is_refused(value, qstash_env, destination, at_t0, call):
    destination(value)
    response, log = call(function_url_event(value))
    assert status(response) == 200, log


# --- ALB: Host and X-Forwarded-Proto are the caller's words --------------------------------

@pytest.mark.parametrize("multi_value", [False, True])
def test_alb_qstash_without_destination_is_a_500_naming_it(multi_value, qstash_env, at_t0,
                                                            call, received):
    """Even a token that matches the Host-derived URL: Host is chosen by the client."""
    url = "https://hooks.example.com/hook"
    response, log = call(alb_event(url, event_url=url, multi_value=multi_value))
    assert status(response) == 500, log
    assert "QSTASH_DESTINATION_URL" in log["reason"]
    assert "QSTASH_DESTINATION_URL" in error_text(response)
    assert not received


@pytest.mark.parametrize("multi_value", [False, True])
def test_alb_token_minted_for_another_url_of_the_account_is_refused(
        multi_value, qstash_env, destination, at_t0, call, received):
    """The attack: a token QStash signed for another endpoint of the same account, replayed
    to the ALB with Host and path set to match that token's sub."""
    destination("https://hooks.example.com/hook")
    other = "https://billing.example.com/internal/refund"
    response, log = call(alb_event(other, event_url=other, multi_value=multi_value))
    assert status(response) == 401, log
    assert not received


@pytest.mark.parametrize("multi_value", [False, True])
def test_alb_genuine_message_passes_whatever_host_and_proto_say(
        multi_value, qstash_env, destination, at_t0, call, received):
    destination("https://hooks.example.com/hook")
    event = alb_event("https://hooks.example.com/hook", event_url="https://evil.example/x?y=1",
                      multi_value=multi_value)
    headers = event["multiValueHeaders"] if multi_value else event["headers"]
    headers["x-forwarded-proto"] = ["http"] if multi_value else "http"
    response, log = call(event)
    assert status(response) == 200, log
    assert received


def test_alb_x_forwarded_proto_cannot_turn_https_into_http(qstash_env, destination, at_t0,
                                                          call, received):
    destination("https://hooks.example.com/hook")
    event = alb_event("http://hooks.example.com/hook", event_url="https://hooks.example.com/hook")
    event["headers"]["x-forwarded-proto"] = "http"
    response, log = call(event)
    assert status(response) == 401, log
    assert not received


# --- REST and ALB: parsed parameters compared as a multiset of decoded pairs ---------------

GENUINE_QUERIES = ["?a=1&b=2&a=3", "?flag", "?q=a+b", "?p=%2F", "?p=%2F&flag&q=a+b&p=x"]


@pytest.mark.parametrize("query", GENUINE_QUERIES)
def test_rest_genuine_query_is_not_a_false_401(query, qstash_env, at_t0, call, received):
    url = REST_BASE + query
    response, log = call(rest_event(url, event_url=url))
    assert status(response) == 200, log
    assert received


def test_rest_query_pairs_in_another_order_are_the_same_multiset(qstash_env, at_t0, call):
    response, log = call(rest_event(REST_BASE + "?a=1&b=2&a=3",
                                    event_url=REST_BASE + "?b=2&a=3&a=1"))
    assert status(response) == 200, log


@pytest.mark.parametrize("signed, arrived", [
    ("?a=1&b=2&a=3", "?a=1&b=2"),
    ("?a=1&b=2&a=3", "?a=1&b=2&a=3&c=4"),
    ("?a=1&b=2&a=3", "?a=3&b=2&a=3"),
    ("?a=1&b=2&a=3", "?a=1&b=2&a=3&a=3"),
    ("?flag", ""),
    ("?flag", "?flag=1"),
    ("", "?flag"),
    ("?q=a+b", "?q=a-b"),
    ("?p=%2F", "?p=%252F"),
    ("?tenant=7", "?tenant=8"),
])
def test_rest_any_other_query_fails(signed, arrived, qstash_env, at_t0, call, received):
    response, log = call(rest_event(REST_BASE + signed, event_url=REST_BASE + arrived))
    assert status(response) == 401, log
    assert not received


def test_rest_scheme_host_and_path_still_compare_exactly(qstash_env, at_t0, call):
    for signed in (REST_BASE.replace("/hook", "/hook2") + "?a=1",
                   REST_BASE.replace("api789", "api788") + "?a=1",
                   REST_BASE.replace("https:", "http:") + "?a=1"):
        response, log = call(rest_event(signed, event_url=REST_BASE + "?a=1"))
        assert status(response) == 401, (signed, log)


@pytest.mark.parametrize("signed, raw", [
    ("?a=1&b=2&a=3", "a=1&a=3&b=2"),
    ("?q=a+b", "q=a%20b"),
    ("?p=%2F", "p=/"),
    ("?flag", "flag="),
])
def test_payload_2_keeps_its_exact_raw_query_string(signed, raw, qstash_env, at_t0, call):
    """Already so before issue 12; kept. Function URLs and HTTP APIs give the raw string."""
    event = function_url_event(FUNCTION_URL + signed, event_url=FUNCTION_URL + signed)
    assert status(call(event)[0]) == 200
    event["rawQueryString"] = raw
    assert status(call(event)[0]) == 401


# --- The URL is needed only when it is used ------------------------------------------------

def test_rest_event_without_domain_name_is_answered_when_a_destination_is_set(
        qstash_env, destination, at_t0, call, received):
    """What `sam local generate-event` and the console's test button produce."""
    destination(PUBLIC_URL)
    event = rest_event(PUBLIC_URL)
    del event["requestContext"]["domainName"]
    response, log = call(event)
    assert status(response) == 200, log
    assert received


def test_rest_soketi_webhook_without_domain_name_is_answered(soketi_env, at_t0, call,
                                                            received):
    event = soketi_http_event(ev.rest)
    del event["requestContext"]["domainName"]
    response, log = call(event)
    assert status(response) == 200, log
    assert received


@pytest.mark.parametrize("multi_value", [False, True])
def test_alb_event_without_host_is_answered_when_a_destination_is_set(
        multi_value, qstash_env, destination, at_t0, call, received):
    destination(PUBLIC_URL)
    event = alb_event(PUBLIC_URL, multi_value=multi_value)
    (event["multiValueHeaders"] if multi_value else event["headers"]).pop("host")
    response, log = call(event)
    assert status(response) == 200, log
    assert received


@pytest.mark.parametrize("multi_value", [False, True])
def test_alb_soketi_webhook_without_host_is_answered(multi_value, soketi_env, at_t0, call,
                                                     received):
    event = soketi_http_event(ev.alb, multi_value=multi_value)
    (event["multiValueHeaders"] if multi_value else event["headers"]).pop("host")
    response, log = call(event)
    assert status(response) == 200, log
    assert received


def test_rest_qstash_without_domain_name_or_destination_never_reaches_handle(
        qstash_env, at_t0, call, received):
    """The URL QStash signed cannot be derived: a 400 that says which field is missing and
    which variable to set, never handle."""
    event = rest_event(REST_BASE)
    del event["requestContext"]["domainName"]
    response, log = call(event)
    assert status(response) == 400, log
    assert "requestContext.domainName" in log["reason"]
    assert "set QSTASH_DESTINATION_URL" in log["reason"]
    assert not received


# --- A direct invoker can hand over any domainName: the destination is the defence ---------

def test_invoker_forging_domain_name_is_stopped_by_the_destination(
        qstash_env, destination, at_t0, call, received):
    """Someone allowed lambda:InvokeFunction replays a token QStash signed for another URL of
    the account, in a Function URL event whose domainName names that URL."""
    other = "https://other-function.lambda-url.us-east-1.on.aws/hook"
    event = function_url_event(other, event_url=other)
    assert status(call(event)[0]) == 200  # nothing in the event can tell: documented
    destination(FUNCTION_URL)
    response, log = call(event)
    assert status(response) == 401, log
    assert len(received) == 1


# === 2. Keys and configuration ===============================================================

@pytest.fixture
def us_east_1_keys(monkeypatch):
    """A complete regional set for US-EAST-1."""
    monkeypatch.setenv("US_EAST_1_QSTASH_CURRENT_SIGNING_KEY", REGION_KEY)
    monkeypatch.setenv("US_EAST_1_QSTASH_NEXT_SIGNING_KEY", REGION_NEXT)


def qstash_request_with_region(region=None, key=KEY):
    extra = {"Upstash-Region": region} if region else {}
    return function_url_event(FUNCTION_URL, key=key, **extra)


# --- Key sets are judged from configuration alone ------------------------------------------

@pytest.mark.parametrize("request_kind", ["qstash, no region", "qstash, another region",
                                          "soketi", "unsigned"])
def test_half_configured_region_set_is_500_for_every_request(request_kind, qstash_env,
                                                             soketi_env, monkeypatch, at_t0,
                                                             call, received):
    monkeypatch.setenv("EU_CENTRAL_1_QSTASH_CURRENT_SIGNING_KEY", "sig_EuCentral1Current0123456")
    event = {"qstash, no region": lambda: qstash_request_with_region(),
             "qstash, another region": lambda: qstash_request_with_region("US-EAST-1"),
             "soketi": soketi_http_event,
             "unsigned": lambda: ev.function_url(url=FUNCTION_URL, body=b"{}")}[request_kind]()
    response, log = call(event)
    assert status(response) == 500, log
    assert "EU_CENTRAL_1_QSTASH_NEXT_SIGNING_KEY" in error_text(response)
    assert not received


def test_half_configured_plain_set_is_500_even_for_a_region_that_is_complete(
        us_east_1_keys, monkeypatch, at_t0, call, received):
    monkeypatch.setenv("QSTASH_CURRENT_SIGNING_KEY", KEY)
    response, log = call(qstash_request_with_region("US-EAST-1", key=REGION_KEY))
    assert status(response) == 500, log
    assert "QSTASH_NEXT_SIGNING_KEY" in error_text(response)
    assert not received


def test_region_header_selects_a_configured_region_else_the_plain_set(
        qstash_env, us_east_1_keys, at_t0, call):
    """Already so before issue 12; kept."""
    assert status(call(qstash_request_with_region("US-EAST-1", REGION_NEXT))[0]) == 200
    assert status(call(qstash_request_with_region("US-EAST-1", KEY))[0]) == 401
    assert status(call(qstash_request_with_region("EU-CENTRAL-1", KEY))[0]) == 200
    assert status(call(qstash_request_with_region(None, KEY))[0]) == 200


@pytest.mark.parametrize("region", ["EU-CENTRAL-1", None])
def test_no_keys_for_the_requests_region_is_a_401_not_a_500(region, us_east_1_keys, at_t0,
                                                           call, received):
    """Only a regional set is configured: anonymous traffic picking another region (or none)
    must not be able to trigger a 500."""
    response, log = call(qstash_request_with_region(region, key=REGION_KEY))
    assert status(response) == 401, log
    assert "no QStash keys for region" in log["reason"]
    if region:
        assert region in log["reason"] or region.replace("-", "_") in log["reason"]
    assert not received
    assert status(call(qstash_request_with_region("US-EAST-1", key=REGION_KEY))[0]) == 200


def test_an_unknown_region_is_named_by_32_characters_at_most(us_east_1_keys, at_t0, call):
    """Upstash-Region is the caller's text: the reason names it with anything but letters,
    digits, _ and - replaced, and 32 characters of it at most."""
    region = "eu-central-1<b>" + "x" * 40
    response, log = call(qstash_request_with_region(region, key=REGION_KEY))
    assert status(response) == 401
    assert log["reason"] == "no QStash keys for region eu-central-1?b?" + "x" * 17


# --- Keys that cannot be right --------------------------------------------------------------

def assert_config_500(response, log, variable, *never):
    assert status(response) == 500, log
    assert variable in error_text(response) and variable in log["reason"]
    said = everything_said(response, log)
    for value in never:
        assert value not in said


@pytest.mark.parametrize("spoil", [
    lambda k: k + " ", lambda k: " " + k, lambda k: k + "\n", lambda k: "\t" + k,
    lambda k: '"' + k + '"', lambda k: "'" + k + "'", lambda k: k + '"', lambda k: "\u00a0" + k],
    ids=["trailing space", "leading space", "trailing newline", "leading tab", "double quotes",
         "single quotes", "one quote", "no-break space"])
@pytest.mark.parametrize("variable", ["QSTASH_CURRENT_SIGNING_KEY", "QSTASH_NEXT_SIGNING_KEY"])
def test_qstash_key_with_whitespace_or_quotes_is_a_500_naming_it(spoil, variable, qstash_env,
                                                                monkeypatch, at_t0, call,
                                                                received):
    original = KEY if variable == "QSTASH_CURRENT_SIGNING_KEY" else NEXT
    monkeypatch.setenv(variable, spoil(original))
    response, log = call(function_url_event(FUNCTION_URL, key=original))
    assert_config_500(response, log, variable, original)
    assert not received


def test_regional_key_with_whitespace_is_a_500_for_every_request(qstash_env, monkeypatch,
                                                                 at_t0, call):
    monkeypatch.setenv("US_EAST_1_QSTASH_CURRENT_SIGNING_KEY", REGION_KEY + "\n")
    monkeypatch.setenv("US_EAST_1_QSTASH_NEXT_SIGNING_KEY", REGION_NEXT)
    response, log = call(qstash_request_with_region())
    assert_config_500(response, log, "US_EAST_1_QSTASH_CURRENT_SIGNING_KEY", REGION_KEY)


@pytest.mark.parametrize("variable", ["SOKETI_SECRET", "SOKETI_NEXT_SECRET"])
@pytest.mark.parametrize("spoil", [lambda s: s + "\n", lambda s: " " + s, lambda s: '"%s"' % s])
def test_soketi_secret_with_whitespace_or_quotes_is_a_500_naming_it(variable, spoil,
                                                                   soketi_env, monkeypatch,
                                                                   at_t0, call, received):
    monkeypatch.setenv(variable, spoil(SECRET))
    response, log = call(soketi_http_event())
    assert_config_500(response, log, variable, SECRET)
    assert not received


@pytest.mark.parametrize("short", ["x", "-", "changeme", "sig_" + "a" * 15])
@pytest.mark.parametrize("variable", ["QSTASH_CURRENT_SIGNING_KEY", "QSTASH_NEXT_SIGNING_KEY",
                                      "US_EAST_1_QSTASH_NEXT_SIGNING_KEY"])
def test_qstash_key_under_20_characters_is_a_500_naming_it(short, variable, qstash_env,
                                                          monkeypatch, at_t0, call, received):
    """A placeholder key lets anyone forge: it is refused, not used."""
    if variable.startswith("US_EAST_1"):
        monkeypatch.setenv("US_EAST_1_QSTASH_CURRENT_SIGNING_KEY", REGION_KEY)
    monkeypatch.setenv(variable, short)
    response, log = call(function_url_event(FUNCTION_URL, key=short))
    assert status(response) == 500, log
    assert variable in error_text(response)
    assert not received


def test_qstash_key_of_exactly_20_characters_is_accepted(monkeypatch, at_t0, call):
    key = "sig_" + "k" * 16
    assert len(key) == 20
    monkeypatch.setenv("QSTASH_CURRENT_SIGNING_KEY", key)
    monkeypatch.setenv("QSTASH_NEXT_SIGNING_KEY", NEXT)
    response, log = call(function_url_event(FUNCTION_URL, key=key))
    assert status(response) == 200, log


@pytest.mark.parametrize("variable, value", [
    ("QSTASH_CURRENT_SIGNING_KEY", DEV_CURRENT), ("QSTASH_NEXT_SIGNING_KEY", DEV_NEXT),
    ("QSTASH_CURRENT_SIGNING_KEY", DEV_NEXT), ("QSTASH_NEXT_SIGNING_KEY", DEV_CURRENT)])
@pytest.mark.parametrize("allow", [None, "0", ""])
def test_qstash_dev_server_public_keys_are_a_500(variable, value, allow, qstash_env,
                                                 monkeypatch, at_t0, call, received):
    if allow is not None:
        monkeypatch.setenv("ALLOW_PUBLIC_DEV_KEYS", allow)
    monkeypatch.setenv(variable, value)
    response, log = call(function_url_event(FUNCTION_URL, key=value))
    assert_config_500(response, log, variable, value)
    assert not received


def test_dev_keys_as_a_regional_set_are_a_500(qstash_env, monkeypatch, at_t0, call):
    monkeypatch.setenv("US_EAST_1_QSTASH_CURRENT_SIGNING_KEY", DEV_CURRENT)
    monkeypatch.setenv("US_EAST_1_QSTASH_NEXT_SIGNING_KEY", DEV_NEXT)
    response, log = call(qstash_request_with_region("US-EAST-1", key=DEV_CURRENT))
    assert_config_500(response, log, "US_EAST_1_QSTASH_", DEV_CURRENT, DEV_NEXT)


def test_dev_server_keys_are_accepted_with_the_explicit_opt_in(monkeypatch, at_t0, call):
    """What `make serve` and the tests use, and nothing else."""
    monkeypatch.setenv("QSTASH_CURRENT_SIGNING_KEY", DEV_CURRENT)
    monkeypatch.setenv("QSTASH_NEXT_SIGNING_KEY", DEV_NEXT)
    monkeypatch.setenv("ALLOW_PUBLIC_DEV_KEYS", "1")
    for key in (DEV_CURRENT, DEV_NEXT):
        response, log = call(function_url_event(FUNCTION_URL, key=key))
        assert status(response) == 200, log


@pytest.mark.parametrize("variable", ["SOKETI_SECRET", "SOKETI_NEXT_SECRET"])
def test_soketi_default_app_secret_is_a_500(variable, soketi_env, monkeypatch, at_t0, call,
                                            received):
    monkeypatch.setenv(variable, SOKETI_DEFAULT_SECRET)
    response, log = call(soketi_http_event(secret=SOKETI_DEFAULT_SECRET))
    assert_config_500(response, log, variable, SOKETI_DEFAULT_SECRET)
    assert not received


def test_soketi_default_app_secret_is_accepted_with_the_explicit_opt_in(monkeypatch, at_t0,
                                                                       call):
    monkeypatch.setenv("SOKETI_SECRET", SOKETI_DEFAULT_SECRET)
    monkeypatch.setenv("ALLOW_PUBLIC_DEV_KEYS", "1")
    response, log = call(soketi_http_event(secret=SOKETI_DEFAULT_SECRET))
    assert status(response) == 200, log


def test_a_broken_soketi_secret_is_a_500_for_qstash_requests_too(qstash_env, monkeypatch,
                                                                 at_t0, call, received):
    """Judged from configuration alone: the request's kind does not pick what is checked."""
    monkeypatch.setenv("SOKETI_SECRET", SOKETI_DEFAULT_SECRET)
    response, log = call(function_url_event(FUNCTION_URL))
    assert_config_500(response, log, "SOKETI_SECRET", SOKETI_DEFAULT_SECRET)
    assert not received


# --- configuration_errors: every problem, for deploy tooling --------------------------------

def configuration_errors():
    """The public function deploy tooling calls."""
    from signed_webhooks.config import configuration_errors
    return configuration_errors


def test_configuration_errors_is_empty_for_a_good_configuration():
    check = configuration_errors()
    assert check({"QSTASH_CURRENT_SIGNING_KEY": KEY, "QSTASH_NEXT_SIGNING_KEY": NEXT,
                  "QSTASH_DESTINATION_URL": PUBLIC_URL + " " + FUNCTION_URL,
                  "SOKETI_SECRET": SECRET, "SOKETI_KEY": APP_KEY}) == []
    assert check({"SOKETI_SECRET": SECRET}) == []


def test_configuration_errors_lists_every_problem_by_name_never_by_value():
    check = configuration_errors()
    environ = {"QSTASH_CURRENT_SIGNING_KEY": KEY + " ",
               "EU_CENTRAL_1_QSTASH_NEXT_SIGNING_KEY": "sig_EuCentral1NextKey012345",
               "SOKETI_SECRET": SOKETI_DEFAULT_SECRET,
               "QSTASH_DESTINATION_URL": "https://qstash.upstash.io"}
    errors = check(environ)
    assert all(isinstance(message, str) for message in errors)
    text = "\n".join(errors)
    for variable in ("QSTASH_CURRENT_SIGNING_KEY", "QSTASH_NEXT_SIGNING_KEY",
                     "EU_CENTRAL_1_QSTASH_CURRENT_SIGNING_KEY", "SOKETI_SECRET",
                     "QSTASH_DESTINATION_URL"):
        assert variable in text, (variable, errors)
    assert KEY not in text and "sig_EuCentral1NextKey012345" not in text
    opted_in = "\n".join(check({**environ, "ALLOW_PUBLIC_DEV_KEYS": "1"}))
    assert "SOKETI_SECRET" not in opted_in  # the opt-in lifts the public-key rule only
    assert "QSTASH_DESTINATION_URL" in opted_in and "QSTASH_NEXT_SIGNING_KEY" in opted_in


def test_configuration_errors_reads_the_mapping_it_is_given_not_the_environment(qstash_env):
    check = configuration_errors()
    assert check({"QSTASH_CURRENT_SIGNING_KEY": "x"})  # the environment is fine, the map not
    assert check({"QSTASH_CURRENT_SIGNING_KEY": DEV_CURRENT,
                  "QSTASH_NEXT_SIGNING_KEY": DEV_NEXT, "ALLOW_PUBLIC_DEV_KEYS": "1"}) == []


# === 3. soketi direct invocations ============================================================

def signed_invocation(signed_events, delivered_events):
    """soketi signed JSON.stringify of `signed_events` (ints, strings and null only here, where
    json.dumps writes what Node writes); the event delivered carries `delivered_events`."""
    signed = {"time_ms": T0 * 1000, "events": signed_events}
    signature = sign_pusher(SECRET, json.dumps(signed, separators=(",", ":")).encode())
    return {"payload": {"time_ms": T0 * 1000, "events": delivered_events},
            "headers": {"X-Pusher-Key": APP_KEY, "X-Pusher-Signature": signature}}


@pytest.mark.parametrize("signed_value, delivered_value", [
    (7, 7.0), (None, float("inf")), (0, -0.0), (100000000000000000000, 1e20)],
    ids=["7 as 7.0", "null as 1e999", "0 as -0.0", "1e20 integer as float"])
def test_handle_sees_the_values_that_were_signed_not_the_event_as_delivered(
        signed_value, delivered_value, soketi_env, at_t0, call, received):
    """Node's JSON.stringify writes 7.0 as 7, Infinity as null and -0 as 0: the same signature
    covers both spellings. handle must see what was signed (or nothing at all)."""
    def events(value):
        return [{"name": "client_event", "channel": "private-c", "event": "client-n",
                 "data": {"n": value}}]
    response, log = call(signed_invocation(events(signed_value), events(delivered_value)))
    if status(response) != 200:
        assert status(response) in (400, 401) and not received
        return
    seen = received[0].events[0]["data"]["n"]
    assert type(seen) is type(signed_value) and seen == signed_value
    if isinstance(seen, (int, float)):
        assert math.copysign(1, seen) == 1
    assert received[0].json["events"] == events(signed_value)


def oversize_invocation(size):
    """A correctly signed direct invocation whose payload rebuilds to about `size` bytes."""
    payload = {"time_ms": T0 * 1000, "events": [
        {"name": "client_event", "channel": "private-c", "event": "client-big",
         "data": "x" * size}]}
    body = json.dumps(payload, separators=(",", ":")).encode()
    return {"payload": payload,
            "headers": {"X-Pusher-Key": APP_KEY, "X-Pusher-Signature": sign_pusher(SECRET, body)}}


def test_direct_invocation_over_lambdas_6_mb_is_refused_before_any_rebuild(
        soketi_env, at_t0, call, received):
    """Peak memory while answering stays far below the payload: nothing was rebuilt."""
    event = oversize_invocation(LAMBDA_SYNC_LIMIT + 100_000)
    tracemalloc.start()
    try:
        response, log = call(event)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert 400 <= status(response) < 500, log
    assert not received
    assert peak < LAMBDA_SYNC_LIMIT // 4, peak


def test_direct_invocation_under_6_mb_is_still_accepted(soketi_env, at_t0, call, received):
    response, log = call(oversize_invocation(LAMBDA_SYNC_LIMIT - 200_000))
    assert status(response) == 200, log


def forged_invocation_peak(payload):
    """(peak traced memory of answering a forged direct invocation: the rebuild, then the
    refusal; the size of the payload's JSON text)."""
    event = {"payload": payload, "headers": {"X-Pusher-Key": APP_KEY,
                                             "X-Pusher-Signature": "0" * 64}}
    rebuilt_size = len(json.dumps(payload, separators=(",", ":")).encode("utf-8",
                                                                          "surrogatepass"))
    tracemalloc.start()
    try:
        response = lambda_function.lambda_handler(event, None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert status(response) == 401
    return peak, rebuilt_size


PAYLOAD_DATA = {  # data(n): about n items, or n characters for the strings
    "lone surrogates in a long string": lambda n: "\ud800a" * n,
    "one lone surrogate": lambda n: "a" * (2 * n) + "\ud800",
    "a long list of floats": lambda n: [index / 7 for index in range(n // 10)],
    "a long list of integers": lambda n: [7] * (n // 10),
    "many one-float lists": lambda n: [[index / 7] for index in range(n // 10)],
    "many empty lists": lambda n: [[] for _ in range(n // 10)],
    "many small objects": lambda n: [{"k": 0.5} for _ in range(n // 10)],
}
SCALE = 100_000  # measured at SCALE and twice it: past the one-call path for small payloads
# (_FAST) and the 64K slices of long strings


@pytest.mark.parametrize("data", PAYLOAD_DATA.values(), ids=PAYLOAD_DATA)
def test_rebuild_before_the_signature_is_known_grows_within_3x_memory(data, soketi_env, at_t0,
                                                                      capsys):
    """Issue 12: whatever the payload holds, answering a forged direct invocation (the
    rebuild, then the refusal) peaks within 3x the rebuilt bytes. Measured at two sizes, so
    fixed costs (a slice buffer, caches) cancel and what grows with the payload is judged."""
    def payload(n):
        return {"time_ms": T0 * 1000, "events": [{"name": "client_event", "data": data(n)}]}
    forged_invocation_peak(payload(100))  # one-time costs (caches) are not per payload
    small_peak, small_size = forged_invocation_peak(payload(SCALE))
    large_peak, large_size = forged_invocation_peak(payload(2 * SCALE))
    capsys.readouterr()
    assert (large_peak - small_peak) / (large_size - small_size) <= 3


# === 4. Never raise, whatever handle does ====================================================

def run_handle(monkeypatch, call, behaviour, event=None):
    monkeypatch.setattr(lambda_function, "handle", behaviour)
    return call(event or function_url_event(FUNCTION_URL))


def raising(exception):
    def handle(message):
        raise exception
    return handle


def assert_well_formed(response, log):
    assert isinstance(status(response), int) and 200 <= status(response) < 600
    assert isinstance(response["body"], str)
    json.loads(response["body"], parse_constant=lambda name: pytest.fail("not JSON: " + name))
    assert log["status"] == status(response)


@pytest.mark.parametrize("args, expected", [
    ((404, "no such order"), 404), ((400, "bad"), 400), ((599, "x"), 599), ((451,), 451),
    ((503, "later", "extra"), 503), ((422, {"field": "name"}), 422),
    ((200, "not an error"), 500), ((302, "elsewhere"), 500), ((600, "x"), 500),
    ((399, "x"), 500), ((), 500), (("404", "x"), 500), ((None, None), 500),
    ((404.5, "x"), 500)])
def test_reject_from_handle_with_any_arguments(args, expected, qstash_env, monkeypatch, at_t0,
                                               call):
    response, log = run_handle(monkeypatch, call, raising(Reject(*args)))
    assert status(response) == expected, log
    assert_well_formed(response, log)


@pytest.mark.parametrize("multi_value", [False, True])
@pytest.mark.parametrize("code", [404, 409, 451, 503])
def test_reject_from_handle_through_an_alb_is_alb_shaped(code, multi_value, qstash_env,
                                                         destination, monkeypatch, at_t0,
                                                         call):
    destination(PUBLIC_URL)
    event = alb_event(PUBLIC_URL, multi_value=multi_value)
    response, log = run_handle(monkeypatch, call, raising(Reject(code, "x")), event)
    assert status(response) == code, log
    assert_alb_shaped(event, response)


class UnprintableError(Exception):
    def __str__(self):
        raise RuntimeError("__str__ raised")


class UnprintableReject(Reject):
    def __str__(self):
        raise RuntimeError("__str__ raised")


class UnprintableNonRetryable(NonRetryableError):
    def __str__(self):
        raise RuntimeError("__str__ raised")


@pytest.mark.parametrize("exception", [UnprintableError(), UnprintableReject(404, "x"),
                                       UnprintableNonRetryable("x")],
                         ids=["Exception", "Reject", "NonRetryableError"])
def test_exception_whose_str_raises(exception, qstash_env, monkeypatch, at_t0, call):
    response, log = run_handle(monkeypatch, call, raising(exception))
    assert status(response) >= 400, log
    assert_well_formed(response, log)


class Unprintable:
    def __str__(self):
        raise RuntimeError("__str__ raised")

    __repr__ = __str__


def circular():
    value = {}
    value["self"] = value
    return value


@pytest.mark.parametrize("make", [
    lambda: {(1, 2): "tuple key"}, circular, lambda: Unprintable(),
    lambda: {"value": Unprintable()}, lambda: float("nan"), lambda: {"x": float("inf")}],
    ids=["tuple key", "circular", "unprintable", "unprintable inside", "nan", "infinity"])
def test_return_value_that_cannot_be_serialized(make, qstash_env, monkeypatch, at_t0, call):
    response, log = run_handle(monkeypatch, call, lambda message: make())
    assert_well_formed(response, log)
    assert status(response) == 500, log


# === 5. Every door answers in its own shape ==================================================

def assert_alb_shaped(event, response):
    code = status(response)
    assert response["statusDescription"].startswith("%d " % code), response
    if "multiValueHeaders" in event:
        assert "headers" not in response
        assert all(isinstance(values, list) for values in response["multiValueHeaders"].values())
    else:
        assert "multiValueHeaders" not in response
        assert isinstance(response["headers"], dict)


UNREADABLE_ALB_EVENTS = {
    "bad base64": lambda e: e.update(body="%%% not base64", isBase64Encoded=True),
    "body not a string": lambda e: e.update(body=5),
    "headers not a mapping": lambda e: e.update({key: [["upstash-signature", "x"]]
                                                 for key in ("headers", "multiValueHeaders")
                                                 if key in e}),
    "isBase64Encoded a string": lambda e: e.update(isBase64Encoded="true"),
}


@pytest.mark.parametrize("spoil", UNREADABLE_ALB_EVENTS.values(), ids=UNREADABLE_ALB_EVENTS)
@pytest.mark.parametrize("multi_value", [False, True])
def test_alb_400_for_an_unreadable_event_is_alb_shaped(spoil, multi_value, qstash_env,
                                                       destination, at_t0, call, received):
    destination(PUBLIC_URL)
    event = alb_event(PUBLIC_URL, multi_value=multi_value)
    spoil(event)
    response, log = call(event)
    assert status(response) == 400, log
    assert_alb_shaped(event, response)
    assert not received


@pytest.mark.parametrize("multi_value", [False, True])
@pytest.mark.parametrize("outcome", ["401", "500", "489"])
def test_every_alb_answer_is_alb_shaped(outcome, multi_value, qstash_env, destination,
                                        monkeypatch, at_t0, call):
    destination(PUBLIC_URL)
    event = alb_event(PUBLIC_URL if outcome != "401" else FUNCTION_URL, multi_value=multi_value)
    if outcome == "500":
        monkeypatch.setattr(lambda_function, "handle", raising(KeyError("x")))
    if outcome == "489":
        monkeypatch.setattr(lambda_function, "handle", raising(NonRetryableError("x")))
    response, log = call(event)
    assert status(response) == int(outcome), log
    assert_alb_shaped(event, response)


def health_check(multi_value, user_agent="ELB-HealthChecker/2.0", method="GET"):
    """What an ALB target group's health check sends: a GET with no body and no signature."""
    return ev.alb(method=method, url="https://10.0.1.23/", multi_value=multi_value,
                  headers={"User-Agent": user_agent})


@pytest.mark.parametrize("multi_value", [False, True])
def test_alb_health_check_is_200_without_reaching_handle(multi_value, qstash_env, destination,
                                                         call, received):
    destination(PUBLIC_URL)
    event = health_check(multi_value)
    response, log = call(event)
    assert status(response) == 200, log
    assert_alb_shaped(event, response)
    assert not received


@pytest.mark.parametrize("event", [
    health_check(False, method="POST"),
    health_check(False, user_agent="Mozilla/5.0 ELB-HealthChecker/2.0"),
    ev.function_url(method="GET", url=FUNCTION_URL, headers={"User-Agent": "ELB-HealthChecker/2.0"}),
    ev.rest(method="GET", url=REST_BASE, headers={"User-Agent": "ELB-HealthChecker/2.0"}),
], ids=["POST", "user agent not at the start", "function url", "rest"])
def test_only_an_alb_get_from_the_health_checker_is_a_health_check(event, qstash_env,
                                                                   destination, call,
                                                                   received):
    destination(PUBLIC_URL)
    response, log = call(event)
    assert status(response) == 401, log
    assert not received


@pytest.mark.parametrize("flag", ["true", "false", 1, 0, None, "", [], {}],
                         ids=repr)
@pytest.mark.parametrize("door", ["function url", "rest"])
def test_is_base64_encoded_other_than_true_false_or_absent_is_400(flag, door, qstash_env,
                                                                  at_t0, call, received):
    event = function_url_event(FUNCTION_URL) if door == "function url" else \
        rest_event(REST_BASE)
    event["isBase64Encoded"] = flag
    response, log = call(event)
    assert status(response) == 400, log
    assert not received


@pytest.mark.parametrize("flag", [True, False, "absent"])
def test_is_base64_encoded_true_false_or_absent_is_read(flag, qstash_env, at_t0, call):
    """Already so before issue 12; kept."""
    event = function_url_event(FUNCTION_URL)
    if flag is True:
        event["body"] = base64.b64encode(BODY).decode()
        event["isBase64Encoded"] = True
    elif flag is False:
        event["isBase64Encoded"] = False
    else:
        del event["isBase64Encoded"]
    response, log = call(event)
    assert status(response) == 200, log


# === 6. Logs =================================================================================

SECRET_QUERY = "hook_token=QUERYSECRET1234"


@pytest.mark.parametrize("signed_for, arrived_at", [
    (FUNCTION_URL + "?" + SECRET_QUERY, FUNCTION_URL + "?hook_token=OTHERSECRET5678"),
    ("https://user:PASSWORDSECRET@abc123.lambda-url.us-east-1.on.aws/hook", FUNCTION_URL),
    (FUNCTION_URL, FUNCTION_URL + "?" + SECRET_QUERY),
])
def test_no_query_string_or_userinfo_of_any_url_in_the_log(signed_for, arrived_at, qstash_env,
                                                           at_t0, call):
    response, log = call(function_url_event(signed_for, event_url=arrived_at))
    assert status(response) == 401, log
    said = everything_said(response, log)
    for secret in ("QUERYSECRET1234", "OTHERSECRET5678", "PASSWORDSECRET", "hook_token"):
        assert secret not in said, (secret, log)


def test_no_query_string_of_the_destination_url_in_the_log(qstash_env, destination, at_t0,
                                                          call):
    destination(PUBLIC_URL + "?" + SECRET_QUERY)
    response, log = call(function_url_event(PUBLIC_URL + "?hook_token=OTHERSECRET5678"))
    assert status(response) == 401, log
    said = everything_said(response, log)
    assert "QUERYSECRET1234" not in said and "OTHERSECRET5678" not in said


def test_no_query_string_of_an_upstash_destination_in_the_500(qstash_env, destination, call):
    destination("https://qstash.upstash.io/v2/publish?" + SECRET_QUERY)
    response, log = call(function_url_event(FUNCTION_URL))
    assert status(response) == 500
    assert "QUERYSECRET1234" not in everything_said(response, log)


def keys_holding(log, value):
    return [name for name, held in log.items() if held == value and type(held) is type(value)]


@pytest.mark.parametrize("rejection", ["bad signature", "unsigned", "expired"])
def test_unsigned_headers_of_a_rejected_request_are_logged_as_unverified(rejection, qstash_env,
                                                                        at_t0, call):
    event = function_url_event(FUNCTION_URL, key="sig_NotTheKeyButLongEnough0",
                               message_id="msg_claimedByTheCaller", **{"Upstash-Retried": "57"})
    if rejection == "unsigned":
        del event["headers"]["upstash-signature"]
    if rejection == "expired":
        event = function_url_event(FUNCTION_URL, message_id="msg_claimedByTheCaller",
                                   **{"Upstash-Retried": "57"})
        event["headers"]["upstash-signature"] = pyjwt_token(FUNCTION_URL, now=T0 - 3600)
    response, log = call(event)
    assert status(response) == 401, log
    assert log.get("message_id") in (None, "")
    assert log.get("retried") is None
    names = keys_holding(log, "msg_claimedByTheCaller")
    assert names and all("unverified" in name for name in names), log
    names = keys_holding(log, 57)
    assert names and all("unverified" in name for name in names), log


def test_accepted_request_logs_its_message_id(qstash_env, at_t0, call):
    """Already so before issue 12; kept."""
    response, log = call(function_url_event(FUNCTION_URL, message_id="msg_accepted01"))
    assert status(response) == 200
    assert log["message_id"] == "msg_accepted01"


def test_message_token_id_is_the_verified_jti(qstash_env, at_t0, call, received):
    event = function_url_event(FUNCTION_URL, message_id="msg_header01")
    event["headers"]["upstash-signature"] = jwt.encode(
        {"aud": "", "body": qstash_body_hash(BODY), "exp": T0 + 300, "iat": T0,
         "iss": "Upstash", "jti": "jwt_SignedTokenId42", "nbf": T0, "sub": FUNCTION_URL},
        KEY, algorithm="HS256")
    response, log = call(event)
    assert status(response) == 200, log
    message = received[0]
    assert message.token_id == "jwt_SignedTokenId42" == message.claims["jti"]
    assert message.message_id == "msg_header01"


# === Documentation that the issue asks for ===================================================

def test_security_md_names_the_invoke_permission_and_the_destination_defence():
    text = (ROOT / "SECURITY.md").read_text()
    assert "lambda:InvokeFunction" in text and "QSTASH_DESTINATION_URL" in text


def test_readme_documents_the_new_settings_and_token_id():
    text = (ROOT / "README.md").read_text()
    for name in ("QSTASH_DESTINATION_URL", "ALLOW_PUBLIC_DEV_KEYS", "token_id"):
        assert name in text, name
