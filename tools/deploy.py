"""`make create` and `make deploy`, through the AWS CLI you already use (credentials, region
and profile as usual; AWS_ENDPOINT_URL is honoured).

  deploy.py create FUNCTION ROLE   first deploy: function, Function URL (auth NONE), public
                                   invoke permissions; prints the URL to give QStash
  deploy.py update FUNCTION        new code; waits; checks CodeSha256 against lambda.zip

Both refuse configuration the handler would refuse (signed_webhooks.config's rules, the
same rules the handler answers 500 with), naming the variable and never its value: `create`
checks the variables it would send before calling AWS at all; `update` reads the function's
environment and checks it against the new code before changing anything.

The function's Python and machine are make zip's (tools/build_zip.py: RUNTIME, and ARCH,
default arm64, which `create` passes as --architectures). Both refuse, before changing
anything, a lambda.zip holding a compiled package from requirements.txt that cannot run
there: built for the other machine or another Python than the function's (its own, for
`update`).
"""
import base64
import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

import build_zip  # the function's Python and machine: one setting with make zip's
import vendor

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from signed_webhooks.config import configuration_errors  # noqa: E402  (the code deployed)

ZIP = ROOT / "lambda.zip"
RUNTIME = build_zip.RUNTIME  # the newest tested
HANDLER = "lambda_function.lambda_handler"
# The handler's variables, sent to the function when set in your shell. Not QSTASH_URL and
# QSTASH_TOKEN: Upstash's tools use them for its API (base URL and publishing credential),
# and the handler needs neither.
FORWARDED = ("QSTASH_CURRENT_SIGNING_KEY", "QSTASH_NEXT_SIGNING_KEY", "QSTASH_DESTINATION_URL",
             "QSTASH_CLOCK_TOLERANCE", "SOKETI_SECRET", "SOKETI_NEXT_SECRET", "SOKETI_KEY",
             "SOKETI_MAX_AGE", "METRICS_NAMESPACE", "DEDUP_TABLE", "DEDUP_TTL")
REGIONAL_KEY = re.compile(r"[A-Z0-9]+(_[A-Z0-9]+)*_QSTASH_(CURRENT|NEXT)_SIGNING_KEY")
# Accepts the QStash dev server's public keys and soketi's default secret: make serve and the
# tests only. A deployed function must never carry it.
DEV_ONLY = "ALLOW_PUBLIC_DEV_KEYS"


def run_aws(*args):
    """Run one AWS CLI command; the finished process, whatever its exit status."""
    return subprocess.run(["aws", *args, "--output", "json"], capture_output=True, text=True)


def aws(*args):
    """Run one AWS CLI command; return its JSON output (or None); stop loudly on failure."""
    result = run_aws(*args)
    if result.returncode != 0:
        sys.exit("aws %s failed:\n%s" % (" ".join(args[:2]), result.stderr.strip()))
    return json.loads(result.stdout) if result.stdout.strip() else None


def code_sha256():
    return base64.b64encode(hashlib.sha256(ZIP.read_bytes()).digest()).decode()


# --- The zip against the function: compiled packages run on one machine and Python only ---

def zip_mismatches(arch, runtime):
    """Each package in lambda.zip (from requirements.txt) that cannot run on a function on
    `arch` with `runtime`, one line each; stops when there is no lambda.zip."""
    if not ZIP.is_file():
        sys.exit("there is no lambda.zip: make zip builds it (make create and make deploy "
                 "run it first)")
    machine = build_zip.ARCHITECTURES.get(arch, arch)
    python = runtime.removeprefix("python")
    with zipfile.ZipFile(ZIP) as archive:
        found = vendor.distributions_in_zip(archive)
    return ["%s is built for another machine or Python than %s on %s"
            % (vendor.describe(name, version, tags), runtime, arch)
            for name, version, tags in found if not vendor.runs_on(tags, machine, python)]


def refuse_mismatched_zip(arch, runtime, whose, fix):
    """Stop before AWS is called when lambda.zip's compiled packages cannot run there."""
    mismatches = zip_mismatches(arch, runtime)
    if mismatches:
        sys.exit("refusing to deploy: lambda.zip cannot run on %s (%s, %s):\n%s\n%s"
                 % (whose, arch, runtime, "\n".join("  - " + line for line in mismatches),
                    fix))


def architecture():
    """ARCH (make create ARCH=x86_64), as make zip reads it."""
    try:
        return build_zip.architecture()
    except build_zip.BuildError as error:
        sys.exit(str(error))


