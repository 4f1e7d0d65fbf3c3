"""The README's statements that a run can check: what lambda.zip holds, the receiver's layout
table, and every `make` target it names."""
import re
import subprocess

from conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_layout_table_is_the_packages_own():
    """README's table of the receiver's modules is the one tests/test_layout.py enforces."""
    import signed_webhooks
    table = signed_webhooks.__doc__.split("\n\n    module ", 1)[1].split("\n\n")[0]
    rows = ["module " + table.splitlines()[0]] + [line[4:] for line in table.splitlines()[1:]]
    assert "\n".join(rows) in README


def test_the_zip_holds_what_the_readme_says():
    """README: the zip ships lambda_function.py, your modules and signed_webhooks/."""
    import zipfile
    subprocess.run(["make", "-s", "zip"], cwd=ROOT, check=True, capture_output=True)
    with zipfile.ZipFile(ROOT / "lambda.zip") as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
    assert tops == {"lambda_function.py", "signed_webhooks"}
    assert "`make zip` ships `lambda_function.py`, your own top-level modules and packages, " \
           "and `signed_webhooks/`" in " ".join(README.split())


def test_every_make_target_the_readme_names_exists():
    listed = subprocess.run(["make", "-s", "help"], cwd=ROOT, check=True, capture_output=True,
                            text=True).stdout
    targets = set(re.findall(r"^  make (\S+)", listed, re.MULTILINE))
    named = set(re.findall(r"`make ([a-z]+)", README))
    assert named and named <= targets, named - targets


def test_every_link_between_the_documents_leads_to_a_file_that_exists():
    """README.md, SECURITY.md and docs/*.md link to each other by relative paths."""
    documents = [ROOT / "README.md", ROOT / "SECURITY.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for document in documents:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", document.read_text()):
            if not (document.parent / target).exists():
                broken.append("%s -> %s" % (document.relative_to(ROOT), target))
    assert not broken, broken
    assert len(README.splitlines()) <= 300  # the rest lives in docs/
