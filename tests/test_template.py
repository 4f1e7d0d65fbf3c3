"""template.yaml, checked by AWS's own tools and deployed into moto_server's CloudFormation.

- cfn-lint and `sam validate --lint` (the pinned SAM CLI, in build/sam-venv) pass on it.
- aws-sam-translator, the library behind the SAM CLI and CloudFormation's SAM transform, turns
  it into plain CloudFormation; that translation must carry both permissions a public Function
  URL needs since October 2025. Stock cfn-lint has no rule for the second one: the same check
  fails on a hand-written template that misses it (and that cfn-lint passes).
- The real AWS CLI packages it (lambda.zip uploaded to moto's S3) and creates stacks from the
  translation in moto_server's CloudFormation; what moto then holds is read back with botocore.
  `make deploy` then updates the code of the function a stack created.
  moto does not create AWS::Lambda::Url, and ignores a function's Architectures and
  LoggingConfig, a role's managed policies and a table's TTL: those are asserted on the
  translated template instead.
"""
import base64
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

import template as sam_template
from conftest import ROOT, SIGNED_VECTORS, need
from peers import free_port, running
from test_deploy import aws_env, make  # noqa: F401 (aws_env: moto_server + AWS CLI)

HAND_WRITTEN = ROOT / "tests" / "fixtures" / "template-one-url-permission.yaml"
STAGING_BUCKET = "template-artifacts"

# The handler's variable each optional template parameter sets (README, "Configuration").
VARIABLE_OF_PARAMETER = {
    "QStashCurrentSigningKey": "QSTASH_CURRENT_SIGNING_KEY",
    "QStashNextSigningKey": "QSTASH_NEXT_SIGNING_KEY",
    "QStashDestinationUrl": "QSTASH_DESTINATION_URL",
    "QStashClockTolerance": "QSTASH_CLOCK_TOLERANCE",
    "SoketiSecret": "SOKETI_SECRET",
    "SoketiNextSecret": "SOKETI_NEXT_SECRET",
    "SoketiKey": "SOKETI_KEY",
    "SoketiMaxAge": "SOKETI_MAX_AGE",
    "MetricsNamespace": "METRICS_NAMESPACE",
    "DedupTtl": "DEDUP_TTL",
}
QSTASH_KEYS = {"QStashCurrentSigningKey": "sig_TemplateCurrentKey4f9a2b7c",
               "QStashNextSigningKey": "sig_TemplateNextKey8e3d6c5b0a"}
EVERY_SETTING = {
    **QSTASH_KEYS,
    "QStashDestinationUrl": "https://hooks.example.com/q https://hooks.example.com/q2",
    "QStashClockTolerance": "10",
    "SoketiSecret": "template-app-secret-0042",
    "SoketiNextSecret": "template-app-next-secret-0043",
    "SoketiKey": "template-app-key",
    "SoketiMaxAge": "600",
    "MetricsNamespace": "Webhooks",
    "DedupTtl": "86400",
}
EVERY_SETTING_EMPTY = {**QSTASH_KEYS, **{name: "" for name in VARIABLE_OF_PARAMETER
                                         if name not in QSTASH_KEYS}}
# The item calls the handler makes on the dedup table: the policy allows these and no more.
DEDUP_ACTIONS = {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                 "dynamodb:DeleteItem"}
BASIC_EXECUTION = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"


# --- the check stock cfn-lint does not make ------------------------------------------------

def function_named_by(value):
    """The logical id in {"Ref": id} or {"Fn::GetAtt": [id, "Arn"]}, else None."""
    if isinstance(value, dict) and "Ref" in value:
        return value["Ref"]
    if isinstance(value, dict) and "Fn::GetAtt" in value and value["Fn::GetAtt"][1:] == ["Arn"]:
        return value["Fn::GetAtt"][0]
    return None


