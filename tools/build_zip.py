"""`make zip`: build lambda.zip reproducibly from what the function runs, once Lambda can
load it.

What ships: lambda_function.py, every other top-level .py module (your helpers), and every
top-level package (a folder with __init__.py: the receiver, signed_webhooks/, and any of
yours). Never tools/, tests/, docs/, events/, build/ or dist/, never pyproject.toml or
bytecode. With a requirements.txt (yours, optional): beside them, the packages pip installs
from it for the function's machine and Python (tools/vendor.py), and the build prints them.
Fixed timestamps and permissions, files in sorted order: equal sources give an equal
sha256. Needs no `zip` binary.

Before anything is written, tools/code_check.py reads the code: a file that does not
compile, or an import that nothing shipped provides, is one line naming the file, the line
and the module; the build then exits 1 and leaves no lambda.zip (not even the last one).

The function's Python and machine are one setting, here, for make zip, make create
(tools/deploy.py) and template.yaml (its Globals' Runtime and its Architecture parameter's
default, checked by the tests): RUNTIME, and ARCH from the environment (`make zip
ARCH=x86_64`; default arm64).
"""
from __future__ import annotations

import base64
import hashlib
import os
import pathlib
import sys
import zipfile
from collections.abc import Mapping
from typing import Callable

import code_check
import vendor

ROOT = pathlib.Path(__file__).resolve().parent.parent
NEVER_SHIPPED = frozenset({"tests", "tools", "docs", "events", "build", "dist",
                           "node_modules"})
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can hold

RUNTIME = "python3.14"  # the newest Lambda runtime, and the newest Python the tests run
ARCHITECTURES = {"arm64": "aarch64", "x86_64": "x86_64"}  # Lambda's name: the wheels' machine
DEFAULT_ARCH = "arm64"  # template.yaml's default (Graviton: cheaper per millisecond)
GLIBC_MINOR = 34  # python3.12 and newer run on Amazon Linux 2023, whose glibc is 2.34

# One file of the zip: (its name in the zip, the file it is read from, its permissions).
Entry = tuple[str, pathlib.Path, int]


class BuildError(Exception):
    """Why lambda.zip cannot be built: one line per reason."""


def architecture(environ: Mapping[str, str] = os.environ) -> str:
    """The function's machine: ARCH, or the default."""
    arch = environ.get("ARCH") or DEFAULT_ARCH
    if arch not in ARCHITECTURES:
        raise BuildError("ARCH=%s: Lambda runs %s" % (arch, " or ".join(ARCHITECTURES)))
    return arch


def target_python() -> tuple[int, int]:
    """RUNTIME as a version: (3, 14)."""
    major, minor = RUNTIME.removeprefix("python").split(".")
    return int(major), int(minor)


def shipped_files(root: pathlib.Path = ROOT) -> list[str]:
    """The paths (relative, POSIX) of your code and the receiver that go into the zip,
    sorted."""
    files = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith((".", "_")) or entry.name in NEVER_SHIPPED:
            continue
        if entry.is_file() and entry.suffix == ".py":
            files.append(entry.name)
        elif entry.is_dir() and (entry / "__init__.py").is_file():
            files += [path.relative_to(root).as_posix() for path in sorted(entry.rglob("*"))
                      if path.is_file() and not is_bytecode(path)]
    return files


def is_bytecode(path: pathlib.Path) -> bool:
    return "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo")


def top_level_names(root: pathlib.Path) -> set[str]:
    """The module names your code ships under: lambda_function, signed_webhooks, ..."""
    return {name.split("/")[0].removesuffix(".py") for name in shipped_files(root)}


def lambda_packages(root: pathlib.Path, arch: str,
                    announce: Callable[[str], None] = print) -> pathlib.Path | None:
    """The folder requirements.txt is installed in for the function's machine and Python
    (None without a requirements.txt)."""
    machine = ARCHITECTURES[arch]
    python = "%d.%d" % target_python()
    options = vendor.lambda_pip_options(machine, python, GLIBC_MINOR)
    return install(root, "lambda-%s-%s" % (arch, RUNTIME), options,
                   "%s %s" % (arch, RUNTIME), announce)


def local_packages(root: pathlib.Path,
                   announce: Callable[[str], None] = print) -> pathlib.Path | None:
    """The folder requirements.txt is installed in for this interpreter (make invoke, make
    serve), or None without a requirements.txt."""
    return install(root, vendor.local_folder(), [], "this machine (%s)" % sys.executable,
                   announce)


