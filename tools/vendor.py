"""requirements.txt: the packages your `handle` needs, installed by pip where the code runs.

The file is yours and optional (the receiver needs none). Two installs are made from it,
each in its own folder under build/requirements/, reused until requirements.txt changes:
- for Lambda (`make zip`): wheels only, for the function's machine and Python (pip's
  documented cross-platform options: --platform, --implementation, --python-version,
  --only-binary=:all:), never the build machine's; what they install ships in the zip;
- for this machine (`make invoke`, `make serve`): the same requirements, wheels only, for
  the interpreter running them, so a local run imports what the zip will hold.

Only what is the same on every build ships: the wheels' files, minus pip's bookkeeping that
depends on where and when it ran (RECORD, INSTALLER, REQUESTED, direct_url.json), minus
the console scripts in bin/ (their first line names this machine's interpreter), never
bytecode (--no-compile).
"""
from __future__ import annotations

import email.message
import email.parser
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from typing import Callable

REQUIREMENTS = "requirements.txt"
# Written by pip, different on each machine or run; nothing at run time reads them.
PIP_BOOKKEEPING = frozenset({"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"})
# Console scripts (and .data/scripts): for a shell, never imported; their #! is this machine's.
SCRIPTS = "bin"
EXTENSION_SUFFIXES = (".so", ".pyd")


class VendorError(Exception):
    """pip could not install requirements.txt; the message is pip's own ERROR lines."""


def requirements_file(root: pathlib.Path) -> pathlib.Path | None:
    path = root / REQUIREMENTS
    return path if path.is_file() else None


def lambda_pip_options(machine: str, python: str, glibc_minor: int) -> list[str]:
    """pip's options for Lambda's platform: CPython `python` (e.g. "3.14") on Linux `machine`
    (aarch64 or x86_64) with glibc 2.`glibc_minor`: every manylinux tag that platform runs,
    newest first, down to manylinux2014 (glibc 2.17)."""
    options = ["--implementation", "cp", "--python-version", python]
    for minor in range(glibc_minor, 16, -1):
        options += ["--platform", "manylinux_2_%d_%s" % (minor, machine)]
    options += ["--platform", "manylinux2014_" + machine]
    return options


def install(root: pathlib.Path, folder: str, pip_options: list[str],
            before_pip: Callable[[], None]) -> pathlib.Path | None:
    """Install root's requirements.txt into build/requirements/`folder` with `pip_options`
    (calling `before_pip` first); the folder, or None without a requirements.txt. pip runs
    again only when requirements.txt or the options changed since the last install there."""
    requirements = requirements_file(root)
    if requirements is None:
        return None
    target = root / "build" / "requirements" / folder
    stamp = target.with_name(folder + ".sha256")  # beside the folder: never shipped
    digest = hashlib.sha256(requirements.read_bytes())
    digest.update("\0".join(pip_options).encode())
    key = digest.hexdigest()
    if target.is_dir() and stamp.is_file() and stamp.read_text() == key:
        return target
    if stamp.exists():
        stamp.unlink()
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    before_pip()
    run_pip(requirements, target, pip_options)
    stamp.write_text(key)
    return target


def run_pip(requirements: pathlib.Path, target: pathlib.Path, pip_options: list[str]) -> None:
    """pip install -r requirements --target target: wheels only, no bytecode."""
    argv = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
            "--no-compile", "--only-binary=:all:", "--target", str(target),
            "-r", str(requirements), *pip_options]
    environment = {**os.environ, "PIP_ROOT_USER_ACTION": "ignore"}
    result = subprocess.run(argv, capture_output=True, text=True, env=environment,
                            cwd=requirements.parent)
    if result.returncode == 0:
        return
    shutil.rmtree(target, ignore_errors=True)
    output = result.stderr + result.stdout
    errors = [line for line in output.splitlines() if line.startswith("ERROR")]
    if "No module named pip" in output:
        errors = ["%s has no pip: install it (or run with PYTHON= an interpreter that has "
                  "it)" % sys.executable]
    raise VendorError("\n".join(errors or output.strip().splitlines()[-3:]))