def public_url_permission_problems(cloudformation):
    """What each public (AuthType NONE) Function URL in a plain CloudFormation template lacks
    of the two permissions AWS requires since October 2025; empty when nothing is missing."""
    resources = cloudformation["Resources"]
    permissions = [r["Properties"] for r in resources.values()
                   if r["Type"] == "AWS::Lambda::Permission"]
    problems = []
    for name, resource in resources.items():
        if resource["Type"] != "AWS::Lambda::Url" or resource["Properties"]["AuthType"] != "NONE":
            continue
        function = function_named_by(resource["Properties"]["TargetFunctionArn"])
        public = [p for p in permissions
                  if function_named_by(p["FunctionName"]) == function and p["Principal"] == "*"]
        if not any(p["Action"] == "lambda:InvokeFunctionUrl"
                   and p.get("FunctionUrlAuthType") == "NONE" for p in public):
            problems.append("%s: no lambda:InvokeFunctionUrl with FunctionUrlAuthType NONE"
                            % name)
        if not any(p["Action"] == "lambda:InvokeFunction"
                   and p.get("InvokedViaFunctionUrl") is True for p in public):
            problems.append("%s: no lambda:InvokeFunction with InvokedViaFunctionUrl true" % name)
    return problems


# --- offline: linted and translated ----------------------------------------------------------

@pytest.fixture(scope="module")
def translated():
    """template.yaml in plain CloudFormation, its CodeUri pointed at S3 as `sam validate`
    does offline (the deploy tests below use the AWS CLI's real upload instead)."""
    source = sam_template.load()
    source["Resources"]["WebhookFunction"]["Properties"]["CodeUri"] = "s3://bucket/lambda.zip"
    return sam_template.translate(source)


@pytest.fixture(scope="module")
def lint_findings():
    """cfn-lint's findings, one run over template.yaml and the hand-written template:
    {path: [finding lines]}."""
    result = sam_template.cfn_lint(sam_template.TEMPLATE, HAND_WRITTEN)
    # cfn-lint's exit status is a bit mask of errors (2), warnings (4) and informational
    # findings (8); anything else (1) is cfn-lint itself failing.
    assert result.returncode in (0, 2, 4, 6, 8, 10, 12, 14), result.stderr
    findings = {str(sam_template.TEMPLATE): [], str(HAND_WRITTEN): []}
    for line in result.stdout.splitlines():
        path = line.split(":", 1)[0]
        findings.setdefault(path, []).append(line)
    return findings


def test_cfn_lint_passes(lint_findings):
    assert lint_findings[str(sam_template.TEMPLATE)] == []
    assert set(lint_findings) == {str(sam_template.TEMPLATE), str(HAND_WRITTEN)}


# The handler's variables in the shell that runs make template and then the printed command:
# a URL list with a space, a secret with a quote, a dollar sign and spaces, a dedup table.
DEPLOY_SHELL = {
    "QSTASH_CURRENT_SIGNING_KEY": QSTASH_KEYS["QStashCurrentSigningKey"],
    "QSTASH_NEXT_SIGNING_KEY": QSTASH_KEYS["QStashNextSigningKey"],
    "QSTASH_DESTINATION_URL": "https://hooks.example.com/q https://hooks.example.com/q2",
    "SOKETI_SECRET": "it's a $ecret, with spaces",
    "DEDUP_TABLE": "my-dedup-table",
    "DEDUP_TTL": "86400",
}


def sam_venv_or_skip():
    """build/sam-venv, installed if need be (a few minutes, once)."""
    try:
        return sam_template.sam_venv_bin()
    except RuntimeError as error:
        need(False, str(error))


@pytest.fixture(scope="module")
def made_template(tmp_path_factory):
    """`make template`, run as a newcomer runs it: in a copy of the project that has no
    .venv, with the default PYTHON, and the handler's variables of DEPLOY_SHELL in the shell.
    The copy's build/sam-venv is the project's (installed first, here, if need be)."""
    sam_venv_or_skip()
    copy = tmp_path_factory.mktemp("newcomer") / "project"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.zip", "__pycache__", ".hypothesis", ".pytest_cache"))
    (copy / "build").mkdir()
    (copy / "build" / "sam-venv").symlink_to(sam_template.SAM_VENV.resolve())
    shell = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", ""), **DEPLOY_SHELL}
    result = subprocess.run(["make", "-s", "template"], cwd=copy, env=shell,
                            capture_output=True, text=True)
    return copy, shell, result


def test_make_template_needs_nothing_from_the_test_environment(made_template):
    copy, _, result = made_template
    assert result.returncode == 0, result.stdout + result.stderr
    assert "cfn-lint: ok\nsam validate --lint: ok\n" in result.stdout
    assert not (copy / ".venv").exists()  # nothing installed there, or even made
    assert "Before you run it" not in result.stdout  # DEPLOY_SHELL is a good configuration


