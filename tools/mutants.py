"""`make mutants`: mutation testing of the receiver's security-critical modules.

A mutant is one small wrong change to one module: a comparison flipped at its boundary or
negated, `and` for `or`, a `not` dropped, a raise, return or other statement deleted, a value
returned as None, a constant off by one, True for False, + for -, break for continue (none
that could only be equivalent: a `return None` that only the function's end follows, an
annotation without a value, anything under TYPE_CHECKING). For each mutant, the tests that
cover its module run against a copy of the project holding it (tests named in TESTS below,
stopping at the first failure, with a timeout). The mutant is killed when they fail or time
out; it survives when they pass. A surviving mutant is a line no test notices: either a test
is missing, or no input, configuration or store answer can tell the mutant apart from the
original (an equivalent mutant, listed with its reason in tests/equivalent-mutants.md and
counted apart).

    make mutants                      every module in TESTS, two workers
    make mutants MODULES=qstash,dedup some of them
    python tools/mutants.py --list qstash     the mutants, without running anything
    python tools/mutants.py --try NAME...     only these mutants (after writing a test;
                                              --workers 1 beside a full run)

It prints, per module, the total, killed (by failure or timeout), survived and equivalent
counts, and the share of non-equivalent mutants killed (target: 95% in each module), and
writes the survivors to build/mutants/survivors.txt. Mutants are named
`module.function:operator#n` (the n-th mutant of that operator in that function), which
stays the same when other functions change.
"""
from __future__ import annotations

import argparse
import ast
import concurrent.futures
import functools
import json
import os
import pathlib
import queue
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = "signed_webhooks"
WORK = ROOT / "build" / "mutants"
EQUIVALENTS = ROOT / "tests" / "equivalent-mutants.md"
TARGET = 0.95  # share of non-equivalent mutants killed, per module

# Each module's mutants run the tests that cover it (fast unit tests; the soak and other
# long-running tests are left out with -k), the module's own test file first: most mutants
# fail there, and -x stops at the first failure. A test may be named alone (file::test).
DEDUP_CONFIGURATION = ["tests/test_dedup.py::test_endpoint_variables_are_checked",
                       "tests/test_dedup.py::test_only_the_endpoint_in_use_is_checked"]
TESTS = {
    "qstash": ["tests/test_verify.py", "tests/test_attack.py", "tests/test_trust.py",
               "tests/test_handler.py"],
    "pusher": ["tests/test_soketi.py", "tests/test_configuration.py", "tests/test_trust.py",
               "tests/test_shapes.py"],
    "keys": ["tests/test_configuration.py", "tests/test_trust.py"],
    "config": ["tests/test_configuration.py", "tests/test_trust.py", "tests/test_handler.py",
               "tests/test_metrics.py", *DEDUP_CONFIGURATION,
               "tests/test_layout.py::test_configured_features_are_imported_at_init_before_any_"
               "request", "tests/test_layout.py::test_the_default_path_imports_only_the_core_"
               "modules"],
    "dedup_config": ["tests/test_configuration.py", "tests/test_dedup.py",
                     "tests/test_dedup_aws.py"],
    "events": ["tests/test_shapes.py", "tests/test_trust.py", "tests/test_aws_events.py",
               "tests/test_handler.py", "tests/test_robustness.py"],
    "authenticate": ["tests/test_trust.py", "tests/test_configuration.py",
                     "tests/test_handler.py", "tests/test_shapes.py"],
    "records": ["tests/test_dedup.py"],
    "dedup": ["tests/test_dedup.py", "tests/test_dedup_races.py"],
    "store": ["tests/test_dedup.py"],
    "transport": ["tests/test_transport.py", "tests/test_dedup.py"],
    "dynamodb": ["tests/test_dedup.py", "tests/test_dedup_aws.py"],
    "sigv4": ["tests/test_dedup_aws.py"],
}
# The store's tests run on moto and dynalite alike; one of them shows a protocol's mistakes.
# `make create` (half a minute) drives the AWS CLI, never the receiver's store client.
DESELECT = {name: "not soak and not dynalite"
            for name in ("records", "dedup", "store", "transport")}
for name in ("dynamodb", "sigv4", "dedup_config"):
    DESELECT[name] = "not soak and not dynalite and not make_create"

