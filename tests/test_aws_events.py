"""The handler over real sample events from AWS's own projects (tests/fixtures/aws-events;
MANIFEST.json names each file's repository, path, commit and licence).

Every HTTP-shaped event (Function URL and HTTP API payload 2.0, API Gateway REST, ALB), signed
as QStash would sign it for the URL it was sent to, is a 200: the URL derived here from the
event's AWS-set fields (SPEC.md section 3), or QSTASH_DESTINATION_URL where no URL can be
derived (an ALB's Host is the caller's; a REST event without domainName). Tampered or unsigned,
it is a 401. Every other event is a well-formed 4xx or 5xx with one log line, never an
exception. Tokens are minted by PyJWT; the URL and the body are derived here, independently of
the handler's own code."""
import base64
import copy
import hashlib
import json
import re
import urllib.parse

import jwt  # PyJWT: an independent signer
import pytest

from conftest import KEY, ROOT

FIXTURES = ROOT / "tests/fixtures/aws-events"
MANIFEST = json.loads((FIXTURES / "MANIFEST.json").read_text())
SAMPLES = [entry["file"] for entry in MANIFEST["files"]]
T0 = 1_790_000_000
DESTINATION = "https://hooks.example.com/qstash"
WRONG_KEY = "sig_NotTheConfiguredKey0123456789"
LICENCES = {"Apache-2.0", "MIT-0"}  # aws-lambda-go, SAM CLI: Apache-2.0; Powertools: MIT-0


def load(name):
    return json.loads((FIXTURES / name).read_text())


# --- What AWS says about each event, read here from the event's own fields ----------------

def door(event):
    """Which HTTP door delivered this event, by the fields each one sets; None for the rest."""
    if not isinstance(event, dict) or not isinstance(event.get("requestContext"), dict):
        return None
    context = event["requestContext"]
    if "connectionId" in context:  # API Gateway WebSocket: no HTTP request to sign
        return None
    if isinstance(context.get("elb"), dict):
        return "alb"
    if event.get("version") == "2.0" and isinstance(event.get("rawPath"), str) \
            and isinstance(context.get("http"), dict):
        return "payload 2.0"
    if isinstance(event.get("httpMethod"), str) and isinstance(event.get("path"), str):
        return "rest"
    return None


def query_pairs(event):
    """REST's parsed parameters as (name, value) pairs, all values of a repeated name."""
    multi = event.get("multiValueQueryStringParameters") or {}
    if multi:
        return [(name, value) for name, values in multi.items() for value in values]
    return list((event.get("queryStringParameters") or {}).items())


def derived_url(event):
    """The public URL AWS says the request was sent to, or None when the event cannot say:
    payload 2.0 https://{domainName}{rawPath}?{rawQueryString}; REST
    https://{domainName}{requestContext.path}?{parameters}; an ALB never (Host is the
    client's)."""
    kind, context = door(event), event.get("requestContext") or {}
    host = context.get("domainName")
    if kind == "payload 2.0" and host:
        raw_query = event.get("rawQueryString")
        return "https://" + host + event["rawPath"] + ("?" + raw_query if raw_query else "")
    if kind == "rest" and host and context.get("path"):
        query = urllib.parse.urlencode(query_pairs(event), quote_via=urllib.parse.quote)
        return "https://" + host + context["path"] + ("?" + query if query else "")
    return None


def body_bytes(event):
    """The bytes the client sent: base64-decoded when isBase64Encoded, else UTF-8."""
    body = event.get("body") or ""
    if event.get("isBase64Encoded") is True:
        return base64.b64decode(body, validate=True)
    return body.encode()


def readable(event):
    """False for a body flagged base64 that is not base64: no AWS door sends one, though
    three of Powertools' samples carry one."""
    try:
        body_bytes(event)
    except ValueError:
        return False
    return True


