"""`make bench`'s own contract (tools/bench.py), without timing anything.

- The handler the cold-start targets compare ours with imports exactly the standard-library
  modules our import loads, as a fresh interpreter measures them, in each configuration;
  anything else the receiver loaded would be refused.
- The exit status, the closing summary and docs/performance.md follow what the sections
  reported: 0 with targets missed (1 under BENCH_STRICT=1), 2 when a section raised or
  reported nothing, 0 when only an optional system tool is missing; and the temporary files
  of a run stay in the project.
"""
import os
import subprocess
import sys
import textwrap

import bench
import build_zip
import pytest
from conftest import ROOT


@pytest.fixture
def receiver(tmp_path):
    """What lambda.zip holds, copied into a folder as Lambda's /var/task holds it."""
    task = tmp_path / "task"
    for name in build_zip.shipped_files():
        target = task / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((ROOT / name).read_bytes())
    return task


def test_the_stdlib_only_handlers_load_what_ours_loads(receiver, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "BENCH", tmp_path / "bench")
    measured = {}
    for name, configuration in (("default", bench.QSTASH_ONLY),
                                ("features", bench.with_features())):
        loaded = bench.loaded_modules(receiver, configuration)
        measured[name] = loaded["stdlib"]
        ours = {path.relative_to(receiver).as_posix() for path in loaded["ours"]}
        assert "lambda_function.py" in ours and "signed_webhooks/pipeline.py" in ours
        # sys.stdlib_module_names (Python 3.10+) is the interpreter's own list, independent
        # of the bench's rule (the file lies in the standard library's folders).
        assert all(module.split(".")[0] in sys.stdlib_module_names for module in loaded["stdlib"])
        task = bench.stdlib_only_task("stdlib-" + name, loaded["stdlib"], configuration)
        again = bench.loaded_modules(task, configuration)
        assert set(again["stdlib"]) == set(loaded["stdlib"])
        assert [path.name for path in again["ours"]] == ["lambda_function.py"]
    # Deduplication and metrics load modules only when configured, and so does the bench's
    # stdlib-only handler for that configuration.
    assert set(measured["default"]) < set(measured["features"])


def test_a_handler_that_loads_more_than_the_modules_it_names_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "BENCH", tmp_path / "bench")
    with pytest.raises(RuntimeError, match="loads"):
        bench.stdlib_only_task("short", ["json"], bench.QSTASH_ONLY)  # json loads re, too...
    bench.stdlib_only_task("json", bench.loaded_modules(
        bench.handler_task("probe", "import json\n"), bench.QSTASH_ONLY)["stdlib"],
        bench.QSTASH_ONLY)  # ...which the measured list holds


def test_a_module_from_outside_the_standard_library_is_refused(tmp_path):
    task = tmp_path / "task"
    task.mkdir()
    (task / "lambda_function.py").write_text("import jwt\n")  # PyJWT, in the test venv
    with pytest.raises(RuntimeError, match="neither its own nor the standard library"):
        bench.loaded_modules(task, bench.QSTASH_ONLY)


# Stand-in sections, run by the real main(): each reports as a real section does.
DRIVER = textwrap.dedent("""\
    import pathlib
    import sys
    import tempfile

    sys.path.insert(0, {tools!r})
    import bench

    folder = pathlib.Path(sys.argv[1])
    bench.BENCH = folder / "bench"
    bench.PAGE = folder / "performance.md"


    def met():
        bench.report("fast enough", 1.0, "ms", 2, 0.5)


    def missed():
        print("  a note on the miss")
        bench.report("too slow", 3.0, "ms", 2, 2.5)


    def broken():
        bench.report("before the error", 1.0, "ms")
        raise ValueError("boom")


    def optional():
        bench.not_measured("load", "wrk is not installed", optional=True)


    def silent():
        print("  skipped: nothing to measure with")


    def temporary():
        with tempfile.NamedTemporaryFile(delete=False) as file:
            bench.report("a temporary file's size", len(file.name), "B")
        print("  temporary file " + file.name)


    bench.SECTIONS = tuple(bench.Section(function.__name__, function, function.__name__,
                                         "What " + function.__name__ + " measures.")
                           for function in (met, missed, broken, optional, silent, temporary))
    sys.exit(bench.main(sys.argv[2:]))
    """)


def run_bench(tmp_path, *sections, strict=False):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(tools=str(ROOT / "tools")))
    env = {**os.environ, "BENCH_STRICT": "1" if strict else ""}
    return subprocess.run([sys.executable, str(driver), str(tmp_path), *sections],
                          capture_output=True, text=True, env=env, cwd=ROOT)


def test_missed_targets_fail_the_run_only_under_bench_strict(tmp_path):
    run = run_bench(tmp_path, "met", "missed", "optional")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 of 2 targets met" in run.stdout
    summary = run.stdout.split("targets met")[1]
    assert "met    met" in summary and "MISSED missed" in summary and "too slow" in summary
    assert "not measured (optional, optional): load: wrk is not installed" in summary
    assert run_bench(tmp_path, "met", "missed", strict=True).returncode == 1
    assert run_bench(tmp_path, "met", "optional", strict=True).returncode == 0
    assert not (tmp_path / "performance.md").exists()  # a partial run writes no page


def test_a_section_that_raises_or_reports_nothing_is_an_error(tmp_path):
    run = run_bench(tmp_path, "broken", "met")
    assert run.returncode == 2
    assert "ValueError: boom" in run.stdout and "fast enough" in run.stdout  # the next ran
    assert run_bench(tmp_path, "silent").returncode == 2


def test_a_full_run_writes_every_figure_and_verdict_to_the_page(tmp_path):
    run = run_bench(tmp_path)
    assert run.returncode == 2, run.stdout + run.stderr
    page = (tmp_path / "performance.md").read_text()
    for text in ("fast enough", "too slow", "**missed**", "before the error",
                 "ValueError: boom", "wrk is not installed (an optional system tool)",
                 "a note on the miss", "skipped: nothing to measure with",
                 "What silent measures.", "1 of 2 targets met", str(os.cpu_count()) + " cores",
                 "Python %d.%d" % sys.version_info[:2]):
        assert text in page, text
    # The run's temporary files stay in the bench's folder, inside the project.
    temporary = run.stdout.split("temporary file ")[1].split()[0]
    assert temporary.startswith(str(tmp_path / "bench" / "tmp"))
