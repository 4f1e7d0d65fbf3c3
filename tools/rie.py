"""AWS's Runtime Interface Emulator for local runs of lambda.zip: fetched once from the
aws-sam-cli wheel on PyPI (which ships it as a static binary) into build/peers."""
import pathlib
import subprocess
import sys
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
PEERS = ROOT / "build" / "peers"
SAM_CLI = "aws-sam-cli==1.170.0"


def rie_binary():
    """Path to aws-lambda-rie, or None when it cannot be fetched."""
    target = PEERS / "aws-lambda-rie"
    if not target.exists():
        PEERS.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--disable-pip-version-check", SAM_CLI, "-d", str(PEERS)],
                       capture_output=True)
        wheels = list(PEERS.glob("aws_sam_cli-*.whl"))
        if not wheels:
            return None
        with zipfile.ZipFile(wheels[0]) as wheel:
            target.write_bytes(wheel.read("samcli/local/rapid/aws-lambda-rie-x86_64"))
        target.chmod(0o755)
    return target


def unpack(target):
    """lambda.zip unzipped into `target`: what Lambda puts in /var/task."""
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(ROOT / "lambda.zip") as archive:
        archive.extractall(target)
    return target


def emulator_argv(port, runtime_api_port, python, handler="lambda_function.lambda_handler"):
    """Run `python -m awslambdaric HANDLER` under the emulator, both bound to loopback."""
    return [str(rie_binary()), "--runtime-interface-emulator-address", "127.0.0.1:%d" % port,
            "--runtime-api-address", "127.0.0.1:%d" % runtime_api_port,
            python, "-m", "awslambdaric", handler]