def test_sam_validate_fails_a_template_lambda_no_longer_runs(tmp_path):
    """The check behind make template's "ok" can fail: a runtime Lambda no longer creates."""
    sam_venv_or_skip()
    broken = tmp_path / "broken-template.yaml"
    broken.write_text(sam_template.TEMPLATE.read_text().replace("Runtime: python3.14",
                                                                "Runtime: python2.7"))
    refused = sam_template.sam_validate(broken)
    assert refused.returncode != 0 and "E2533" in refused.stdout + refused.stderr


def test_sam_venv_holds_the_cfn_lint_the_tests_pin():
    """make template's cfn-lint (in build/sam-venv) is the release requirements-test.txt
    pins for the tests (in .venv): one pin, read by both."""
    import cfnlint.version
    bin_folder = sam_venv_or_skip()
    version = subprocess.run([str(bin_folder / "cfn-lint"), "--version"], capture_output=True,
                             text=True, check=True).stdout.split()[-1]
    assert version == cfnlint.version.__version__
    assert sam_template.cfn_lint_pin() == "cfn-lint==" + version


def printed_commands(output):
    """The shell lines make template prints to deploy (indented two spaces), as a script."""
    block = output.split("\n\n  make zip\n", 1)[1].split("\n\n", 1)[0]
    return "\n".join(line[2:] for line in ["  make zip", *block.splitlines()])


def recorded_calls(recording, action):
    """The form fields of each recorded AWS query-protocol call of `action`."""
    calls = []
    for line in recording.read_text().splitlines():
        record = json.loads(line)
        body = record["body"]
        if record.get("body_encoded"):
            body = base64.b64decode(body).decode("utf-8", "replace")
        fields = urllib.parse.parse_qs(body, keep_blank_values=True)
        if fields.get("Action") == [action]:
            calls.append({name: values[0] for name, values in fields.items()})
    return calls


def change_set_parameters(call):
    """{ParameterKey: ParameterValue} of a recorded CreateChangeSet (an empty value is sent
    as a key with no value field)."""
    parameters = {}
    number = 1
    while "Parameters.member.%d.ParameterKey" % number in call:
        key = call["Parameters.member.%d.ParameterKey" % number]
        parameters[key] = call.get("Parameters.member.%d.ParameterValue" % number, "")
        number += 1
    return parameters


def bucket_contents(s3, bucket):
    """{key: bytes} of every object in an S3 bucket."""
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {item["Key"]: s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            for item in listed}