COMPARE_FLIPS = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
                 ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In,
                 ast.Is: ast.IsNot, ast.IsNot: ast.Is}
DELETABLE = (ast.Expr, ast.Raise, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Return)


class Mutant:
    """One change: the byte span [start, end) of the module's source replaced by `text`."""

    def __init__(self, module: str, function: str, operator: str, line: int, start: int,
                 end: int, original: str, text: str) -> None:
        self.module = module
        self.function = function
        self.operator = operator
        self.line = line
        self.start = start
        self.end = end
        self.original = original
        self.text = text
        self.name = ""  # set once every mutant of the module is known

    def apply(self, source: bytes) -> bytes:
        return source[:self.start] + self.text.encode() + source[self.end:]

    def describe(self) -> str:
        return "%s (line %d): `%s` -> `%s`" % (self.name, self.line, one_line(self.original),
                                               one_line(self.text))


def one_line(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > 70:
        return text[:67] + "..."
    return text


class Finder(ast.NodeVisitor):
    """Every mutant of one module, in source order."""

    def __init__(self, module: str, source: bytes) -> None:
        self.module = module
        self.source = source
        self.line_starts = [0]
        for index, byte in enumerate(source):
            if byte == 0x0A:
                self.line_starts.append(index + 1)
        self.scope: list[str] = []
        self.mutants: list[Mutant] = []
        self.at_tail = False  # whether the statement being visited ends its function

    # --- where each node is -------------------------------------------------------------
    def span(self, node: ast.AST) -> tuple[int, int]:
        start = self.line_starts[node.lineno - 1] + node.col_offset  # type: ignore[attr-defined]
        end = self.line_starts[node.end_lineno - 1] + node.end_col_offset  # type: ignore
        return start, end

    def original(self, node: ast.AST) -> str:
        start, end = self.span(node)
        return self.source[start:end].decode()

    def add(self, node: ast.AST, operator: str, text: str) -> None:
        start, end = self.span(node)
        function = ".".join(self.scope) or "<module>"
        self.mutants.append(Mutant(self.module, function, operator, node.lineno,  # type: ignore
                                   start, end, self.original(node), text))

    # --- scopes and what is never mutated -------------------------------------------------
    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.scope.append(node.name)
        self.visit_body(node.body, tail=True)
        self.scope.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.scope.append(node.name)
        self.visit_body(node.body)
        self.scope.pop()

    def visit_Module(self, node: ast.Module) -> None:
        self.visit_body(node.body)

    def visit_Assign(self, node: ast.Assign) -> None:
        names = [target.id for target in node.targets if isinstance(target, ast.Name)]
        if names == ["TYPE_CHECKING"]:
            return  # names for type checkers only
        self.generic_visit(node)

    def visit_If(self, node: ast.If) -> None:
        if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            return  # names for type checkers only
        tail = self.at_tail
        self.visit(node.test)
        self.visit_body(node.body, tail)
        self.visit_body(node.orelse, tail)

    def visit_Try(self, node: ast.Try) -> None:
        """The try block ends the function when the try statement does and has no else
        block; each handler and the else block do when it does; the finally block never
        counts (a return there also swallows an exception)."""
        tail = self.at_tail
        self.visit_body(node.body, tail and not node.orelse)
        for handler in node.handlers:
            if handler.type is not None:
                self.visit(handler.type)
            self.visit_body(handler.body, tail)
        self.visit_body(node.orelse, tail)
        self.visit_body(node.finalbody)

    def visit_With(self, node: ast.With) -> None:
        tail = self.at_tail
        for item in node.items:
            self.visit(item)
        self.visit_body(node.body, tail)

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        return  # positions inside f-strings are not reliable on every Python

    def visit_arguments(self, node: ast.arguments) -> None:
        for default in node.defaults + [d for d in node.kw_defaults if d is not None]:
            self.visit(default)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)

    def visit_body(self, body: list[ast.stmt], tail: bool = False) -> None:
        """The statements of one block; `tail`: the block ends its function (what follows
        it is the function's return), so a `return None` last in it is not deleted."""
        for index, statement in enumerate(body):
            at_tail = tail and index == len(body) - 1
            is_docstring = index == 0 and isinstance(statement, ast.Expr) and isinstance(
                statement.value, ast.Constant) and isinstance(statement.value.value, str)
            if is_docstring:
                continue
            deletable = bool(self.scope) and isinstance(statement, DELETABLE)
            if at_tail and returns_none(statement):
                deletable = False  # the function returns None without it as well
            if is_declaration(statement):
                deletable = False
            if deletable:
                self.add(statement, "delete", "pass")
            if isinstance(statement, ast.Return) and statement.value is not None and \
                    not (isinstance(statement.value, ast.Constant)
                         and statement.value.value is None):
                self.add(statement, "return_none", "return None")
            if isinstance(statement, ast.Break):
                self.add(statement, "break_continue", "continue")
            if isinstance(statement, ast.Continue):
                self.add(statement, "break_continue", "break")
            self.at_tail = at_tail
            self.visit(statement)
            self.at_tail = False

    def generic_visit(self, node: ast.AST) -> None:
        for field, value in ast.iter_fields(node):
            if field in ("annotation", "returns", "type_comment"):
                continue
            if isinstance(value, list):
                statements = [item for item in value if isinstance(item, ast.stmt)]
                if statements and len(statements) == len(value):
                    self.visit_body(statements)
                    continue
                for item in value:
                    if isinstance(item, ast.AST):
                        self.visit(item)
            elif isinstance(value, ast.AST):
                self.visit(value)

    # --- the operators ----------------------------------------------------------------------
    def visit_Compare(self, node: ast.Compare) -> None:
        for index, operator in enumerate(node.ops):
            flipped = COMPARE_FLIPS.get(type(operator))
            if flipped is not None:
                mutated = ast.Compare(node.left, list(node.ops), node.comparators)
                mutated.ops[index] = flipped()
                self.add(node, "compare", "(%s)" % ast.unparse(mutated))
        self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        other = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        self.add(node, "and_or", "(%s)" % ast.unparse(ast.BoolOp(other, node.values)))
        self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if isinstance(node.op, ast.Not):
            self.add(node, "drop_not", "(%s)" % ast.unparse(node.operand))
        self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        swaps = {ast.Add: ast.Sub, ast.Sub: ast.Add}
        swapped = swaps.get(type(node.op))
        if swapped is not None and not self.is_text(node):
            self.add(node, "arithmetic",
                     "(%s)" % ast.unparse(ast.BinOp(node.left, swapped(), node.right)))
        self.generic_visit(node)

    @classmethod
    def is_text(cls, node: ast.expr) -> bool:
        """`"a" + b` joins text: - would only raise TypeError, which any test notices."""
        if isinstance(node, ast.Constant):
            return isinstance(node.value, (str, bytes))
        if isinstance(node, ast.BinOp):
            return cls.is_text(node.left) or cls.is_text(node.right)
        return False

    def visit_Constant(self, node: ast.Constant) -> None:
        value = node.value
        if isinstance(value, bool):
            self.add(node, "boolean", repr(not value))
        elif isinstance(value, int):
            self.add(node, "constant", repr(value + 1))
            self.add(node, "constant", repr(value - 1))