def local_folder() -> str:
    """One folder per interpreter kind and platform (cpython-311-linux-x86_64)."""
    return "local-%s-%s" % (sys.implementation.cache_tag, sysconfig.get_platform())


def shipped(folder: pathlib.Path) -> list[tuple[str, pathlib.Path]]:
    """(path relative to `folder`, POSIX; the file) for every installed file that ships."""
    files = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if not path.is_file() or relative.parts[0] == SCRIPTS:
            continue
        if "__pycache__" in relative.parts or path.suffix in (".pyc", ".pyo"):
            continue
        if relative.parts[0].endswith(".dist-info") and path.name in PIP_BOOKKEEPING:
            continue
        files.append((relative.as_posix(), path))
    return files


def top_level_names(folder: pathlib.Path) -> set[str]:
    """The names `import` finds in `folder`: packages (with or without __init__.py), modules,
    extension modules (markupsafe, six, _cffi_backend ...)."""
    names = set()
    for entry in folder.iterdir():
        if entry.is_dir():
            if entry.name != SCRIPTS and not entry.name.endswith((".dist-info", ".data")):
                names.add(entry.name)
        elif entry.suffix == ".py" or entry.suffix in EXTENSION_SUFFIXES:
            names.add(entry.name.split(".")[0])
    names.discard("__pycache__")
    return names


def distributions(folder: pathlib.Path) -> list[tuple[str, str, list[str]]]:
    """(name, version, wheel tags) of each package installed in `folder`, by name."""
    found = []
    for info in sorted(folder.glob("*.dist-info")):
        metadata = read_headers((info / "METADATA").read_text(encoding="utf-8"))
        wheel = read_headers((info / "WHEEL").read_text(encoding="utf-8"))
        found.append((metadata["Name"], metadata["Version"], wheel.get_all("Tag") or []))
    return sorted(found, key=lambda found_one: found_one[0].lower())


def distributions_in_zip(archive: zipfile.ZipFile) -> list[tuple[str, str, list[str]]]:
    """The same, read from a zip's top-level *.dist-info folders."""
    found = []
    for name in archive.namelist():
        parts = name.split("/")
        if len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] == "WHEEL":
            metadata_text = archive.read(parts[0] + "/METADATA").decode("utf-8")
            metadata = read_headers(metadata_text)
            wheel = read_headers(archive.read(name).decode("utf-8"))
            found.append((metadata["Name"], metadata["Version"], wheel.get_all("Tag") or []))
    return sorted(found, key=lambda found_one: found_one[0].lower())


def read_headers(text: str) -> email.message.Message:
    """METADATA and WHEEL are RFC 822 headers (the body, a description, is not needed)."""
    return email.parser.HeaderParser().parsestr(text)


def is_pure(tags: list[str]) -> bool:
    """A wheel that runs anywhere: its platform tag is `any`."""
    return any(tag.rsplit("-", 1)[-1] == "any" for tag in tags)


def runs_on(tags: list[str], machine: str, python: str) -> bool:
    """Whether a wheel with these tags runs on CPython `python` ("3.14") on Linux `machine`:
    a pure wheel always; else one tag for that machine whose ABI is that Python's
    (cp314), the stable ABI (abi3) or none."""
    if is_pure(tags):
        return True
    abi_of_python = "cp" + python.replace(".", "")
    for tag in tags:
        parts = tag.split("-")
        if len(parts) != 3:
            continue
        abi = parts[1]
        platform = parts[2]
        if platform.endswith("_" + machine) and abi in (abi_of_python, "abi3", "none"):
            return True
    return False


def describe(name: str, version: str, tags: list[str]) -> str:
    """`markupsafe 3.0.3 (cp314, aarch64)` or `six 1.17.0 (pure Python)`."""
    if is_pure(tags):
        return "%s %s (pure Python)" % (name, version)
    parts = tags[0].split("-") if tags else ["?", "?", "?"]
    machine = parts[-1]
    for known in ("aarch64", "x86_64"):
        if machine.endswith("_" + known):
            machine = known
    return "%s %s (%s, %s)" % (name, version, parts[1], machine)