def test_the_printed_sam_deploy_runs_as_printed(made_template, tmp_path):
    """The printed lines, run by bash as they are, in the copy, with the same shell, against
    moto_server on loopback (recording every call it gets). The pinned SAM CLI parses every
    option and parameter, packages lambda.zip into SAM's own bucket and asks CloudFormation
    for a change set with the shell's values: the call is read back from the recording.

    moto cannot go further: it reads the bucket of a change set's template from the URL's
    host name, so it answers NoSuchBucket. And it cannot create SAM's own bucket stack with
    the outputs and tags SAM checks (its change sets leave stacks without outputs), so that
    stack is created here, as SAM would have made it, before the command runs."""
    copy, shell, made = made_template
    assert made.returncode == 0, made.stdout + made.stderr
    port = free_port()
    endpoint = "http://127.0.0.1:%d" % port
    aws = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    recording = tmp_path / "recording"
    moto_server = [os.path.join(os.path.dirname(sys.executable), "moto_server"),
                   "-H", "127.0.0.1", "-p", str(port)]
    need(os.path.exists(moto_server[0]), "moto[server] is not installed")
    settings = tmp_path / "sam-settings"  # SAM's own: no telemetry, no release check
    settings.mkdir()
    (settings / "metadata.json").write_text(json.dumps({"lastVersionCheck": time.time()}))
    with running(moto_server, env={**shell, **aws, "MOTO_RECORDER_FILEPATH": str(recording)},
                 cwd=tmp_path, port=port):
        import botocore.session
        session = botocore.session.get_session()
        clients = {name: session.create_client(
            name, region_name="us-east-1", endpoint_url=endpoint,
            aws_access_key_id="testing", aws_secret_access_key="testing")
            for name in ("cloudformation", "s3")}
        clients["cloudformation"].create_stack(
            StackName="aws-sam-cli-managed-default", Tags=[
                {"Key": "ManagedStackSource", "Value": "AwsSamCli"}],
            TemplateBody=json.dumps({
                "Resources": {"SamCliSourceBucket": {"Type": "AWS::S3::Bucket"}},
                "Outputs": {"SourceBucket": {"Value": {"Ref": "SamCliSourceBucket"}}}}))
        urllib.request.urlopen(urllib.request.Request(
            endpoint + "/moto-api/recorder/start-recording", method="POST"), timeout=10)
        ran = subprocess.run(["bash", "-c", printed_commands(made.stdout)], cwd=copy,
                             env={**shell, **aws, "SAM_CLI_TELEMETRY": "0",
                                  "__SAM_CLI_APP_DIR": str(settings)},
                             capture_output=True, text=True, timeout=300)
        urllib.request.urlopen(urllib.request.Request(
            endpoint + "/moto-api/recorder/stop-recording", method="POST"), timeout=10)
        [managed] = clients["cloudformation"].describe_stacks(
            StackName="aws-sam-cli-managed-default")["Stacks"]
        bucket = managed["Outputs"][0]["OutputValue"]
        stored = bucket_contents(clients["s3"], bucket)
    output = ran.stdout + ran.stderr
    assert ran.returncode != 0 and "NoSuchBucket" in output, output  # moto's limit, above
    [change_set] = recorded_calls(recording, "CreateChangeSet")
    assert change_set["StackName"] == sam_template.STACK
    assert change_set["ChangeSetType"] == "CREATE"
    assert [value for name, value in change_set.items()
            if name.startswith("Capabilities.")] == ["CAPABILITY_IAM"]
    expected = {name: shell.get(variable, "") for name, variable in VARIABLE_OF_PARAMETER.items()}
    assert change_set_parameters(change_set) == {**expected, "CreateDedupTable": "true"}
    # The code SAM packaged is the copy's lambda.zip, and the template it sent points at it.
    code = (copy / "lambda.zip").read_bytes()
    [code_key] = [key for key, body in stored.items() if body == code]
    packaged = tmp_path / "packaged.yaml"
    packaged.write_bytes(stored[change_set["TemplateURL"].rsplit("/", 1)[1]])
    function = sam_template.load(packaged)["Resources"]["WebhookFunction"]
    assert function["Properties"]["CodeUri"] == "s3://%s/%s" % (bucket, code_key)


def test_every_value_the_printed_command_sends_is_one_the_template_takes(translated):
    """The parameters make template's command names exist, and DEPLOY_SHELL's values (and
    the empty value of each unset variable) pass their AllowedPattern or AllowedValues:
    CloudFormation checks both before it creates anything. CAPABILITY_IAM is enough: no IAM
    resource is given a name of its own (which would need CAPABILITY_NAMED_IAM)."""
    parameters = translated["Parameters"]
    values = {name: DEPLOY_SHELL.get(variable, "")
              for variable, name in sam_template.PARAMETER_OF_VARIABLE.items()}
    values["CreateDedupTable"] = "true"
    for name, value in values.items():
        spec = parameters[name]
        if "AllowedPattern" in spec:
            assert re.fullmatch(spec["AllowedPattern"], value), name
        if "AllowedValues" in spec:
            assert value in spec["AllowedValues"], name
    required = {name for name, spec in parameters.items() if "Default" not in spec}
    assert required <= set(values)
    named = {"RoleName", "ManagedPolicyName", "UserName", "GroupName", "InstanceProfileName"}
    for resource in translated["Resources"].values():
        if resource["Type"].startswith("AWS::IAM::"):
            assert not named & set(resource["Properties"]), resource


def test_the_command_names_a_parameter_for_each_variable_the_template_sets():
    """template.py's map is template.yaml's Environment section read backwards: each
    variable set from a parameter (!If [Condition, !Ref Parameter, NoValue])."""
    variables = sam_template.load()["Resources"]["WebhookFunction"]["Properties"][
        "Environment"]["Variables"]
    from_parameters = {}
    for variable, value in variables.items():
        chosen = value["Fn::If"][1]
        if "Ref" in chosen and chosen["Ref"] != "DedupTable":
            from_parameters[variable] = chosen["Ref"]
    assert sam_template.PARAMETER_OF_VARIABLE == from_parameters
    assert {name: VARIABLE_OF_PARAMETER[name] for name in from_parameters.values()} == {
        name: variable for variable, name in from_parameters.items()}