def install(root: pathlib.Path, folder: str, options: list[str], where: str,
            announce: Callable[[str], None]) -> pathlib.Path | None:
    """vendor.install, its failure a BuildError; says so when pip is about to run."""
    if vendor.requirements_file(root) is None:
        return None
    target = root / "build" / "requirements" / folder
    try:
        installed = vendor.install(root, folder, options, lambda: announce(
            "requirements.txt: pip installs it for %s into %s"
            % (where, target.relative_to(root))))
    except vendor.VendorError as error:
        raise BuildError("requirements.txt: pip could not install it for %s (wheels only):\n%s"
                         % (where, error)) from None
    return installed


def code_problems(root: pathlib.Path, packages: pathlib.Path | None,
                  handler: pathlib.Path | None = None,
                  module: str = "lambda_function") -> list[code_check.Problem]:
    """Every reason Lambda could not load the code: code_check over your code and the
    receiver in `root`, and over `handler` (a handler's file elsewhere, for make serve) with
    the modules beside it that it imports; a name shipped twice. `module` is the handler's
    module, which Lambda's own messages name."""
    folders = [root]
    entries = [(root, root / name) for name in shipped_files(root) if name.endswith(".py")]
    if handler is not None and handler.parent != root:
        folders.append(handler.parent)
        entries.insert(0, (handler.parent, handler))
    installed = vendor.top_level_names(packages) if packages is not None else set()
    finder = code_check.Finder([(folder, top_level_names(folder)) for folder in folders],
                               installed, code_check.stdlib_of(target_python()),
                               vendor.requirements_file(root) is not None)
    found = code_check.problems(entries, finder, target_python(), RUNTIME, module)
    return found + collisions(root, packages, module)


def collisions(root: pathlib.Path, packages: pathlib.Path | None,
               module: str) -> list[code_check.Problem]:
    """A name both your code and requirements.txt ship: one would overwrite the other."""
    if packages is None:
        return []
    shared = top_level_names(root) & vendor.top_level_names(packages)
    return [code_check.Problem(vendor.REQUIREMENTS, None, "installs %s, which your project "
                               "ships too: rename yours" % name, "Runtime.ImportModuleError",
                               "Unable to import module '%s': %s is shipped twice"
                               % (module, name))
            for name in sorted(shared)]


def zip_entries(root: pathlib.Path, packages: pathlib.Path | None) -> list[Entry]:
    """Every file of the zip, sorted by path (folder by folder, as the receiver's and your
    files always were): your code rw-r--r--, installed files keeping their execute bit."""
    entries = [(name, root / name, 0o644) for name in shipped_files(root)]
    if packages is not None:
        for name, path in vendor.shipped(packages):
            executable = path.stat().st_mode & 0o111
            entries.append((name, path, 0o755 if executable else 0o644))
    return sorted(entries, key=lambda entry: entry[0].split("/"))


def build(target: pathlib.Path, entries: list[Entry]) -> bytes:
    """Write the zip of `entries`; its sha256 digest."""
    with zipfile.ZipFile(target, "w") as archive:
        for name, path, mode in entries:
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.external_attr = (0o100000 | mode) << 16  # a regular file, these permissions
            info.create_system = 3  # Unix, so the permissions above are honoured
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes(), compresslevel=9)
    return hashlib.sha256(target.read_bytes()).digest()


def prepare(root: pathlib.Path) -> tuple[list[Entry], pathlib.Path | None, str]:
    """(the zip's entries, the installed requirements or None, ARCH), once the code passed
    every check."""
    arch = architecture()
    packages = lambda_packages(root, arch)
    problems = code_problems(root, packages)
    if problems:
        raise BuildError("\n".join(str(problem) for problem in problems))
    return zip_entries(root, packages), packages, arch


def main() -> None:
    target = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "lambda.zip")
    if target.exists():  # a refused build leaves no zip: never deploy the last one by mistake
        target.unlink()
    try:
        entries, packages, arch = prepare(ROOT)
    except BuildError as error:
        sys.exit(str(error))
    partial = target.with_name(target.name + ".partial")  # lambda.zip appears whole or not
    try:
        digest = build(partial, entries)
        partial.replace(target)
    finally:
        if partial.exists():
            partial.unlink()
    if packages is not None:
        found = [vendor.describe(*found) for found in vendor.distributions(packages)]
        print("requirements.txt: vendored for %s %s: %s"
              % (arch, RUNTIME, ", ".join(found) or "nothing"))
    tops = {name.split("/")[0] for name, _, _ in entries}
    modules = sorted(top for top in tops if not top.endswith(".dist-info"))
    size = target.stat().st_size
    # The size as make bench reports it too: bytes, and kB of 1000 bytes.
    print("%s: %d files (%s), %s bytes (%.3f kB), sha256 %s, CodeSha256 %s"
          % (target, len(entries), ", ".join(modules), format(size, ","), size / 1000,
             digest.hex(), base64.b64encode(digest).decode()))


if __name__ == "__main__":
    main()