def returns_none(statement: ast.stmt) -> bool:
    """`return` or `return None`: deleted where nothing follows it but the function's end,
    the function still returns None, so that mutant is not made (it could only be
    equivalent)."""
    if not isinstance(statement, ast.Return):
        return False
    value = statement.value
    return value is None or (isinstance(value, ast.Constant) and value.value is None)


def is_declaration(statement: ast.stmt) -> bool:
    """`name: type` without a value: for type checkers only, nothing to delete at run time."""
    return isinstance(statement, ast.AnnAssign) and statement.value is None


def module_path(module: str) -> pathlib.Path:
    return ROOT / PACKAGE / (module + ".py")


def find_mutants(module: str, source: bytes | None = None) -> list[Mutant]:
    """Every mutant of `module`, each named `module.function:operator#n`."""
    if source is None:
        source = module_path(module).read_bytes()
    finder = Finder(module, source)
    finder.visit(ast.parse(source))
    counts: dict[tuple[str, str], int] = {}
    for mutant in finder.mutants:
        key = (mutant.function, mutant.operator)
        counts[key] = counts.get(key, 0) + 1
        mutant.name = "%s.%s:%s#%d" % (module, mutant.function, mutant.operator, counts[key])
    return finder.mutants


def read_equivalents(path: pathlib.Path = EQUIVALENTS) -> dict[str, str]:
    """{mutant name: the line that gives its reason} from tests/equivalent-mutants.md, where
    each entry is a list item starting with the name in backticks."""
    if not path.exists():
        return {}
    entries = {}
    for line in path.read_text().splitlines():
        found = re.match(r"- `([\w.<>]+:\w+#\d+)`", line)
        if found:
            entries[found.group(1)] = line
    return entries