@pytest.mark.parametrize("shell, note", [
    ({"QSTASH_CURRENT_SIGNING_KEY": "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r",
      "QSTASH_NEXT_SIGNING_KEY": "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs"}, "use your own key"),
    ({**DEPLOY_SHELL, "ALLOW_PUBLIC_DEV_KEYS": "1"}, "ALLOW_PUBLIC_DEV_KEYS is set"),
    ({**DEPLOY_SHELL, "SOKETI_KEY": 'app"key'}, "SOKETI_KEY holds a double quote"),
    ({**DEPLOY_SHELL, "EU_CENTRAL_1_QSTASH_CURRENT_SIGNING_KEY": "sig_regional0123456789abcd",
      "EU_CENTRAL_1_QSTASH_NEXT_SIGNING_KEY": "sig_regional0123456789abce"},
     "no parameter for EU_CENTRAL_1_QSTASH_CURRENT_SIGNING_KEY, EU_CENTRAL_1_QSTASH_NEXT"),
    ({}, "QSTASH_CURRENT_SIGNING_KEY is not set"),
], ids=["dev keys", "dev opt-in", "a quote", "regional keys", "no keys"])
def test_make_template_says_what_the_command_would_deploy_wrong(shell, note):
    """As make create refuses it, and with advice make create accepts (never the opt-in)."""
    advice = sam_template.deploy_advice(shell)
    assert "Before you run it" in advice and note in advice
    assert "ALLOW_PUBLIC_DEV_KEYS=1" not in advice


def test_the_runtime_is_the_newest_python_lambda_offers():
    """cfn-lint's own table of Lambda runtimes (its current release) names the successor of
    every retired Python runtime: the template must use that one."""
    import cfnlint
    import importlib.resources
    table = importlib.resources.files(cfnlint) / "data/AdditionalSpecs/LmbdRuntimeLifecycle.json"
    lifecycle = json.loads(table.read_text())
    successors = {entry["successor"] for name, entry in lifecycle.items()
                  if name.startswith("python")} - {None}
    runtime = sam_template.load()["Globals"]["Function"]["Runtime"]
    assert successors == {runtime}
    assert lifecycle[runtime]["successor"] is None


def test_translation_has_both_public_function_url_permissions(translated):
    assert public_url_permission_problems(translated) == []
    assert [r["Type"] for r in translated["Resources"].values()].count("AWS::Lambda::Url") == 1


def test_the_permission_check_fails_a_template_that_misses_the_second_permission(lint_findings):
    assert lint_findings[str(HAND_WRITTEN)] == []  # stock cfn-lint does not see the gap
    hand_written = sam_template.load(HAND_WRITTEN)
    assert public_url_permission_problems(hand_written) == [
        "WebhookFunctionUrl: no lambda:InvokeFunction with InvokedViaFunctionUrl true"]
    hand_written["Resources"]["WebhookFunctionInvokePermission"] = {
        "Type": "AWS::Lambda::Permission",
        "Properties": {"FunctionName": {"Ref": "WebhookFunction"}, "Principal": "*",
                       "Action": "lambda:InvokeFunction", "InvokedViaFunctionUrl": True}}
    assert public_url_permission_problems(hand_written) == []


def test_what_moto_does_not_create_is_in_the_translation(translated):
    """moto skips AWS::Lambda::Url, and does not keep a function's Architectures and
    LoggingConfig, a role's managed policies or a table's TimeToLiveSpecification, so these are read from the translated
    template: they are what CloudFormation is asked to create."""
    resources = translated["Resources"]
    url = resources["WebhookFunctionUrl"]
    assert url["Type"] == "AWS::Lambda::Url"
    assert url["Properties"] == {"TargetFunctionArn": {"Ref": "WebhookFunction"},
                                 "AuthType": "NONE"}
    assert translated["Outputs"]["FunctionUrl"]["Value"] == {
        "Fn::GetAtt": ["WebhookFunctionUrl", "FunctionUrl"]}
    function = resources["WebhookFunction"]["Properties"]
    assert function["Architectures"] == [{"Ref": "Architecture"}]
    assert set(translated["Parameters"]["Architecture"]["AllowedValues"]) == {"arm64", "x86_64"}
    # Lambda writes to the group the template creates (with its retention), not its own.
    assert function["LoggingConfig"]["LogGroup"] == {"Ref": "WebhookLogGroup"}
    # Logs only: SAM's role gets AWSLambdaBasicExecutionRole, which moto does not attach.
    assert resources["WebhookFunctionRole"]["Properties"]["ManagedPolicyArns"] == [
        BASIC_EXECUTION]
    # moto's table from CloudFormation ignores TimeToLiveSpecification.
    assert resources["DedupTable"]["Properties"]["TimeToLiveSpecification"] == {
        "AttributeName": "expires_at", "Enabled": True}


