"""Deduplication against AWS's own code: our Signature Version 4 equals botocore's, moto
checks our signatures for real with its request authentication switched on, and make create
sets up the table and the role's policy (checked with the AWS CLI against moto)."""
import datetime
import json
import os
import subprocess
import sys

import pytest

import deploy
import dynamo
import lambda_events as ev
import lambda_function as lf
from signed_webhooks.dedup_config import DEDUP_TTL, DedupSettings
from signed_webhooks.dynamodb import signed_headers
from conftest import KEY, NEXT, ROOT, need
from test_dedup import URL, Context, delivery, new_id

BIN = dynamo.BIN


# --- Signature Version 4, beside botocore.auth.SigV4Auth ------------------------------------

@pytest.mark.parametrize("region", ["us-east-1", "eu-central-1", "ap-southeast-2"])
@pytest.mark.parametrize("session_token", [None, "IQoJb3JpZ2luX2VjEFAaCXVzLWVhc3QtMSJHMEUCIQ==",
                                           "token with  spaces "])
@pytest.mark.parametrize("body", [b"", b'{"TableName":"dedup"}',
                                  json.dumps({"Item": {"id": {"S": "caf\u00e9 \U0001f44b"}}},
                                             ensure_ascii=False).encode()])
@pytest.mark.parametrize("endpoint", [None, "http://127.0.0.1:8000", "https://ddb.example:443"])
def test_our_signature_equals_botocores(region, session_token, body, endpoint, monkeypatch):
    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    endpoint = endpoint or "https://dynamodb.%s.amazonaws.com" % region
    when = datetime.datetime(2026, 3, 1, 23, 59, 58)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: when)
    environ = {"AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
               "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}
    if session_token:
        environ["AWS_SESSION_TOKEN"] = session_token
    settings = DedupSettings({**environ, "AWS_REGION": region,
                              "AWS_ENDPOINT_URL_DYNAMODB": endpoint}, "dedup", DEDUP_TTL)
    ours = signed_headers(settings, "PutItem", body,
                          now=when.replace(tzinfo=datetime.timezone.utc).timestamp())
    request = AWSRequest(method="POST", url=endpoint + "/", data=body, headers={
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": "DynamoDB_20120810.PutItem"})
    credentials = Credentials(environ["AWS_ACCESS_KEY_ID"], environ["AWS_SECRET_ACCESS_KEY"],
                              session_token)
    botocore.auth.SigV4Auth(credentials, "dynamodb", region).add_auth(request)
    assert ours["authorization"] == request.headers["Authorization"]
    assert ours["x-amz-date"] == request.headers["X-Amz-Date"]


def test_the_signing_key_is_derived_once_and_nine_at_most_are_kept(monkeypatch):
    """The signing key (four chained HMACs) is derived once per secret, date, region and
    service and then reused; at most 9 are kept, and a tenth starts the cache over, so no
    run of rotating credentials grows it. (That the keys are right, the signatures equal to
    botocore's show above.)"""
    from signed_webhooks import sigv4
    monkeypatch.setattr(sigv4, "_signing_keys", {})
    secrets = ["example-secret-%02d" % index for index in range(10)]
    derived = [sigv4._signing_key(secret, "20260301", "eu-west-1", "dynamodb")
               for secret in secrets[:9]]
    held = dict(sigv4._signing_keys)
    assert len(held) == 9
    for secret, key in zip(secrets[:9], derived):
        assert sigv4._signing_key(secret, "20260301", "eu-west-1", "dynamodb") is key
    assert dict(sigv4._signing_keys) == held
    sigv4._signing_key(secrets[9], "20260301", "eu-west-1", "dynamodb")
    assert len(sigv4._signing_keys) == 1


# --- moto with request authentication on ----------------------------------------------------

@pytest.fixture(scope="module")
def authenticating_moto():
    """moto_server with users, keys, a role and the table made while authentication is off,
    then switched on: every later request must be signed by a known key with the rights."""
    with dynamo.moto() as server:
        endpoint = server.endpoint
        dynamo.create_table(endpoint)
        iam = dynamo.client(endpoint, "iam")
        # Exactly the actions make create grants. moto checks every request against the
        # resource "*" (it does not work out DynamoDB's resources), so that is the resource.
        policy = json.dumps(deploy.dedup_policy("*"))
        keys = {}
        for user, allowed in (("webhook", True), ("no-rights", False)):
            iam.create_user(UserName=user)
            if allowed:
                iam.put_user_policy(UserName=user, PolicyName="dedup", PolicyDocument=policy)
            key = iam.create_access_key(UserName=user)["AccessKey"]
            keys[user] = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                          "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {
            "AWS": "arn:aws:iam::123456789012:root"}, "Action": "sts:AssumeRole"}]}
        role = iam.create_role(RoleName="webhook-role", AssumeRolePolicyDocument=json.dumps(
            trust))["Role"]["Arn"]
        iam.put_role_policy(RoleName="webhook-role", PolicyName="dedup", PolicyDocument=policy)
        sts = dynamo.client(endpoint, "sts")
        assumed = sts.assume_role(RoleArn=role, RoleSessionName="lambda")["Credentials"]
        keys["role"] = {"AWS_ACCESS_KEY_ID": assumed["AccessKeyId"],
                        "AWS_SECRET_ACCESS_KEY": assumed["SecretAccessKey"],
                        "AWS_SESSION_TOKEN": assumed["SessionToken"]}
        import urllib.request
        urllib.request.urlopen(urllib.request.Request(
            endpoint + "/moto-api/reset-auth", data=b"0",
            headers={"Content-Type": "text/plain"}), timeout=10).read()
        server.keys = keys
        yield server


