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
import re
import shutil
import subprocess
import sys

import pytest

import template as sam_template
from conftest import ROOT, SIGNED_VECTORS, need
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


def test_make_template_passes_sam_validate_lint_and_prints_the_deploy_commands():
    try:
        sam_template.sam_executable()
    except RuntimeError as error:
        need(False, str(error))
    result = subprocess.run(["make", "-s", "template", "VPY=" + sys.executable], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "cfn-lint: ok\nsam validate --lint: ok\n" in result.stdout
    for command in ("make zip", "sam deploy --guided", "aws cloudformation package",
                    "aws cloudformation deploy", "make deploy FUNCTION="):
        assert command in result.stdout, command
    # the same check, failing on a copy with a runtime Lambda no longer creates
    broken = sam_template.SAM_VENV / "broken-template.yaml"
    broken.write_text(sam_template.TEMPLATE.read_text().replace("Runtime: python3.14",
                                                                "Runtime: python2.7"))
    refused = sam_template.sam_validate(broken)
    assert refused.returncode != 0 and "E2533" in refused.stdout + refused.stderr


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