def test_secrets_are_no_echo_and_settings_default_to_empty(translated):
    parameters = translated["Parameters"]
    secrets = {"QStashCurrentSigningKey", "QStashNextSigningKey", "SoketiSecret",
               "SoketiNextSecret", "SoketiKey"}
    assert {name for name, spec in parameters.items() if spec.get("NoEcho")} == secrets
    for name in VARIABLE_OF_PARAMETER:
        assert parameters[name]["Default"] == "", name


def test_key_parameters_refuse_keys_the_handler_refuses(translated):
    """CloudFormation checks a parameter's AllowedPattern before it creates anything, so a
    key pasted with a space, a newline or quotes stops the deploy instead of making every
    request a 500. moto does not apply AllowedPattern: the pattern is run here with Python's
    re, which reads this one as CloudFormation's Java regex does."""
    published_keys = {vector[name] for vector in SIGNED_VECTORS
                      for name in ("current_signing_key", "next_signing_key")}
    refused = ["sig_" + "a" * 40 + " ", " sig_" + "a" * 40, "sig_" + "a" * 40 + "\n",
               '"sig_' + "a" * 40 + '"', "'sig_" + "a" * 40 + "'", "sig_short"]
    for name in ("QStashCurrentSigningKey", "QStashNextSigningKey"):
        pattern = re.compile(translated["Parameters"][name]["AllowedPattern"])
        assert pattern.fullmatch("")  # empty: QStash not configured here
        for key in published_keys:
            assert pattern.fullmatch(key), key
        for key in refused:
            assert not pattern.fullmatch(key), repr(key)


def test_secret_parameters_refuse_what_the_handler_refuses(translated):
    """SoketiSecret and SoketiNextSecret: their AllowedPattern accepts exactly the secrets the
    handler's own rule (keys.secret_errors, the oracle here) accepts, so a secret pasted with
    a space around it or a placeholder stops the deploy instead of making every request a
    500. Empty leaves soketi unconfigured."""
    from signed_webhooks import keys
    rng = random.Random(5)
    alphabet = "ab1 \"'\t\n-_"
    candidates = ["app-secret", "x" * 19, "x" * 20, " " + "x" * 20, "x" * 20 + "\n",
                  '"' + "x" * 20 + '"', "x" * 9 + " " + "x" * 10, "'" + "x" * 19]
    candidates += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24)))
                   for _ in range(3000)]
    for name, variable in (("SoketiSecret", "SOKETI_SECRET"),
                           ("SoketiNextSecret", "SOKETI_NEXT_SECRET")):
        pattern = re.compile(translated["Parameters"][name]["AllowedPattern"])
        assert pattern.fullmatch("")
        for secret in candidates:
            accepted = not keys.secret_errors(variable, secret, keys.MIN_SOKETI_SECRET_LENGTH,
                                              "soketi secret", allow_dev_keys=False)
            assert bool(pattern.fullmatch(secret)) == accepted, (name, secret)


# --- deployed into moto_server's CloudFormation with the AWS CLI ------------------------------

@pytest.fixture(scope="module")
def moto(aws_env):
    """moto(service): a botocore client for moto_server, to read back what the stacks
    created (one in-process client instead of a CLI start per read)."""
    import botocore.session
    session = botocore.session.get_session()

    def client(service):
        return session.create_client(
            service, region_name=aws_env["AWS_DEFAULT_REGION"],
            endpoint_url=aws_env["AWS_ENDPOINT_URL"],
            aws_access_key_id=aws_env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=aws_env["AWS_SECRET_ACCESS_KEY"])
    return client


