"""`make template`: check template.yaml offline, then print the command that deploys it.

It installs only what it runs, into build/sam-venv, the first time: the pinned AWS SAM CLI
and the pinned cfn-lint (the pin in requirements-test.txt, so that `make template` and the
tests check with the same release). The SAM CLI pins its own boto3, which the AWS CLI's
botocore pin in .venv rules out, so it lives in a venv of its own; this file itself needs
only the standard library (and Python 3.10+, as the SAM CLI does), nothing from .venv.

Two independent checks, neither needs AWS credentials or a network:
- cfn-lint, on the SAM template as written;
- `sam validate --lint`, the SAM CLI's own check.
Then it prints a `sam deploy` command that runs as printed from the project's folder: every
parameter that sets one of the handler's variables takes it from the shell (as `make create`
does), the S3 bucket is SAM's own (--resolve-s3), and the stack is named so that `make deploy
FUNCTION=` can update its code later. Before the command, it lists what the handler would
refuse in the variables the command would send, as `make create` does before deploying.

load() and translate() serve the tests, with .venv's cfn-lint and aws-sam-translator:
translate() turns the template into plain CloudFormation with the library the SAM CLI and
CloudFormation's own SAM transform use.
"""
import json
import os
import pathlib
import subprocess
import sys
import textwrap
import time

import deploy
import progress
from rie import ROOT, SAM_CLI

TEMPLATE = ROOT / "template.yaml"
SAM_VENV = ROOT / "build" / "sam-venv"
REGION = "us-east-1"  # any region: the checks run offline, it only picks ARN partitions
REQUIREMENTS = ROOT / "requirements-test.txt"  # holds the cfn-lint pin
STACK = "qstash-webhook"  # the stack the printed command creates; its function has this name
# The template's parameter for each of the handler's variables (its Environment section).
# DEDUP_TABLE has none: CreateDedupTable=true makes the table and sets DEDUP_TABLE to it.
PARAMETER_OF_VARIABLE = {
    "QSTASH_CURRENT_SIGNING_KEY": "QStashCurrentSigningKey",
    "QSTASH_NEXT_SIGNING_KEY": "QStashNextSigningKey",
    "QSTASH_DESTINATION_URL": "QStashDestinationUrl",
    "QSTASH_CLOCK_TOLERANCE": "QStashClockTolerance",
    "SOKETI_SECRET": "SoketiSecret",
    "SOKETI_NEXT_SECRET": "SoketiNextSecret",
    "SOKETI_KEY": "SoketiKey",
    "SOKETI_MAX_AGE": "SoketiMaxAge",
    "METRICS_NAMESPACE": "MetricsNamespace",
    "DEDUP_TTL": "DedupTtl",
}


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


# --- build/sam-venv: the SAM CLI and cfn-lint, pinned ------------------------------------

def cfn_lint_pin() -> str:
    """requirements-test.txt's cfn-lint line ("cfn-lint==1.58.0"): one pin for both uses."""
    for line in REQUIREMENTS.read_text().splitlines():
        if line.startswith("cfn-lint=="):
            return line.strip()
    raise RuntimeError("requirements-test.txt pins no cfn-lint (a line cfn-lint==X.Y.Z)")


def sam_venv_packages() -> list:
    """What build/sam-venv holds: the SAM CLI and cfn-lint, each at its pinned release."""
    return [SAM_CLI, cfn_lint_pin()]


def sam_venv_bin() -> pathlib.Path:
    """build/sam-venv/bin, with the pinned packages installed there if need be (the first
    time, or after a pin changed). Raises RuntimeError with the reason when it cannot be."""
    marker = SAM_VENV / ".installed"
    wanted = "\n".join(sam_venv_packages())
    ready = (SAM_VENV / "bin" / "sam").exists() and (SAM_VENV / "bin" / "cfn-lint").exists()
    if ready and marker.exists() and marker.read_text() == wanted:
        return SAM_VENV / "bin"
    if sys.version_info < (3, 10):
        raise RuntimeError("%s needs Python 3.10 or newer, and this is Python %d.%d: run it "
                           "with a newer one, e.g. make template PYTHON=python3.12"
                           % (SAM_CLI, sys.version_info[0], sys.version_info[1]))
    doing = "installing %s into %s" % (" and ".join(sam_venv_packages()),
                                        progress.shown(SAM_VENV))
    with progress.step(doing, "about 340 MB, usually one to three minutes"):
        install_sam_venv()
    marker.write_text(wanted)
    return SAM_VENV / "bin"


def install_sam_venv() -> None:
    """A fresh venv at build/sam-venv, with the pinned packages."""
    created = subprocess.run([sys.executable, "-m", "venv", "--clear", str(SAM_VENV)],
                             capture_output=True, text=True)
    if created.returncode != 0:
        raise RuntimeError("could not create the venv %s: %s"
                           % (progress.shown(SAM_VENV), created.stderr[-800:]))
    installed = subprocess.run([str(SAM_VENV / "bin" / "python"), "-m", "pip", "install",
                                "--quiet", "--disable-pip-version-check",
                                *sam_venv_packages()], capture_output=True, text=True)
    if installed.returncode != 0:
        raise RuntimeError("pip could not install %s: %s"
                           % (" ".join(sam_venv_packages()), installed.stderr[-800:]))


