"""make create and make deploy, run with the real AWS CLI against moto_server on loopback."""
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys

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


def make(env, cwd, *args, **extra):
    return subprocess.run(["make", "-s", *args], cwd=cwd, capture_output=True, text=True,
                          env={**env, **extra})


def zip_code_sha256(folder):
    return base64.b64encode(hashlib.sha256((folder / "lambda.zip").read_bytes()).digest()).decode()


def test_create_then_deploy(aws_env, tmp_path):
    role = aws(aws_env, "iam", "create-role", "--role-name", "webhook-role",
               "--assume-role-policy-document", TRUST)["Role"]["Arn"]
    created = make(aws_env, ROOT, "create", "FUNCTION=webhook", "ROLE=" + role,
                   QSTASH_CURRENT_SIGNING_KEY="sig_deployCurrent",
                   QSTASH_NEXT_SIGNING_KEY="sig_deployNext",
                   QSTASH_URL="https://hooks.example.com/q", UNRELATED_SECRET="do-not-ship")
    assert created.returncode == 0, created.stderr
    url = created.stdout.split("Function URL, to give QStash: ")[1].split()[0]

    config = aws(aws_env, "lambda", "get-function", "--function-name", "webhook")["Configuration"]
    assert config["Handler"] == "lambda_function.lambda_handler"
    assert config["Runtime"] == "python3.12" and config["Role"] == role
    assert config["Environment"]["Variables"] == {
        "QSTASH_CURRENT_SIGNING_KEY": "sig_deployCurrent",
        "QSTASH_NEXT_SIGNING_KEY": "sig_deployNext",
        "QSTASH_URL": "https://hooks.example.com/q"}
    assert config["CodeSha256"] == zip_code_sha256(ROOT)
    assert "sig_deploy" not in created.stdout + created.stderr  # names printed, never values

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
    assert result.returncode != 0 and "update-function-code failed" in result.stderr


def test_targets_say_what_they_need():
    env = {"PATH": "/usr/bin:/bin"}  # no AWS CLI on this PATH
    result = make(env, ROOT, "deploy", "FUNCTION=x", PYTHON=sys.executable)
    assert result.returncode != 0 and "AWS CLI" in result.stderr
    result = make({"PATH": BIN + os.pathsep + "/usr/bin:/bin"}, ROOT, "create", "FUNCTION=x",
                  PYTHON=sys.executable)
    assert result.returncode != 0 and "usage: make create FUNCTION=name ROLE=" in result.stderr


# --- The README's CloudWatch alarm on the rejected count ------------------------------------

def readme_alarm_command():
    """The README's `aws cloudwatch put-metric-alarm` command, as argv."""
    import shlex
    readme = (ROOT / "README.md").read_text()
    block = next(part for part in readme.split("```sh\n")[1:]
                 if part.startswith("aws cloudwatch put-metric-alarm"))
    return shlex.split(block.split("```")[0].replace("\\\n", " "))


def test_readme_alarm_is_accepted_and_watches_a_metric_the_log_line_defines(
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
