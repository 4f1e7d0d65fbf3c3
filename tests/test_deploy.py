"""make create and make deploy, run with the real AWS CLI against moto_server on loopback: what
they send, what they refuse to deploy (before AWS is called), and create run twice."""
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import ROOT, need
from peers import free_port, running

BIN = os.path.dirname(sys.executable)
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
    "Action": "sts:AssumeRole"}]})


@pytest.fixture(scope="module")
def aws_env():
    need(os.path.exists(os.path.join(BIN, "moto_server")), "moto[server] is not installed")
    need(os.path.exists(os.path.join(BIN, "aws")), "the AWS CLI (awscli) is not installed")
    port = free_port()
    env = {"PATH": BIN + os.pathsep + os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
           "AWS_ENDPOINT_URL": "http://127.0.0.1:%d" % port, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    with running([os.path.join(BIN, "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                 env=env, port=port):
        yield env


def aws(env, *args):
    out = subprocess.run(["aws", *args, "--output", "json"], env=env, capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out) if out.strip() else None


CURRENT, NEXT = "sig_deployCurrentKey0123456789ab", "sig_deployNextKey0123456789abcd"
GOOD_KEYS = {"QSTASH_CURRENT_SIGNING_KEY": CURRENT, "QSTASH_NEXT_SIGNING_KEY": NEXT}


@pytest.fixture(scope="module")
def role(aws_env):
    return aws(aws_env, "iam", "create-role", "--role-name", "webhook-role",
               "--assume-role-policy-document", TRUST)["Role"]["Arn"]


def function_names(env):
    return {f["FunctionName"] for f in aws(env, "lambda", "list-functions")["Functions"]}


def make(env, cwd, *args, **extra):
    return subprocess.run(["make", "-s", *args], cwd=cwd, capture_output=True, text=True,
                          env={**env, **extra})


def zip_code_sha256(folder):
    return base64.b64encode(hashlib.sha256((folder / "lambda.zip").read_bytes()).digest()).decode()


SENT = {**GOOD_KEYS, "QSTASH_DESTINATION_URL": "https://hooks.example.com/q",
        "EU_CENTRAL_1_QSTASH_CURRENT_SIGNING_KEY": "sig_regionalCurrentKey0123456789",
        "EU_CENTRAL_1_QSTASH_NEXT_SIGNING_KEY": "sig_regionalNextKey0123456789ab",
        "QSTASH_CLOCK_TOLERANCE": "10", "SOKETI_SECRET": "a-real-soketi-secret-5f1e",
        "SOKETI_NEXT_SECRET": "a-second-soketi-secret-77c2", "SOKETI_KEY": "my-app-key",
        "SOKETI_MAX_AGE": "600", "METRICS_NAMESPACE": "Webhooks", "DEDUP_TABLE": "webhook-dedup",
        "DEDUP_TTL": "86400"}
NOT_SENT = {"QSTASH_URL": "https://qstash.upstash.io", "QSTASH_TOKEN": "do-not-ship-token",
            "UNRELATED_SECRET": "do-not-ship"}


def test_create_then_create_again_then_deploy(aws_env, role, tmp_path):
    created = make(aws_env, ROOT, "create", "FUNCTION=webhook", "ROLE=" + role,
                   **SENT, **NOT_SENT)
    assert created.returncode == 0, created.stderr
    url = created.stdout.split("Function URL, to give QStash: ")[1].split()[0]

    config = aws(aws_env, "lambda", "get-function", "--function-name", "webhook")["Configuration"]
    assert config["Handler"] == "lambda_function.lambda_handler"
    assert config["Runtime"] == "python3.14" and config["Role"] == role
    assert config["Architectures"] == ["arm64"]  # make zip's ARCH, template.yaml's default
    assert config["Environment"]["Variables"] == SENT
    assert config["CodeSha256"] == zip_code_sha256(ROOT)
    printed = created.stdout + created.stderr  # names printed, never values
    secret_values = [value for name, value in {**SENT, **NOT_SENT}.items()
                     if name != "DEDUP_TABLE"]  # the table's name is printed as it is set up
    assert not any(value in printed for value in secret_values if len(value) > 8)
    assert "dedup table webhook-dedup" in printed

    again = make(aws_env, ROOT, "create", "FUNCTION=webhook", "ROLE=" + role, **SENT)
    assert again.returncode != 0
    assert "function webhook already exists" in again.stderr
    assert "make deploy FUNCTION=webhook" in again.stderr
    assert "update-function-configuration --function-name webhook" in again.stderr
    assert "An error occurred" not in again.stderr  # not the raw CLI error

    url_config = aws(aws_env, "lambda", "get-function-url-config", "--function-name", "webhook")
    assert url_config["AuthType"] == "NONE" and url_config["FunctionUrl"] == url
    policy = aws(aws_env, "lambda", "get-policy", "--function-name", "webhook")["Policy"]
    policy = json.loads(policy)
    actions = {s["Action"]: s for s in policy["Statement"]}
    assert actions["lambda:InvokeFunctionUrl"]["Principal"] == "*"
    assert actions["lambda:InvokeFunctionUrl"]["FunctionUrlAuthType"] == "NONE"
    assert actions["lambda:InvokeFunction"]["InvokedViaFunctionUrl"] in (True, "true")

    # A changed copy of the project: deploy must upload it and confirm the new hash.
    copy = tmp_path / "project"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.zip"))
    with open(copy / "lambda_function.py", "a") as source:
        source.write("\n# changed\n")
    deployed = make(aws_env, copy, "deploy", "FUNCTION=webhook")
    assert deployed.returncode == 0, deployed.stderr
    assert zip_code_sha256(copy) != zip_code_sha256(ROOT)
    assert "matches lambda.zip" in deployed.stdout
    config = aws(aws_env, "lambda", "get-function", "--function-name", "webhook")["Configuration"]
    assert config["CodeSha256"] == zip_code_sha256(copy)


def test_deploy_to_a_missing_function_fails_loudly(aws_env):
    result = make(aws_env, ROOT, "deploy", "FUNCTION=no-such-function")
    assert result.returncode != 0 and "ResourceNotFoundException" in result.stderr


DEV_KEYS = {"QSTASH_CURRENT_SIGNING_KEY": "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r",
            "QSTASH_NEXT_SIGNING_KEY": "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs"}


REFUSED = {  # what the shell holds: the variable the refusal must name
    "half a pair": ({"QSTASH_CURRENT_SIGNING_KEY": CURRENT}, "QSTASH_NEXT_SIGNING_KEY"),
    "half a regional set": ({**GOOD_KEYS, "US_EAST_1_QSTASH_NEXT_SIGNING_KEY": NEXT + "x"},
                            "US_EAST_1_QSTASH_CURRENT_SIGNING_KEY"),
    "the dev server's keys": (DEV_KEYS, "QSTASH_CURRENT_SIGNING_KEY"),
    "the dev keys, allowed": ({**DEV_KEYS, "ALLOW_PUBLIC_DEV_KEYS": "1"},
                              "ALLOW_PUBLIC_DEV_KEYS"),
    "the dev opt-in": ({**GOOD_KEYS, "ALLOW_PUBLIC_DEV_KEYS": "1"}, "ALLOW_PUBLIC_DEV_KEYS"),
    "placeholders": ({"QSTASH_CURRENT_SIGNING_KEY": "sig_...",
                      "QSTASH_NEXT_SIGNING_KEY": "sig_..."}, "QSTASH_CURRENT_SIGNING_KEY"),
    "a quoted key": ({**GOOD_KEYS, "QSTASH_NEXT_SIGNING_KEY": ' "%s" ' % NEXT},
                     "QSTASH_NEXT_SIGNING_KEY"),
    "QStash's API as the URL": ({**GOOD_KEYS,
                                 "QSTASH_DESTINATION_URL": "https://qstash.upstash.io"},
                                "QSTASH_DESTINATION_URL"),
    "soketi's default secret": ({"SOKETI_SECRET": "app-secret"}, "SOKETI_SECRET"),
    "no key at all": ({}, "QSTASH_CURRENT_SIGNING_KEY"),
}


def test_create_refuses_what_the_handler_would_refuse_before_calling_aws(aws_env, role):
    """One loop, not one test per case: each case is a make run, and CI time is shared."""
    for case, (variables, named) in REFUSED.items():
        result = make(aws_env, ROOT, "create", "FUNCTION=refused", "ROLE=" + role, **variables)
        printed = result.stdout + result.stderr
        assert result.returncode != 0, case
        assert "refusing to deploy" in result.stderr and named in result.stderr, (case, printed)
        # advice make create then accepts: never the opt-in it refuses
        assert "ALLOW_PUBLIC_DEV_KEYS=1" not in printed, (case, printed)
        assert not any(value in printed for value in variables.values() if len(value) > 8), case
    assert "refused" not in function_names(aws_env)  # AWS never got as far as creating it


def test_create_lists_every_problem_at_once(aws_env, role):
    """Four variables break four rules, and the dev opt-in is set: one run names them all,
    each in the handler's own words (signed_webhooks.config, the oracle), so one round of
    fixes is enough."""
    from signed_webhooks.config import configuration_errors
    broken = {"QSTASH_CURRENT_SIGNING_KEY": "sig_short", "QSTASH_NEXT_SIGNING_KEY": NEXT,
              "SOKETI_NEXT_SECRET": "a-second-secret-of-20-characters", "QSTASH_CLOCK_TOLERANCE": "soon",
              "METRICS_NAMESPACE": "AWS/Mine"}
    problems = configuration_errors(broken)
    assert len(problems) == 4
    result = make(aws_env, ROOT, "create", "FUNCTION=refused", "ROLE=" + role,
                  ALLOW_PUBLIC_DEV_KEYS="1", **broken)
    listed = [line[4:] for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert result.returncode != 0
    assert listed[0].startswith("ALLOW_PUBLIC_DEV_KEYS is set in your shell")
    assert listed[1:] == problems


def test_deploy_refuses_code_that_would_refuse_the_functions_configuration(
        aws_env, role, tmp_path):
    """A function configured for older code (a key shorter than the handler now accepts):
    make deploy reads its variables and stops before uploading code that would answer 500."""
    older_zip = tmp_path / "older.zip"
    with zipfile.ZipFile(older_zip, "w") as archive:
        archive.writestr("lambda_function.py", "def lambda_handler(event, context):\n"
                                               "    return {'statusCode': 200}\n")
    aws(aws_env, "lambda", "create-function", "--function-name", "older", "--runtime",
        "python3.12", "--handler", "lambda_function.lambda_handler", "--role", role,
        "--zip-file", "fileb://%s" % older_zip, "--environment",
        "Variables={QSTASH_CURRENT_SIGNING_KEY=%s,QSTASH_NEXT_SIGNING_KEY=sig_short}" % CURRENT)
    result = make(aws_env, ROOT, "deploy", "FUNCTION=older")
    assert result.returncode != 0
    assert "refusing to deploy" in result.stderr and "function older" in result.stderr
    assert "QSTASH_NEXT_SIGNING_KEY" in result.stderr and "sig_short" not in result.stderr
    config = aws(aws_env, "lambda", "get-function", "--function-name", "older")["Configuration"]
    assert config["CodeSha256"] == base64.b64encode(
        hashlib.sha256(older_zip.read_bytes()).digest()).decode()  # the older code still runs


def test_deploy_refuses_compiled_packages_built_for_another_machine(aws_env, role, tmp_path):
    """A function on x86_64 (Lambda's default), code whose requirements.txt has compiled
    wheels: built for arm64 (make zip's default) it is refused before anything is uploaded;
    built with ARCH=x86_64 it deploys."""
    older_zip = tmp_path / "older.zip"
    with zipfile.ZipFile(older_zip, "w") as archive:
        archive.writestr("lambda_function.py", "def lambda_handler(event, context):\n"
                                               "    return {'statusCode': 200}\n")
    aws(aws_env, "lambda", "create-function", "--function-name", "intel", "--runtime",
        "python3.14", "--architectures", "x86_64", "--handler",
        "lambda_function.lambda_handler", "--role", role, "--zip-file",
        "fileb://%s" % older_zip, "--environment",
        "Variables={QSTASH_CURRENT_SIGNING_KEY=%s,QSTASH_NEXT_SIGNING_KEY=%s}" % (CURRENT, NEXT))
    copy = tmp_path / "project"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.zip"))
    (copy / "requirements.txt").write_text("markupsafe==3.0.3\n")
    pip_cache = {"PIP_CACHE_DIR": str(ROOT / "build" / "pip-cache")}

    refused = make(aws_env, copy, "deploy", "FUNCTION=intel", **pip_cache)
    if "pip could not install" in refused.stderr:
        need(False, "PyPI is not reachable: " + refused.stderr[-400:])
    assert refused.returncode != 0
    assert ("refusing to deploy: lambda.zip cannot run on function intel (x86_64, python3.14):\n"
            "  - MarkupSafe 3.0.3 (cp314, aarch64) is built for another machine or Python than "
            "python3.14 on x86_64\n") in refused.stderr
    assert "make deploy FUNCTION=intel ARCH=x86_64" in refused.stderr
    config = aws(aws_env, "lambda", "get-function", "--function-name", "intel")["Configuration"]
    assert config["CodeSha256"] == base64.b64encode(
        hashlib.sha256(older_zip.read_bytes()).digest()).decode()  # nothing was uploaded

    deployed = make(aws_env, copy, "deploy", "FUNCTION=intel", "ARCH=x86_64", **pip_cache)
    assert deployed.returncode == 0, deployed.stderr
    assert "vendored for x86_64 python3.14: MarkupSafe 3.0.3 (cp314, x86_64)" in deployed.stdout
    config = aws(aws_env, "lambda", "get-function", "--function-name", "intel")["Configuration"]
    assert config["CodeSha256"] == zip_code_sha256(copy)
    with zipfile.ZipFile(copy / "lambda.zip") as archive:
        shared_object = archive.read("markupsafe/_speedups.cpython-314-x86_64-linux-gnu.so")
    assert int.from_bytes(shared_object[18:20], "little") == 62  # ELF e_machine: x86_64


def test_targets_say_what_they_need():
    env = {"PATH": "/usr/bin:/bin"}  # no AWS CLI on this PATH
    result = make(env, ROOT, "deploy", "FUNCTION=x", PYTHON=sys.executable)
    assert result.returncode != 0 and "AWS CLI" in result.stderr
    result = make({"PATH": BIN + os.pathsep + "/usr/bin:/bin"}, ROOT, "create", "FUNCTION=x",
                  PYTHON=sys.executable)
    assert result.returncode != 0 and "usage: make create FUNCTION=name ROLE=" in result.stderr


# --- docs/operations.md's CloudWatch alarm on the rejected count ------------------------------------

def readme_alarm_command():
    """docs/operations.md's `aws cloudwatch put-metric-alarm` command, as argv."""
    import shlex
    readme = (ROOT / "docs" / "operations.md").read_text()
    block = next(part for part in readme.split("```sh\n")[1:]
                 if part.startswith("aws cloudwatch put-metric-alarm"))
    return shlex.split(block.split("```")[0].replace("\\\n", " "))


def test_documented_alarm_is_accepted_and_watches_a_metric_the_log_line_defines(
        aws_env, monkeypatch, capsys):
    import lambda_function
    argv = readme_alarm_command()
    result = subprocess.run(argv, env=aws_env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    alarm_name = argv[argv.index("--alarm-name") + 1]
    (alarm,) = aws(aws_env, "cloudwatch", "describe-alarms", "--alarm-names",
                   alarm_name)["MetricAlarms"]

    monkeypatch.setenv("METRICS_NAMESPACE", alarm["Namespace"])
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "qstash-webhook")
    capsys.readouterr()
    lambda_function.lambda_handler({"not": "an event"}, None)  # a rejected request
    line = json.loads(capsys.readouterr().out)
    (directive,) = line["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == alarm["Namespace"]
    units = {metric["Name"]: metric["Unit"] for metric in directive["Metrics"]}
    assert units.get(alarm["MetricName"]) == "Count"
    dimensions = {item["Name"]: item["Value"] for item in alarm["Dimensions"]}
    assert sorted(dimensions) in [sorted(keys) for keys in directive["Dimensions"]]
    assert {name: line[name] for name in dimensions} == dimensions
    assert line[alarm["MetricName"]] == 1 and alarm["Statistic"] == "Sum"