def sam_executable() -> pathlib.Path:
    """build/sam-venv/bin/sam at the pinned release, installed there if need be."""
    return sam_venv_bin() / "sam"


def sam_environment() -> dict:
    """The environment for an offline `sam` run: no telemetry (it posts to AWS), and its
    weekly release check (a PyPI call) marked as just done, in a settings folder under build/
    rather than ~/.aws-sam."""
    settings = SAM_VENV / "settings"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "metadata.json").write_text(json.dumps({"lastVersionCheck": time.time()}))
    return {**os.environ, "SAM_CLI_TELEMETRY": "0", "__SAM_CLI_APP_DIR": str(settings),
            "AWS_DEFAULT_REGION": REGION}


# --- the checks ----------------------------------------------------------------------------

def cfn_lint(*paths: pathlib.Path) -> subprocess.CompletedProcess:
    """build/sam-venv's cfn-lint on template.yaml, or on `paths`; exit status 0 means no
    error, warning or informational finding. One line per finding, starting with the path."""
    return subprocess.run([str(sam_venv_bin() / "cfn-lint"), "--format", "parseable",
                           *map(str, paths or [TEMPLATE])], capture_output=True, text=True)


def sam_validate(path: pathlib.Path = TEMPLATE) -> subprocess.CompletedProcess:
    """`sam validate --lint` on `path` (the SAM CLI's own cfn-lint run, no credentials)."""
    return subprocess.run([str(sam_executable()), "validate", "--lint", "--template-file",
                           str(path), "--region", REGION],
                          capture_output=True, text=True, env=sam_environment(), cwd=path.parent)


# --- the deploy command ----------------------------------------------------------------------

def parameter_override(parameter: str, variable: str) -> str:
    """One --parameter-overrides word, as the shell reads it: PARAMETER="$VARIABLE", the
    value in the double quotes of SAM's own syntax, so that an empty value (SAM refuses a
    bare `Name=`) and a value with spaces (QSTASH_DESTINATION_URL) pass whole."""
    return '"%s=\\"$%s\\""' % (parameter, variable)


def deploy_command(create_dedup_table: bool) -> str:
    """The `sam deploy` command, one option or parameter per line, ready to paste."""
    sam = (SAM_VENV / "bin" / "sam").relative_to(ROOT)
    lines = ["%s deploy --template-file %s --stack-name %s" % (sam, TEMPLATE.name, STACK),
             "    --resolve-s3 --capabilities CAPABILITY_IAM --no-fail-on-empty-changeset",
             "    --parameter-overrides"]
    for variable, parameter in PARAMETER_OF_VARIABLE.items():
        lines.append("    " + parameter_override(parameter, variable))
    lines.append("    CreateDedupTable=%s" % ("true" if create_dedup_table else "false"))
    return " \\\n".join(lines)


def sent_variables(environ) -> dict:
    """The handler's variables the command would send: those of PARAMETER_OF_VARIABLE set
    in `environ`."""
    return {name: environ[name] for name in PARAMETER_OF_VARIABLE if environ.get(name)}


def deploy_notes(environ) -> list:
    """What to know before running the command with `environ`'s variables: what the handler
    would refuse (as make create refuses it), and what the template cannot carry."""
    sent = sent_variables(environ)
    notes = deploy.refusals(sent, bool(environ.get(deploy.DEV_ONLY)), "your shell")
    for name, value in sent.items():
        if '"' in value or "\\" in value:
            notes.append("%s holds a double quote or a backslash, which --parameter-overrides "
                         "cannot pass as it is: give that parameter with sam deploy --guided"
                         % name)
    regional = sorted(name for name in environ
                      if deploy.REGIONAL_KEY.fullmatch(name) and environ[name])
    if regional:
        notes.append("the template has no parameter for %s: make create sends regional keys"
                     % ", ".join(regional))
    return notes


def paragraph(text: str) -> str:
    """`text` wrapped for a terminal, with a line break after it."""
    return textwrap.fill(text, width=90) + "\n"


def deploy_advice(environ) -> str:
    """Everything printed after the checks pass."""
    dedup = bool(environ.get("DEDUP_TABLE"))
    text = paragraph("template.yaml passes cfn-lint and sam validate --lint. To deploy it, "
                     "from this folder, with your AWS credentials and region as the AWS CLI "
                     "uses them: each parameter takes the handler's variable of the same "
                     "meaning from this shell, as make create does, and an unset one leaves "
                     "it unset.")
    if dedup:
        text += paragraph("DEDUP_TABLE is set: CreateDedupTable=true makes a table of the "
                          "stack's own and sets DEDUP_TABLE to it (the name in your shell is "
                          "not used).")
    notes = deploy_notes(environ)
    if notes:
        text += "\n" + paragraph("Before you run it, set or unset these in this shell (with "
                                 "them, the function would answer 500, or lack a setting):")
        text += "".join("  - %s\n" % note for note in notes)
    text += "\n  make zip\n"
    text += "".join("  %s\n" % line for line in deploy_command(dedup).splitlines())
    text += "\n" + paragraph("It ends by printing the stack's outputs: FunctionUrl is the URL "
                             "to give QStash. Later code changes: make deploy FUNCTION=%s "
                             "(it builds lambda.zip, uploads it, and checks CodeSha256)."
                             % STACK)
    return text


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
    print(deploy_advice(os.environ), end="")


if __name__ == "__main__":
    main()
