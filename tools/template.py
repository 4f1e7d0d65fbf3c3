"""`make template`: check template.yaml offline, then print the commands that deploy it.

Two independent checks, neither needs AWS credentials or a network:
- cfn-lint (pinned in requirements-test.txt), on the SAM template as written;
- `sam validate --lint`, from the pinned AWS SAM CLI. The SAM CLI pins its own boto3, which
  the AWS CLI's botocore pin rules out, so it lives in its own venv, build/sam-venv, installed
  there the first time (a few minutes).

translate() turns the template into plain CloudFormation with aws-sam-translator, the library
the SAM CLI and CloudFormation's own SAM transform use; the tests deploy that and read it.
"""
import json
import os
import pathlib
import subprocess
import sys
import time

from rie import ROOT, SAM_CLI

TEMPLATE = ROOT / "template.yaml"
SAM_VENV = ROOT / "build" / "sam-venv"
REGION = "us-east-1"  # any region: the checks run offline, it only picks ARN partitions


def load(path: pathlib.Path = TEMPLATE) -> dict:
    """The template as plain data, short forms (!Ref, !If ...) spelt out as Fn:: keys."""
    from cfnlint.decode import cfn_yaml
    return json.loads(json.dumps(cfn_yaml.load(str(path))))


def translate(template: dict) -> dict:
    """Plain CloudFormation for a SAM template whose CodeUri is already in S3 (s3://...).

    Raises if the SAM transform would need to look a managed policy name up in IAM."""
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    def no_policy_lookups():
        raise RuntimeError("the template names a managed policy: that needs IAM, not offline")

    translator = Translator(None, Parser(), boto_session=boto3.Session(region_name=REGION))
    return translator.translate(json.loads(json.dumps(template)), parameter_values={},
                                get_managed_policy_map=no_policy_lookups)


def sam_executable() -> pathlib.Path:
    """build/sam-venv/bin/sam at the pinned release, installed there if need be.
    Raises RuntimeError with pip's words when it cannot be installed."""
    sam = SAM_VENV / "bin" / "sam"
    marker = SAM_VENV / ".installed"
    if sam.exists() and marker.exists() and marker.read_text() == SAM_CLI:
        return sam
    print("installing %s into %s (once; a few minutes)" % (SAM_CLI, SAM_VENV.relative_to(ROOT)),
          file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(SAM_VENV)], check=True)
    installed = subprocess.run([str(SAM_VENV / "bin" / "python"), "-m", "pip", "install",
                                "--quiet", "--disable-pip-version-check", SAM_CLI],
                               capture_output=True, text=True)
    if installed.returncode != 0 or not sam.exists():
        raise RuntimeError("pip could not install %s: %s" % (SAM_CLI, installed.stderr[-800:]))
    marker.write_text(SAM_CLI)
    return sam


def sam_environment() -> dict:
    """The environment for an offline `sam` run: no telemetry (it posts to AWS), and its
    weekly release check (a PyPI call) marked as just done, in a settings folder under build/
    rather than ~/.aws-sam."""
    settings = SAM_VENV / "settings"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "metadata.json").write_text(json.dumps({"lastVersionCheck": time.time()}))
    return {**os.environ, "SAM_CLI_TELEMETRY": "0", "__SAM_CLI_APP_DIR": str(settings),
            "AWS_DEFAULT_REGION": REGION}


def cfn_lint(*paths: pathlib.Path) -> subprocess.CompletedProcess:
    """cfn-lint on template.yaml, or on `paths`; exit status 0 means no error, warning or
    informational finding. One line per finding, starting with the file's path."""
    cfn_lint_script = pathlib.Path(sys.executable).parent / "cfn-lint"
    return subprocess.run([str(cfn_lint_script), "--format", "parseable",
                           *map(str, paths or [TEMPLATE])], capture_output=True, text=True)


def sam_validate(path: pathlib.Path = TEMPLATE) -> subprocess.CompletedProcess:
    """`sam validate --lint` on `path` (the SAM CLI's own cfn-lint run, no credentials)."""
    return subprocess.run([str(sam_executable()), "validate", "--lint", "--template-file",
                           str(path), "--region", REGION],
                          capture_output=True, text=True, env=sam_environment(), cwd=path.parent)


DEPLOY_HELP = """\
template.yaml passes cfn-lint and sam validate --lint. To deploy it (AWS credentials as usual):

  make zip
  sam deploy --guided

or, with the AWS CLI alone (BUCKET: any S3 bucket of yours in the same region):

  make zip
  aws cloudformation package --template-file template.yaml --s3-bucket BUCKET \\
      --output-template-file build/packaged.yaml
  aws cloudformation deploy --template-file build/packaged.yaml --stack-name qstash-webhook \\
      --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND \\
      --parameter-overrides QStashCurrentSigningKey=sig_... QStashNextSigningKey=sig_...
  aws cloudformation describe-stacks --stack-name qstash-webhook --query Stacks[0].Outputs

The FunctionUrl output goes to QStash. Later code changes:
  make deploy FUNCTION=<FunctionName output>
"""


def main():
    failed = False
    for name, check in (("cfn-lint", cfn_lint), ("sam validate --lint", sam_validate)):
        try:
            result = check()
        except RuntimeError as error:  # the SAM CLI could not be installed
            sys.exit("%s could not run: %s" % (name, error))
        print("%s: %s" % (name, "ok" if result.returncode == 0 else "FAILED"), flush=True)
        if result.returncode != 0:
            print((result.stdout + result.stderr).strip(), file=sys.stderr)
            failed = True
    if failed:
        sys.exit("template.yaml has problems: see above")
    print()
    print(DEPLOY_HELP, end="")


if __name__ == "__main__":
    main()