@pytest.fixture(scope="module")
def deployable(aws_env, moto, tmp_path_factory):
    """template.yaml packaged by `aws cloudformation package` (lambda.zip uploaded to moto's
    S3, CodeUri rewritten to it), then translated to plain CloudFormation: moto_server does
    not run the SAM transform itself. Returns the translated file's path.

    One change for moto: the FunctionUrl output goes, since moto cannot read an attribute of
    the AWS::Lambda::Url it skips (its CreateStack fails with a 500 on it). That output is
    checked on the translation in test_what_moto_does_not_create_is_in_the_translation."""
    folder = tmp_path_factory.mktemp("template")
    built = make(aws_env, ROOT, "zip")
    assert built.returncode == 0, built.stderr
    moto("s3").create_bucket(Bucket=STAGING_BUCKET)
    packaged = folder / "packaged.yaml"
    aws_cli(aws_env, "cloudformation", "package", "--template-file", str(sam_template.TEMPLATE),
            "--s3-bucket", STAGING_BUCKET, "--output-template-file", str(packaged))
    translation = sam_template.translate(sam_template.load(packaged))
    del translation["Outputs"]["FunctionUrl"]
    translated = folder / "translated.json"
    translated.write_text(json.dumps(translation))
    return translated


def aws_cli(env, *args):
    """Run the AWS CLI; its output. A failure shows the CLI's error."""
    result = subprocess.run(["aws", *args], env=env, capture_output=True, text=True)
    assert result.returncode == 0, "aws %s: %s" % (" ".join(args[:2]), result.stderr)
    return result.stdout


def deploy(env, moto, translation, stack, parameters):
    """Create the stack from the translated template with the AWS CLI; wait; its outputs.

    create-stack rather than `aws cloudformation deploy`: moto's change sets create the
    resources but leave the stack without outputs."""
    values = translation.parent / (stack + "-parameters.json")
    values.write_text(json.dumps([{"ParameterKey": name, "ParameterValue": value}
                                  for name, value in parameters.items()]))
    aws_cli(env, "cloudformation", "create-stack", "--stack-name", stack, "--template-body",
            "file://%s" % translation, "--parameters", "file://%s" % values,
            "--capabilities", "CAPABILITY_IAM")
    cloudformation = moto("cloudformation")
    cloudformation.get_waiter("stack_create_complete").wait(
        StackName=stack, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    [described] = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    assert described["StackStatus"] == "CREATE_COMPLETE"
    return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}


def stack_resources(moto, stack):
    """{logical id: physical id} of what the stack created. (moto lists the Function URL it
    skipped as an entry with no logical id: left out.)"""
    listed = moto("cloudformation").describe_stack_resources(StackName=stack)
    return {r["LogicalResourceId"]: r.get("PhysicalResourceId") for r in listed["StackResources"]
            if "LogicalResourceId" in r}


def expected_variables(parameters, table_name):
    """The environment the handler should see: each non-empty setting, and DEDUP_TABLE and
    DEDUP_TTL only with a table."""
    variables = {VARIABLE_OF_PARAMETER[name]: value for name, value in parameters.items()
                 if name in VARIABLE_OF_PARAMETER and value}
    if table_name:
        variables["DEDUP_TABLE"] = table_name
    else:
        variables.pop("DEDUP_TTL", None)
    return variables


def zip_code_sha256(folder):
    return base64.b64encode(hashlib.sha256((folder / "lambda.zip").read_bytes()).digest()).decode()


def check_function(moto, function_name, parameters, table_name):
    config = moto("lambda").get_function(FunctionName=function_name)["Configuration"]
    written = sam_template.load()
    assert config["Handler"] == "lambda_function.lambda_handler"
    assert config["Runtime"] == written["Globals"]["Function"]["Runtime"]
    assert config["CodeSha256"] == zip_code_sha256(ROOT)
    assert config["Timeout"] == 30 and config["MemorySize"] == 256
    assert config.get("Environment", {}).get("Variables", {}) == expected_variables(
        parameters, table_name)
    return config


def check_public_permissions(moto, function_name):
    policy = json.loads(moto("lambda").get_policy(FunctionName=function_name)["Policy"])
    by_action = {statement["Action"]: statement for statement in policy["Statement"]}
    assert set(by_action) == {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"}
    assert by_action["lambda:InvokeFunctionUrl"]["Principal"] == "*"
    assert by_action["lambda:InvokeFunctionUrl"]["FunctionUrlAuthType"] == "NONE"
    assert by_action["lambda:InvokeFunction"]["Principal"] == "*"
    assert by_action["lambda:InvokeFunction"]["InvokedViaFunctionUrl"] in (True, "true")


def check_log_group(moto, function_name, retention_days):
    name = "/aws/lambda/" + function_name
    groups = moto("logs").describe_log_groups(logGroupNamePrefix=name)["logGroups"]
    assert [(g["logGroupName"], g.get("retentionInDays")) for g in groups] == [
        (name, retention_days)]


def role_policies(moto, role_arn):
    """{inline policy name: document} of the function's role. (moto does not attach a
    CloudFormation role's ManagedPolicyArns: those are checked on the translation.)"""
    iam = moto("iam")
    role = role_arn.rsplit("/", 1)[1]
    documents = {}
    for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
        documents[name] = json.loads(document) if isinstance(document, str) else document
    return documents


def check_dedup_table(moto, table_name):
    table = moto("dynamodb").describe_table(TableName=table_name)["Table"]
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "id", "AttributeType": "S"}]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    return table["TableArn"]