def with_body(event, raw):
    """A copy of the event carrying `raw` as its body, encoded as the event encodes it."""
    changed = copy.deepcopy(event)
    changed["body"] = base64.b64encode(raw).decode() if event.get("isBase64Encoded") is True \
        else raw.decode()
    return changed


def token(url, body, key=KEY):
    claims = {"aud": "", "body": base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode(),
              "exp": T0 + 300, "iat": T0, "iss": "Upstash", "jti": "jwt_awsSample0001",
              "nbf": T0, "sub": url}
    return jwt.encode(claims, key, algorithm="HS256")


def with_headers(event, added):
    """A copy of the event with headers added where its door carries them (`headers`,
    `multiValueHeaders` or both)."""
    changed = copy.deepcopy(event)
    if not isinstance(changed.get("headers"), dict) and \
            not isinstance(changed.get("multiValueHeaders"), dict):
        changed["headers"] = {}
    for name, value in added.items():
        if isinstance(changed.get("headers"), dict):
            changed["headers"][name] = value
        if isinstance(changed.get("multiValueHeaders"), dict):
            changed["multiValueHeaders"][name] = [value]
    return changed


def signed(event, url, body=None, key=KEY):
    """The event as QStash's delivery of it would arrive: a token for `url` and its body."""
    body = body_bytes(event) if body is None else body
    return with_headers(event, {"upstash-signature": token(url, body, key),
                                "upstash-message-id": "msg_awsSample0001"})


def is_health_check(event):
    """An ALB target group's health check: a GET from ELB-HealthChecker/."""
    headers = event.get("headers") or {k: ",".join(v) for k, v in
                                       (event.get("multiValueHeaders") or {}).items()}
    agent = {k.lower(): v for k, v in headers.items()}.get("user-agent", "")
    return door(event) == "alb" and event.get("httpMethod") == "GET" and \
        agent.startswith("ELB-HealthChecker/")


HTTP_SHAPED = [name for name in SAMPLES if door(load(name))]
HTTP = [name for name in HTTP_SHAPED if readable(load(name))]
UNREADABLE = [name for name in HTTP_SHAPED if not readable(load(name))]
DERIVABLE = [name for name in HTTP if derived_url(load(name))]
OTHER = [name for name in SAMPLES if not door(load(name))]


def assert_well_formed(event, response, log):
    """The answer each door accepts, and the log line that goes with it."""
    assert isinstance(response, dict) and isinstance(response["statusCode"], int)
    assert isinstance(response["body"], str) and isinstance(response["isBase64Encoded"], bool)
    json.loads(response["body"])
    headers = response.get("headers")
    if headers is None:
        headers = {k: v[0] for k, v in response["multiValueHeaders"].items()}
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
    assert log["status"] == response["statusCode"]
    if door(event) == "alb":
        assert response["statusDescription"].startswith("%d " % response["statusCode"])
    if door(event) == "rest":
        assert set(response) <= {"statusCode", "headers", "multiValueHeaders", "body",
                                 "isBase64Encoded"}


@pytest.fixture
def configured(qstash_env, soketi_env, clock):
    clock(T0 + 1)


@pytest.fixture
def destination(monkeypatch):
    monkeypatch.setenv("QSTASH_DESTINATION_URL", DESTINATION)


# --- The corpus itself -----------------------------------------------------------------------

def test_manifest_names_the_source_of_every_fixture_file():
    on_disk = {str(path.relative_to(FIXTURES)) for path in FIXTURES.rglob("*.json")}
    assert on_disk - {"MANIFEST.json"} == set(SAMPLES)
    for entry in MANIFEST["files"]:
        assert entry["repository"] in ("aws/aws-lambda-go", "aws/aws-sam-cli",
                                       "aws-powertools/powertools-lambda-python"), entry
        assert entry["path"].endswith(".json") and re.fullmatch("[0-9a-f]{40}", entry["commit"])
        assert entry["licence"] in LICENCES, entry