class Worker:
    """A copy of the project (tests, tools, events, the receiver) where mutants are tried."""

    def __init__(self, index: int, work: pathlib.Path = WORK) -> None:
        self.folder = work / ("worker-%d" % index)
        shutil.rmtree(self.folder, ignore_errors=True)
        shutil.copytree(ROOT, self.folder, ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "node_modules", "lambda.zip", "__pycache__", ".pytest_cache",
            ".hypothesis"))
        (self.folder / "build").mkdir()
        peers = ROOT / "build" / "peers"
        if peers.exists():
            (self.folder / "build" / "peers").symlink_to(peers)

    def run_tests(self, module: str, timeout: float) -> tuple[str, float]:
        """("passed" | "failed" | "timeout", seconds) for the module's tests in this copy."""
        tests = [test for test in TESTS[module]
                 if (self.folder / test.partition("::")[0]).exists()]
        argv = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
        if module in DESELECT:
            argv += ["-k", DESELECT[module]]
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "CI": ""}
        started = time.monotonic()
        try:
            result = subprocess.run(argv, cwd=self.folder, env=env, capture_output=True,
                                    timeout=timeout, start_new_session=True)
        except subprocess.TimeoutExpired:
            return "timeout", time.monotonic() - started
        outcome = "passed" if result.returncode == 0 else "failed"
        return outcome, time.monotonic() - started

    def try_mutant(self, mutant: Mutant, timeout: float) -> str:
        path = self.folder / PACKAGE / (mutant.module + ".py")
        original = path.read_bytes()
        path.write_bytes(mutant.apply(original))
        # Bytecode a test's subprocess cached (`python -I` ignores PYTHONDONTWRITEBYTECODE) is
        # checked by the source's size and mtime in whole seconds: a mutant of the same size
        # written within the same second would run the bytecode of the code before it.
        shutil.rmtree(self.folder / PACKAGE / "__pycache__", ignore_errors=True)
        try:
            outcome, _ = self.run_tests(mutant.module, timeout)
        finally:
            path.write_bytes(original)
        return {"passed": "survived", "failed": "killed", "timeout": "timeout"}[outcome]


class Pool:
    """Workers that try mutants side by side, each in a copy of the project of its own."""

    def __init__(self, workers: int, work: pathlib.Path = WORK) -> None:
        work.mkdir(parents=True, exist_ok=True)
        self.workers = [Worker(index, work) for index in range(workers)]
        self.idle: queue.Queue[Worker] = queue.Queue()
        for worker in self.workers:
            self.idle.put(worker)
        self.executor = concurrent.futures.ThreadPoolExecutor(workers)

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.executor.shutdown()

    def attempt(self, mutant: Mutant, timeout: float) -> str:
        worker = self.idle.get()
        try:
            return worker.try_mutant(mutant, timeout)
        finally:
            self.idle.put(worker)

    def outcomes(self, mutants: list[Mutant], timeout: float) -> Iterator[str]:
        """Each mutant's outcome ("killed", "timeout", "survived"), in their order."""
        return self.executor.map(functools.partial(self.attempt, timeout=timeout), mutants)