def test_deployed_with_a_dedup_table_and_every_setting(aws_env, moto, deployable, tmp_path):
    parameters = {**EVERY_SETTING, "CreateDedupTable": "true", "FunctionName": "webhook-dedup",
                  "Architecture": "x86_64", "LogRetentionInDays": "7"}
    outputs = deploy(aws_env, moto, deployable, "webhook-dedup-stack", parameters)
    resources = stack_resources(moto, "webhook-dedup-stack")
    table_name = resources["DedupTable"]
    assert outputs["FunctionName"] == "webhook-dedup" == resources["WebhookFunction"]
    assert outputs["DedupTableName"] == table_name

    config = check_function(moto, "webhook-dedup", parameters, table_name)
    check_public_permissions(moto, "webhook-dedup")
    check_log_group(moto, "webhook-dedup", 7)
    table_arn = check_dedup_table(moto, table_name)
    policies = role_policies(moto, config["Role"])
    assert list(policies) == ["dedup-table-items"]
    [statement] = policies["dedup-table-items"]["Statement"]
    assert statement["Effect"] == "Allow" and statement["Resource"] == table_arn
    assert set(statement["Action"]) == DEDUP_ACTIONS

    # make deploy on the function the stack created: a changed copy of the project, uploaded
    # and confirmed by CodeSha256, as for a function made by make create.
    copy = tmp_path / "project"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.zip"))
    with open(copy / "lambda_function.py", "a") as source:
        source.write("\n# changed\n")
    deployed = make(aws_env, copy, "deploy", "FUNCTION=" + outputs["FunctionName"])
    assert deployed.returncode == 0, deployed.stderr
    assert "matches lambda.zip" in deployed.stdout
    updated = moto("lambda").get_function(FunctionName="webhook-dedup")["Configuration"]
    assert updated["CodeSha256"] == zip_code_sha256(copy) != zip_code_sha256(ROOT)


def test_deployed_without_a_dedup_table(aws_env, moto, deployable):
    """No table asked for: no table, no DynamoDB permission, no DEDUP_* variable (even with
    DedupTtl given); the function is named after the stack."""
    parameters = {**EVERY_SETTING, "CreateDedupTable": "false"}
    tables_before = moto("dynamodb").list_tables()["TableNames"]
    outputs = deploy(aws_env, moto, deployable, "webhook-plain", parameters)
    resources = stack_resources(moto, "webhook-plain")
    assert "DedupTable" not in resources and "DedupTableName" not in outputs
    assert moto("dynamodb").list_tables()["TableNames"] == tables_before
    assert outputs["FunctionName"] == "webhook-plain"

    config = check_function(moto, "webhook-plain", parameters, None)
    check_public_permissions(moto, "webhook-plain")
    check_log_group(moto, "webhook-plain", 30)
    assert role_policies(moto, config["Role"]) == {}


def test_deployed_with_every_optional_setting_empty(aws_env, moto, deployable):
    """Empty parameters leave their variables unset: the environment holds the two QStash
    keys and nothing else, so the handler's own defaults apply."""
    parameters = {**EVERY_SETTING_EMPTY, "CreateDedupTable": "false", "FunctionName": ""}
    deploy(aws_env, moto, deployable, "webhook-bare", parameters)
    config = check_function(moto, "webhook-bare", parameters, None)
    assert config["Environment"]["Variables"] == {
        "QSTASH_CURRENT_SIGNING_KEY": QSTASH_KEYS["QStashCurrentSigningKey"],
        "QSTASH_NEXT_SIGNING_KEY": QSTASH_KEYS["QStashNextSigningKey"]}
    check_public_permissions(moto, "webhook-bare")