def test_the_corpus_holds_every_http_door_and_the_events_with_no_url():
    doors = [door(load(name)) for name in HTTP_SHAPED]
    assert doors.count("alb") >= 5 and doors.count("rest") >= 10
    assert doors.count("payload 2.0") >= 20
    assert len(HTTP) - len(DERIVABLE) >= 8  # ALB, and REST without domainName (SAM's)
    assert "sam-cli/apigateway__aws-proxy.json" in HTTP
    assert "sam-cli/apigateway__aws-proxy.json" not in DERIVABLE
    assert len(OTHER) >= 200 and len(UNREADABLE) == 3


# --- HTTP-shaped events ----------------------------------------------------------------------

@pytest.mark.parametrize("name", DERIVABLE)
def test_signed_for_its_derived_url_is_200(name, configured, call, received):
    event = load(name)
    response, log = call(signed(event, derived_url(event)))
    assert response["statusCode"] == 200, log
    assert_well_formed(event, response, log)
    assert received[0].body == body_bytes(event)


@pytest.mark.parametrize("name", DERIVABLE)
def test_signed_for_another_url_than_its_derived_one_is_401(name, configured, call, received):
    event = load(name)
    url = derived_url(event)
    elsewhere = url.replace("://", "://x", 1)
    response, log = call(signed(event, elsewhere))
    assert response["statusCode"] == 401, log
    assert_well_formed(event, response, log)
    assert not received


@pytest.mark.parametrize("name", HTTP)
def test_signed_for_the_destination_url_is_200(name, configured, destination, call, received):
    event = load(name)
    response, log = call(signed(event, DESTINATION))
    assert response["statusCode"] == 200, log
    assert_well_formed(event, response, log)
    assert received[0].body == body_bytes(event)


TAMPERINGS = {
    "body altered": lambda event: with_body(signed(event, DESTINATION),
                                            body_bytes(event) + b"!"),
    "another url": lambda event: signed(event, DESTINATION + "/other"),
    "another key": lambda event: signed(event, DESTINATION, key=WRONG_KEY),
    "signature cut": lambda event: with_headers(event, {
        "upstash-signature": token(DESTINATION, body_bytes(event))[:-2]}),
}


@pytest.mark.parametrize("tampering", TAMPERINGS)
@pytest.mark.parametrize("name", HTTP)
def test_tampered_is_401(name, tampering, configured, destination, call, received):
    event = load(name)
    response, log = call(TAMPERINGS[tampering](event))
    assert response["statusCode"] == 401, log
    assert_well_formed(event, response, log)
    assert not received


@pytest.mark.parametrize("name", HTTP)
def test_unsigned_is_401(name, configured, destination, call, received):
    event = load(name)
    response, log = call(event)
    assert response["statusCode"] == (200 if is_health_check(event) else 401), log
    assert_well_formed(event, response, log)
    assert not received


@pytest.mark.parametrize("signature", ["signed over its text", "unsigned"])
@pytest.mark.parametrize("name", UNREADABLE)
def test_body_flagged_base64_that_is_not_is_a_400(name, signature, configured, destination,
                                                  call, received):
    event = load(name)
    if signature == "signed over its text":
        event = signed(event, DESTINATION, body=event["body"].encode())
    response, log = call(event)
    assert response["statusCode"] == 400, log
    assert_well_formed(event, response, log)
    assert not received


# --- Every other event -----------------------------------------------------------------------

@pytest.mark.parametrize("setting", ["configured", "unconfigured"])
@pytest.mark.parametrize("name", OTHER)
def test_every_other_event_is_a_well_formed_4xx_or_5xx(name, setting, request, call, received):
    if setting == "configured":
        request.getfixturevalue("configured")
        request.getfixturevalue("destination")
    event = load(name)
    response, log = call(event)
    assert 400 <= response["statusCode"] < 600, log
    assert_well_formed(event, response, log)
    assert log["reason"] and not received
