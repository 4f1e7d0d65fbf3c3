"""Other CPython versions than the one running, for the compatibility tests and `make bench`.

Lambda runs lambda_function.py on Python 3.9 to 3.14. 3.9 and 3.13 are built here from
Debian's copies of the CPython release tarballs (checked against the sha256 that Debian's
source index lists), once, into build/peers/cpython-X.Y. About two minutes each on two cores.
Debian's index lists python3.14 sources too, but its mirror does not serve them here: 3.14 runs
as Pyodide (tools/pyodide.py).
"""
import base64
import hashlib
import io
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request

import progress
from progress import shown
from rie import PEERS

POOL = "http://deb.debian.org/debian/pool/main/p/"
RELEASES = {  # version: (release, sha256 of the tarball), from Debian bullseye and trixie
    "3.9": ("3.9.2", "3c2034c54f811448f516668dce09d24008a0716c3a794dd8639b5388cbde247d"),
    "3.13": ("3.13.5", "93e583f243454e6e9e4588ca2c2662206ad961659863277afcdb96801647d640"),
}


def interpreter(version):
    """build/peers/cpython-X.Y/bin/pythonX.Y if it is built, else None."""
    python = PEERS / ("cpython-" + version) / "bin" / ("python" + version)
    return python if python.exists() else None


def download(url, algorithm, expected):
    """The bytes at `url`, checked against the digest its source lists: `expected` is the hex
    digest, or npm's integrity form "sha512-<base64>". RuntimeError says what failed."""
    try:
        with urllib.request.urlopen(url, timeout=300) as response:
            data = response.read()
    except OSError as error:
        raise RuntimeError("could not download %s: %s" % (url, error)) from None
    digest = hashlib.new(algorithm, data)
    if expected not in (digest.hexdigest(),
                        algorithm + "-" + base64.b64encode(digest.digest()).decode()):
        raise RuntimeError("%s does not have the %s its source lists" % (url, algorithm))
    return data


def build(version):
    """The interpreter for `version`, built from source if need be; raises RuntimeError with
    the reason when it cannot be downloaded or built. Says so first: it takes minutes."""
    if interpreter(version):
        return interpreter(version)
    release, sha256 = RELEASES[version]
    prefix = PEERS / ("cpython-" + version)
    doing = "building CPython %s from source into %s" % (release, shown(prefix))
    with progress.step(doing, "a download of about 20 MB, then usually two minutes on an "
                              "idle two-core machine, longer on a busy one"):
        compile_and_install(version, release, sha256, prefix)
    return interpreter(version)


def compile_and_install(version, release, sha256, prefix):
    """Download the release's tarball, check it, run configure, make, make install."""
    url = "%spython%s/python%s_%s.orig.tar.xz" % (POOL, version, version, release)
    with tempfile.TemporaryDirectory() as work:
        with tarfile.open(fileobj=io.BytesIO(download(url, "sha256", sha256))) as archive:
            if hasattr(tarfile, "data_filter"):  # Python 3.12+, and security releases before it
                archive.extractall(work, filter="data")
            else:
                archive.extractall(work)
        source = next(p for p in pathlib.Path(work).iterdir() if p.name.startswith("Python-"))
        jobs = str(os.cpu_count() or 2)
        for step in (["./configure", "--prefix=" + str(prefix), "--without-ensurepip"],
                     ["make", "-j" + jobs], ["make", "install"]):
            result = subprocess.run(step, cwd=source, capture_output=True, text=True)
            if result.returncode:
                shutil.rmtree(prefix, ignore_errors=True)
                raise RuntimeError("CPython %s: %s failed: %s"
                                   % (release, " ".join(step), result.stderr[-800:]))


def venv(version, requirements):
    """A virtual environment on that interpreter with `requirements` installed (by this
    interpreter's pip, which resolves for the other version), rebuilt when they change."""
    folder = PEERS / ("venv-" + version)
    python, stamp = folder / "bin" / "python", folder / "requirements.txt"
    spec = pathlib.Path(requirements).read_text()
    if not python.exists() or not stamp.exists() or stamp.read_text() != spec:
        shutil.rmtree(folder, ignore_errors=True)
        interpreter_built = build(version)
        doing = "installing %s for Python %s into %s" % (
            shown(pathlib.Path(requirements)), version, shown(folder))
        with progress.step(doing, "usually under a minute"):
            subprocess.run([str(interpreter_built), "-m", "venv", "--without-pip", str(folder)],
                           check=True)
            result = subprocess.run([sys.executable, "-m", "pip", "--python", str(python),
                                     "install", "--quiet", "--disable-pip-version-check", "-r",
                                     str(requirements)], capture_output=True, text=True)
            if result.returncode:
                raise RuntimeError("pip could not install %s for Python %s: %s"
                                   % (requirements, version, result.stderr[-800:]))
        stamp.write_text(spec)
    return python


if __name__ == "__main__":
    for name in sys.argv[1:] or RELEASES:
        print(build(name))