@pytest.fixture
def signed_env(authenticating_moto, monkeypatch):
    for name, value in {"AWS_ENDPOINT_URL": authenticating_moto.endpoint,
                        "AWS_REGION": "us-east-1", "DEDUP_TABLE": dynamo.TABLE,
                        "QSTASH_CURRENT_SIGNING_KEY": KEY, "QSTASH_NEXT_SIGNING_KEY": NEXT,
                        "QSTASH_URL": URL, "QSTASH_DESTINATION_URL": URL}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_DYNAMODB", raising=False)

    def use(credentials):
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
        for name, value in credentials.items():
            monkeypatch.setenv(name, value)
    use.keys = authenticating_moto.keys
    return use


@pytest.fixture
def handled(monkeypatch):
    calls = []
    monkeypatch.setattr(lf, "handle", lambda message: calls.append(message.message_id) or {})
    return calls


@pytest.mark.parametrize("who", ["webhook", "role"])
def test_correctly_signed_requests_are_accepted(who, signed_env, handled, call):
    signed_env(signed_env.keys[who])
    message_id = new_id()
    response, log = call(delivery(message_id), Context())
    assert response["statusCode"] == 200 and log["dedup"] == "new", log
    response, log = call(delivery(message_id), Context())
    assert response["statusCode"] == 200 and log["dedup"] == "duplicate", log
    assert handled == [message_id]


def wrong(credentials, name):
    return {**credentials, name: credentials[name][:-4] + "AAAA"}


@pytest.mark.parametrize("case", ["wrong secret", "wrong session token", "no DynamoDB rights",
                                  "unknown key"])
def test_refused_requests_are_503_and_handle_is_not_called(case, signed_env, handled, call):
    keys = signed_env.keys
    credentials = {"wrong secret": wrong(keys["webhook"], "AWS_SECRET_ACCESS_KEY"),
                   "wrong session token": wrong(keys["role"], "AWS_SESSION_TOKEN"),
                   "no DynamoDB rights": keys["no-rights"],
                   "unknown key": wrong(keys["webhook"], "AWS_ACCESS_KEY_ID")}[case]
    signed_env(credentials)
    response, log = call(delivery(new_id()), Context())
    assert response["statusCode"] == 503 and log["dedup"] == "store_error", log
    assert handled == []
    logged = json.dumps(log)
    for name, value in credentials.items():
        assert value not in logged, name  # no credential in the log line, not even the key id
    for value in keys["role"].values():
        assert value not in logged


# --- make create with DEDUP_TABLE -----------------------------------------------------------

def test_make_create_sets_up_the_table_and_the_role_policy():
    need(os.path.exists(os.path.join(BIN, "aws")), "the AWS CLI (awscli) is not installed")
    with dynamo.moto() as server:
        env = {"PATH": BIN + os.pathsep + os.environ["PATH"],
               "HOME": os.environ.get("HOME", "/tmp"), "AWS_ENDPOINT_URL": server.endpoint,
               "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
               "AWS_SHARED_CREDENTIALS_FILE": os.devnull}

        def aws(*args):
            out = subprocess.run(["aws", *args, "--output", "json"], env=env, check=True,
                                 capture_output=True, text=True).stdout
            return json.loads(out) if out.strip() else None
        role = aws("iam", "create-role", "--role-name", "webhook-role",
                   "--assume-role-policy-document", json.dumps({
                       "Version": "2012-10-17", "Statement": [{
                           "Effect": "Allow", "Action": "sts:AssumeRole",
                           "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]["Arn"]
        created = subprocess.run(
            ["make", "-s", "create", "FUNCTION=webhook", "ROLE=" + role], cwd=ROOT,
            capture_output=True, text=True,
            env={**env, "QSTASH_CURRENT_SIGNING_KEY": KEY, "QSTASH_NEXT_SIGNING_KEY": NEXT,
                 "DEDUP_TABLE": "webhook-dedup", "DEDUP_TTL": "86400"})
        assert created.returncode == 0, created.stderr
        assert "created dedup table webhook-dedup" in created.stdout
        assert "turned on TTL" in created.stdout and "inline policy" in created.stdout
        table = aws("dynamodb", "describe-table", "--table-name", "webhook-dedup")["Table"]
        assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
        assert table["AttributeDefinitions"] == [{"AttributeName": "id", "AttributeType": "S"}]
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        ttl = aws("dynamodb", "describe-time-to-live", "--table-name", "webhook-dedup")
        assert ttl["TimeToLiveDescription"] == {"TimeToLiveStatus": "ENABLED",
                                                "AttributeName": "expires_at"}
        policy = aws("iam", "get-role-policy", "--role-name", "webhook-role", "--policy-name",
                     "webhook-dedup-webhook-dedup")["PolicyDocument"]
        assert policy["Statement"] == [{
            "Sid": "WebhookDeduplication", "Effect": "Allow",
            "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                       "dynamodb:DeleteItem"], "Resource": table["TableArn"]}]
        variables = aws("lambda", "get-function", "--function-name", "webhook")[
            "Configuration"]["Environment"]["Variables"]
        assert variables["DEDUP_TABLE"] == "webhook-dedup" and variables["DEDUP_TTL"] == "86400"
        # A second function on the same table (the deduplication step alone: a whole
        # make create against moto takes half a minute).
        again = subprocess.run([sys.executable, "-c", "import deploy; deploy.set_up_"
                                "deduplication('webhook-dedup', %r)" % role],
                               cwd=ROOT / "tools", capture_output=True, text=True, env=env)
        assert again.returncode == 0, again.stderr
        assert "dedup table webhook-dedup exists" in again.stdout