def run(modules: list[str], workers: int) -> int:
    equivalents = read_equivalents()
    summary = {}
    survivors: list[str] = []
    with Pool(workers) as pool:
        for module in modules:
            mutants = find_mutants(module)
            outcome, seconds = pool.workers[0].run_tests(module, timeout=1800)
            if outcome != "passed":
                print("%s: its tests fail without any mutant; fix them first" % module)
                return 2
            timeout = max(3 * seconds, seconds + 30)
            print("%s: %d mutants, its tests take %.0f s (timeout %.0f s)"
                  % (module, len(mutants), seconds, timeout), flush=True)
            counts = {"killed": 0, "timeout": 0, "survived": 0, "equivalent": 0}
            for mutant, result in zip(mutants, pool.outcomes(mutants, timeout)):
                if result == "survived" and mutant.name in equivalents:
                    result = "equivalent"
                counts[result] += 1
                if result == "survived":
                    survivors.append(mutant.describe())
                    print("  survived: " + mutant.describe(), flush=True)
            summary[module] = counts
    return report(summary, survivors)


def report(summary: dict[str, dict[str, int]], survivors: list[str]) -> int:
    print("\n%-14s %6s %7s %8s %9s %11s %8s" % ("module", "total", "killed", "timeout",
                                               "survived", "equivalent", "killed%"))
    missed = []
    for module, counts in summary.items():
        total = sum(counts.values())
        relevant = total - counts["equivalent"]
        killed = counts["killed"] + counts["timeout"]
        share = killed / relevant if relevant else 1.0
        if share < TARGET:
            missed.append(module)
        print("%-14s %6d %7d %8d %9d %11d %7.1f%%" % (
            module, total, counts["killed"], counts["timeout"], counts["survived"],
            counts["equivalent"], share * 100))
    totals = {name: sum(counts[name] for counts in summary.values())
              for name in ("killed", "timeout", "survived", "equivalent")}
    print("%-14s %6d %7d %8d %9d %11d" % ("all", sum(totals.values()), totals["killed"],
                                          totals["timeout"], totals["survived"],
                                          totals["equivalent"]))
    (WORK / "survivors.txt").write_text("".join(line + "\n" for line in survivors))
    (WORK / "summary.json").write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d"), "modules": summary}, indent=1))
    print("survivors: %s" % (WORK / "survivors.txt").relative_to(ROOT))
    if missed:
        print("below %d%% killed: %s" % (TARGET * 100, ", ".join(missed)))
        return 1
    print("every module at or above %d%% killed" % (TARGET * 100))
    return 0


def named_mutants(names: list[str]) -> tuple[list[Mutant], list[str]]:
    """(the mutants named, the names that name none)."""
    found = []
    unknown = []
    for name in names:
        module = name.partition(".")[0]
        by_name = {}
        if module in TESTS:
            by_name = {mutant.name: mutant for mutant in find_mutants(module)}
        if name in by_name:
            found.append(by_name[name])
        else:
            unknown.append(name)
    return found, unknown


def try_named(names: list[str], workers: int) -> int:
    """Run the named mutants (in copies of their own, so a full run may go on meanwhile);
    1 when any survives or is unknown."""
    found, unknown = named_mutants(names)
    for name in unknown:
        print("%s: no such mutant" % name, flush=True)
    status = 1 if unknown else 0
    with Pool(workers, ROOT / "build" / "mutants-try") as pool:
        for mutant, result in zip(found, pool.outcomes(found, timeout=1800)):
            if result == "survived":
                status = 1
            print("%-9s %s" % (result, mutant.describe()), flush=True)
    return status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", metavar="MODULE", help="list a module's mutants and stop")
    parser.add_argument("--try", dest="names", metavar="NAME", nargs="+",
                        help="run only these mutants (module.function:operator#n), each "
                        "against its module's tests, and say which survive")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="mutants tried side by side (default: 2, or 1 on one core)")
    arguments = parser.parse_args()
    if arguments.list:
        print("".join(mutant.describe() + "\n" for mutant in find_mutants(arguments.list)))
        return
    if arguments.names:
        sys.exit(try_named(arguments.names, arguments.workers))
    chosen = os.environ.get("MODULES", "")
    modules = [name for name in chosen.split(",") if name] or list(TESTS)
    unknown = [name for name in modules if name not in TESTS]
    if unknown:
        sys.exit("make mutants: unknown module(s) %s; choose from %s"
                 % (", ".join(unknown), ", ".join(TESTS)))
    sys.exit(run(modules, arguments.workers))


if __name__ == "__main__":
    main()
