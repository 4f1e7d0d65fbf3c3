"""Build lambda.zip reproducibly: fixed timestamp and permissions, so equal sources give an
equal sha256. Needs no `zip` binary."""
import base64
import hashlib
import sys
import zipfile


def build(target, sources):
    with zipfile.ZipFile(target, "w") as archive:
        for source in sources:
            info = zipfile.ZipInfo(source, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o100644 << 16  # regular file, rw-r--r--
            info.create_system = 3  # Unix, so the permissions above are honoured
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(source, "rb") as f:
                archive.writestr(info, f.read(), compresslevel=9)
    with open(target, "rb") as f:
        digest = hashlib.sha256(f.read()).digest()
    return digest


if __name__ == "__main__":
    target, *sources = sys.argv[1:]
    digest = build(target, sources)
    size = len(open(target, "rb").read())
    print(f"{target}: {size} bytes, sha256 {digest.hex()}, "
          f"CodeSha256 {base64.b64encode(digest).decode()}")