def configuration():
    """The handler's variables that are set here (names only ever printed, never values)."""
    names = [name for name in os.environ
             if name in FORWARDED or REGIONAL_KEY.fullmatch(name)]
    return {name: os.environ[name] for name in sorted(names) if os.environ[name]}


def refusals(variables, dev_opt_in, where):
    """Why the handler would refuse `variables` (one line each, naming the variable, never a
    value). dev_opt_in: ALLOW_PUBLIC_DEV_KEYS is set where they come from; `where` says
    whose variables they are, for the messages."""
    problems = []
    if dev_opt_in:
        problems.append("%s is set in %s: it accepts public keys and is for make serve and the "
                        "tests only; a deployed function never carries it" % (DEV_ONLY, where))
    without_opt_in = {name: value for name, value in variables.items() if name != DEV_ONLY}
    problems += configuration_errors(without_opt_in)
    return problems


def refuse_if_misconfigured(variables, dev_opt_in, where, fix):
    """Stop, listing every problem, when the handler would answer 500 with `variables`."""
    problems = refusals(variables, dev_opt_in, where)
    if problems:
        sys.exit("refusing to deploy: the handler would answer 500 with the variables in %s:\n"
                 "%s\n%s" % (where, "\n".join("  - " + problem for problem in problems), fix))


def warn_about_unforwarded():
    """QSTASH_URL used to set the destination URL; say it is no longer read, once."""
    if os.environ.get("QSTASH_URL") and not os.environ.get("QSTASH_DESTINATION_URL"):
        print("note: QSTASH_URL is not sent to the function (Upstash's tools read it as the "
              "QStash API base). The URL you gave QStash goes in QSTASH_DESTINATION_URL",
              file=sys.stderr)


def create_function(function, role, variables, arch):
    """aws lambda create-function; a function of that name already existing is a clear stop."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as env_file:
        json.dump({"Variables": variables}, env_file)
        env_file.flush()
        result = run_aws("lambda", "create-function", "--function-name", function,
                         "--runtime", RUNTIME, "--architectures", arch, "--handler", HANDLER,
                         "--role", role, "--zip-file", "fileb://%s" % ZIP, "--timeout", "30",
                         "--environment", "file://" + env_file.name)
    if result.returncode == 0:
        return
    if "ResourceConflictException" in result.stderr:
        sys.exit("function %s already exists, so make create changed nothing.\n"
                 "  new code:      make deploy FUNCTION=%s\n"
                 "  its variables: aws lambda update-function-configuration --function-name %s "
                 "--environment 'Variables={NAME=value,...}'" % (function, function, function))
    sys.exit("aws lambda create-function failed:\n%s" % result.stderr.strip())


def create(function, role):
    variables = configuration()
    refuse_if_misconfigured(variables, bool(os.environ.get(DEV_ONLY)), "your shell",
                            "Set or unset them, then run make create again.")
    warn_about_unforwarded()
    arch = architecture()
    refuse_mismatched_zip(arch, RUNTIME, "the function make create makes",
                          "Build it for that machine: make create ARCH=%s ..." % arch)
    ensure_aws_cli()
    create_function(function, role, variables, arch)
    aws("lambda", "wait", "function-active-v2", "--function-name", function)
    url = aws("lambda", "create-function-url-config", "--function-name", function,
              "--auth-type", "NONE")["FunctionUrl"]
    # Since October 2025 a public Function URL needs both statements.
    aws("lambda", "add-permission", "--function-name", function, "--statement-id",
        "FunctionURLAllowPublicAccess", "--action", "lambda:InvokeFunctionUrl", "--principal",
        "*", "--function-url-auth-type", "NONE")
    aws("lambda", "add-permission", "--function-name", function, "--statement-id",
        "FunctionURLAllowInvokeAction", "--action", "lambda:InvokeFunction", "--principal", "*",
        "--invoked-via-function-url")
    print("created %s (%s, %s, %s) with %s" % (function, RUNTIME, arch, HANDLER,
                                               ", ".join(variables) or "no variables"))
    if variables.get("DEDUP_TABLE"):
        set_up_deduplication(variables["DEDUP_TABLE"], role)
    print("Function URL, to give QStash: %s" % url)


def deployed_configuration(function):
    """The function's configuration now (read only)."""
    return aws("lambda", "get-function-configuration", "--function-name", function)


def deployed_variables(config):
    """The environment the function runs with, from its configuration."""
    return (config.get("Environment") or {}).get("Variables") or {}


# --- Deduplication (DEDUP_TABLE): the table and the role's permission on it ---------------

DEDUP_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                 "dynamodb:DeleteItem")  # exactly the calls signed_webhooks/dynamodb.py makes


