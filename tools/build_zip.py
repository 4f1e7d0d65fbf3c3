"""`make zip`: build lambda.zip reproducibly from what the function runs.

What ships: lambda_function.py, every other top-level .py module (your helpers), and every
top-level package (a folder with __init__.py: the receiver, signed_webhooks/, and any of
yours). Never tools/, tests/, docs/, events/ or build/, never bytecode. Fixed timestamps and
permissions, files in sorted order: equal sources give an equal sha256. Needs no `zip`
binary.
"""
import base64
import hashlib
import pathlib
import sys
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
NEVER_SHIPPED = frozenset({"tests", "tools", "docs", "events", "build", "node_modules"})
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can hold


def shipped_files(root=ROOT):
    """The paths (relative, POSIX) that go into the zip, sorted."""
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


def is_bytecode(path):
    return "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo")


def build(target, sources, root=ROOT):
    """Write the zip of `sources` (paths relative to `root`); its sha256 digest."""
    with zipfile.ZipFile(target, "w") as archive:
        for source in sources:
            info = zipfile.ZipInfo(source, date_time=ZIP_TIME)
            info.external_attr = 0o100644 << 16  # regular file, rw-r--r--
            info.create_system = 3  # Unix, so the permissions above are honoured
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, (root / source).read_bytes(), compresslevel=9)
    return hashlib.sha256(pathlib.Path(target).read_bytes()).digest()


def main():
    target = sys.argv[1] if len(sys.argv) > 1 else "lambda.zip"
    sources = shipped_files()
    digest = build(target, sources)
    size = pathlib.Path(target).stat().st_size
    modules = sorted({source.split("/")[0] for source in sources})
    # The size as make bench reports it too: bytes, and kB of 1000 bytes.
    print("%s: %d files (%s), %s bytes (%.3f kB), sha256 %s, CodeSha256 %s"
          % (target, len(sources), ", ".join(modules), format(size, ","), size / 1000,
             digest.hex(), base64.b64encode(digest).decode()))


if __name__ == "__main__":
    main()
