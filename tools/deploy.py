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
RUNTIME, HANDLER = "python3.14", "lambda_function.lambda_handler"  # the newest tested


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
    variables = configuration()
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
    print("Function URL, to give QStash: %s" % url)


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