def dedup_policy(table_arn):
    """The inline policy the function's role needs: the four item calls, on that table only."""
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "WebhookDeduplication", "Effect": "Allow", "Action": list(DEDUP_ACTIONS),
        "Resource": table_arn}]}


def set_up_deduplication(table, role):
    """Create the table if it is missing (on demand, key `id`, TTL on `expires_at`), then
    give the role an inline policy for exactly the calls deduplication makes."""
    table_arn = ensure_dedup_table(table)
    grant_dedup_access(role, table, table_arn)


def ensure_dedup_table(table):
    """The table's ARN, after creating it when it does not exist yet."""
    result = subprocess.run(["aws", "dynamodb", "describe-table", "--table-name", table,
                             "--output", "json"], capture_output=True, text=True)
    if result.returncode == 0:
        print("dedup table %s exists; left as it is" % table)
        description = json.loads(result.stdout)["Table"]
        ttl = aws("dynamodb", "describe-time-to-live", "--table-name", table)
        ttl_on = ttl["TimeToLiveDescription"].get("TimeToLiveStatus") in ("ENABLED", "ENABLING")
    elif "ResourceNotFoundException" in result.stderr:
        description = aws("dynamodb", "create-table", "--table-name", table,
                          "--attribute-definitions", "AttributeName=id,AttributeType=S",
                          "--key-schema", "AttributeName=id,KeyType=HASH",
                          "--billing-mode", "PAY_PER_REQUEST")["TableDescription"]
        if description.get("TableStatus") != "ACTIVE":  # TTL can be set once it is active
            aws("dynamodb", "wait", "table-exists", "--table-name", table)
        print("created dedup table %s (on demand, partition key id)" % table)
        ttl_on = False
    else:
        sys.exit("aws dynamodb describe-table failed:\n%s" % result.stderr.strip())
    if not ttl_on:
        aws("dynamodb", "update-time-to-live", "--table-name", table,
            "--time-to-live-specification", "Enabled=true,AttributeName=expires_at")
        print("turned on TTL for %s on expires_at (DynamoDB deletes expired records)" % table)
    return description["TableArn"]


def grant_dedup_access(role, table, table_arn):
    """Put the inline policy on the role named by the ROLE arn."""
    role_name = role.rsplit("/", 1)[-1]
    policy_name = "webhook-dedup-" + table
    aws("iam", "put-role-policy", "--role-name", role_name, "--policy-name", policy_name,
        "--policy-document", json.dumps(dedup_policy(table_arn)))
    print("gave role %s the inline policy %s: %s on %s"
          % (role_name, policy_name, ", ".join(DEDUP_ACTIONS), table_arn))


def update(function):
    ensure_aws_cli()
    config = deployed_configuration(function)
    variables = deployed_variables(config)
    refuse_if_misconfigured(
        variables, bool(variables.get(DEV_ONLY)), "function %s" % function,
        "Fix them first: aws lambda update-function-configuration --function-name %s "
        "--environment 'Variables={NAME=value,...}'" % function)
    arch = (config.get("Architectures") or ["x86_64"])[0]  # Lambda's default: x86_64
    runtime = config.get("Runtime") or RUNTIME
    refuse_mismatched_zip(
        arch, runtime, "function %s" % function,
        "Build it for the function's machine (make deploy FUNCTION=%s ARCH=%s); make zip "
        "builds for %s: aws lambda update-function-configuration --function-name %s "
        "--runtime %s moves the function to it" % (function, arch, RUNTIME, function, RUNTIME))
    expected = code_sha256()
    aws("lambda", "update-function-code", "--function-name", function,
        "--zip-file", "fileb://%s" % ZIP)
    aws("lambda", "wait", "function-updated", "--function-name", function)
    deployed = aws("lambda", "get-function", "--function-name", function)[
        "Configuration"]["CodeSha256"]
    if deployed != expected:
        sys.exit("DEPLOY MISMATCH: %s runs CodeSha256 %s, but lambda.zip is %s"
                 % (function, deployed, expected))
    print("deployed %s: CodeSha256 %s matches lambda.zip" % (function, deployed))


def ensure_aws_cli():
    if not shutil.which("aws"):
        sys.exit("the AWS CLI (`aws`) is not on PATH: install it, then run this again")


def main():
    command, *args = sys.argv[1:] or ["help"]
    if command == "create" and len(args) == 2 and all(args):
        create(*args)
    elif command == "update" and len(args) == 1 and args[0]:
        update(args[0])
    else:
        sys.exit("usage: make create FUNCTION=name ROLE=arn:aws:iam::...:role/...\n"
                 "       make deploy FUNCTION=name")


if __name__ == "__main__":
    main()
