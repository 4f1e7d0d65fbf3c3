"""`make create` and `make deploy`, through the AWS CLI you already use (credentials, region
and profile as usual; AWS_ENDPOINT_URL is honoured).

  deploy.py create FUNCTION ROLE   first deploy: function, Function URL (auth NONE), public
                                   invoke permissions; prints the URL to give QStash
  deploy.py update FUNCTION        new code; waits; checks CodeSha256 against lambda.zip
"""
import base64
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
ZIP = ROOT / "lambda.zip"
RUNTIME, HANDLER = "python3.12", "lambda_function.lambda_handler"


def aws(*args):
    """Run one AWS CLI command; return its JSON output (or None); stop loudly on failure."""
    result = subprocess.run(["aws", *args, "--output", "json"], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit("aws %s failed:\n%s" % (" ".join(args[:2]), result.stderr.strip()))
    return json.loads(result.stdout) if result.stdout.strip() else None


def code_sha256():
    return base64.b64encode(hashlib.sha256(ZIP.read_bytes()).digest()).decode()


def configuration():
    """The handler's variables that are set here (names only ever printed, never values)."""
    names = [n for n in os.environ if n.startswith("SOKETI_") or "QSTASH_" in n and (
        n.endswith("_SIGNING_KEY") or n in ("QSTASH_URL", "QSTASH_CLOCK_TOLERANCE"))]
    return {n: os.environ[n] for n in sorted(names) if os.environ[n]}


def create(function, role):
    variables = {**configuration(), **dedup_variables()}
    if "QSTASH_CURRENT_SIGNING_KEY" not in variables and "SOKETI_SECRET" not in variables:
        print("warning: no QSTASH_* keys or SOKETI_SECRET in your environment: the function "
              "will answer 500 until you set them", file=sys.stderr)
    with tempfile.NamedTemporaryFile("w", suffix=".json") as env_file:
        json.dump({"Variables": variables}, env_file)
        env_file.flush()
        aws("lambda", "create-function", "--function-name", function, "--runtime", RUNTIME,
            "--handler", HANDLER, "--role", role, "--zip-file", "fileb://%s" % ZIP,
            "--timeout", "30", "--environment", "file://" + env_file.name)
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
    print("created %s (%s, %s) with %s" % (function, RUNTIME, HANDLER,
                                           ", ".join(variables) or "no variables"))
    if variables.get("DEDUP_TABLE"):
        set_up_deduplication(variables["DEDUP_TABLE"], role)
    print("Function URL, to give QStash: %s" % url)


# --- Deduplication (DEDUP_TABLE): the table and the role's permission on it ---------------

DEDUP_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                 "dynamodb:DeleteItem")  # exactly the calls lambda_function.py makes


def dedup_variables():
    """DEDUP_TABLE and DEDUP_TTL when set here: they go into the function's environment."""
    return {name: os.environ[name] for name in ("DEDUP_TABLE", "DEDUP_TTL")
            if os.environ.get(name)}


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


def main():
    if not shutil.which("aws"):
        sys.exit("the AWS CLI (`aws`) is not on PATH: install it, then run this again")
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
