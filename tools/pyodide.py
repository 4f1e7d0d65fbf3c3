"""Lambda's Python 3.10, 3.12 and 3.14 runtimes, for the compatibility tests, as Pyodide under
Node.

No CPython 3.10, 3.12 or 3.14 source is reachable from here (Debian's mirror serves the 3.9 and
3.13 tarballs that tools/cpython.py builds; its index lists python3.14 sources, but the files
are not served, and its python3.14 binaries need a newer C library than bookworm's). The npm
registry carries Pyodide: CPython compiled to WebAssembly, with CPython's own parser, compiler
and standard library at that version. Fetched once into build/peers/pyodide-X.Y and checked
against the integrity (sha512) the registry lists.

Where it differs from Lambda's build, and what the tests do about it:
- no subprocesses: the Node.js oracle tests skip there (they run on every other version);
- hashlib without OpenSSL: CPython's own SHA-256, the fallback the handler must work on too;
- ssl is a separate download: PyJWT and httpx import it when loaded, and nothing the tests call
  uses it, so a stand-in that defines SSLContext sits in the packages folder;
- a smaller C stack: Node is given 2 MB, so deep-nesting tests reach Python's RecursionError;
- except on 3.14, which no longer counts C recursion but compares the stack pointer with the
  stack's end. Under WebAssembly most of a C frame lives on Node's own stack, not on the stack
  Python watches: repr() or json.dumps() of a list nested 100,000 deep ends Pyodide with a
  fatal RangeError (Node given 1 to 7 MB), or completes without any RecursionError (30 MB).
  The deep-nesting tests cannot run there (CANNOT_RUN); they run on every other version.
"""
import io
import json
import pathlib
import shutil
import subprocess
import sys
import tarfile

import progress
from cpython import download
from progress import shown
from rie import PEERS, ROOT

RELEASES = {  # Python version: (Pyodide release, the npm registry's integrity for its tarball)
    "3.10": ("0.22.1", "sha512-6+PkFLTC+kcBKtFQxYBxR44J5IBxLm8UGkobLgZv1SxzV9qOU2rb0YYf0qDtlnfD"
                       "iN/IQd2uckf+D8Zwe88Mqg=="),
    "3.12": ("0.27.7", "sha512-RUSVJlhQdfWfgO9hVHCiXoG+nVZQRS5D9FzgpLJ/VcgGBLSAKoPL8kTiOikxbHQm"
                       "1kRISeWUBdulEgO26qpSRA=="),
    "3.14": ("314.0.7", "sha512-0YvXxEhfEdpLfb/XkM2BFAeMROq0iMUX2bzzH9pOttyMcWkwq+HbE5uyuGD82LN7"
                        "y2q+SNvi/6V5JEsOlD2R1A=="),
}
# Tests that cannot run on a release, by pytest node id, with the reason (see above). The
# compatibility test deselects them and checks that exactly these were deselected.
DEEP_NESTING = ("Pyodide's Python 3.14 cannot raise RecursionError for deep C recursion: Node's "
                "stack overflows first and Pyodide stops")
CANNOT_RUN = {
    "3.14": {
        "tests/test_shapes.py::test_deeply_nested_soketi_payload_is_a_400": DEEP_NESTING,
        "tests/test_robustness.py::test_deep_nesting_everywhere": DEEP_NESTING,
    },
}
TARBALL = "https://registry.npmjs.org/pyodide/-/pyodide-%s.tgz"
RUNNER = ROOT / "tools" / "pyodide_run.js"
# pytest's own needs below Python 3.11. pip evaluates markers for the Python running it, not
# the --python-version it installs for, so they are named here (the releases the 3.9 run uses).
BELOW_3_11 = ["exceptiongroup==1.3.1", "tomli==2.5.0"]
SSL_STANDIN = '"""Stand-in: Pyodide ships ssl apart; nothing the tests call uses it."""\n' \
              "class SSLContext:\n    pass\n"


def fetch(version):
    """build/peers/pyodide-X.Y, downloaded and checked if need be; RuntimeError says why not."""
    folder = PEERS / ("pyodide-" + version)
    if (folder / "pyodide.js").exists():
        return folder
    release, integrity = RELEASES[version]
    doing = "downloading Pyodide %s (Python %s) from the npm registry into %s" % (
        release, version, shown(folder))
    with progress.step(doing, "about 14 MB, usually under a minute"):
        unpack(download(TARBALL % release, "sha512", integrity), folder)
    return folder


def unpack(data, folder):
    """The npm tarball's package/ folder, unpacked into `folder` (whole or not at all)."""
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        for member in archive.getmembers():  # package/<file>, nothing else, no links
            name = pathlib.PurePosixPath(member.name)
            if member.isfile() and name.parts[0] == "package" and ".." not in name.parts:
                target = staging.joinpath(*name.parts[1:])
                target.parent.mkdir(parents=True, exist_ok=True)
                contents = archive.extractfile(member)
                assert contents is not None  # a regular file, checked above
                target.write_bytes(contents.read())
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)


def site(version, requirements):
    """The test packages for that Python, pure-Python wheels installed by the host's pip into
    build/peers/pyodide-site-X.Y, rebuilt when the requirements change."""
    folder = PEERS / ("pyodide-site-" + version)
    extra = BELOW_3_11 if tuple(map(int, version.split("."))) < (3, 11) else []
    spec = pathlib.Path(requirements).read_text() + "".join(line + "\n" for line in extra)
    stamp = folder / "requirements.txt"
    if stamp.exists() and stamp.read_text() == spec:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    doing = "installing %s for Pyodide's Python %s into %s" % (
        shown(pathlib.Path(requirements)), version, shown(folder))
    with progress.step(doing, "usually under a minute"):
        result = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--target", str(folder), "--python-version", version, "--implementation", "py",
             "--abi", "none", "--platform", "any", "--only-binary=:all:", "-r",
             str(requirements), *extra], capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError("pip could not install %s for Pyodide's Python %s: %s"
                               % (requirements, version, result.stderr[-800:]))
    (folder / "ssl.py").write_text(SSL_STANDIN)
    stamp.write_text(spec)
    return folder


def command(version, requirements, *python_args):
    """argv that runs `python *python_args` on Pyodide's Python `version` in the project
    folder (mounted at /project), with the test packages on its path."""
    node = shutil.which("node")
    if not node:
        raise RuntimeError("Node.js is required to run Pyodide (apt-get install nodejs)")
    return [node, "--stack-size=2000", str(RUNNER), str(fetch(version)),
            str(site(version, requirements)), str(ROOT), json.dumps(list(python_args))]


if __name__ == "__main__":  # python tools/pyodide.py 3.12 -c "import sys; print(sys.version)"
    requirements = ROOT / "requirements-compat.txt"
    sys.exit(subprocess.run(command(sys.argv[1], requirements, *sys.argv[2:])).returncode)
