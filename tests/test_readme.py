"""The README's figures and commands that a run can check: every size it gives for lambda.zip
agrees with what `make zip` builds, and every `make` target it names exists."""
import re
import subprocess

from conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
ZIP_FIGURES = [  # "15 KB zipped" (the introduction), "| `lambda.zip` ... | 15.1 KB |" (the table)
    re.compile(r"([\d.]+) KB zipped"),
    re.compile(r"^\| `lambda\.zip`[^|]*\| ([\d.]+) KB \|", re.MULTILINE),
]


def built_zip_kb():
    subprocess.run(["make", "-s", "zip"], cwd=ROOT, check=True, capture_output=True)
    return (ROOT / "lambda.zip").stat().st_size / 1000


def test_every_zip_size_in_the_readme_is_what_make_zip_builds():
    actual = built_zip_kb()
    figures = [match for pattern in ZIP_FIGURES for match in pattern.findall(README)]
    assert len(figures) == len(ZIP_FIGURES), "a zip size figure moved or was dropped"
    for figure in figures:
        decimals = len(figure.partition(".")[2])
        # Right when it is the actual size rounded to the digits it shows (KB of 1000 bytes).
        assert abs(float(figure) - actual) <= 0.5 * 10 ** -decimals, (figure, actual)


def test_every_make_target_the_readme_names_exists():
    listed = subprocess.run(["make", "-s", "help"], cwd=ROOT, check=True, capture_output=True,
                            text=True).stdout
    targets = set(re.findall(r"^  make (\S+)", listed, re.MULTILINE))
    named = set(re.findall(r"`make ([a-z]+)", README))
    assert named and named <= targets, named - targets
