"""What Lambda could not load, found before it ships or runs: `make zip` refuses it (and
writes no lambda.zip), `make invoke` and `make serve` report it instead of running the code.
Each problem is one line naming the file, the line and the module, the same line in all
three.

Two checks, over lambda_function.py, your modules and packages, and the receiver:
- each file compiles, its grammar read as the function's Python (python3.14) when this
  interpreter is that new, else as this interpreter's (an older one cannot parse newer
  syntax: the line then says so);
- each import names a module the function will find: one of the function's Python's
  standard library, a module or package in the zip, or one installed from requirements.txt.
  An import inside `try:` with an `except ImportError` (ModuleNotFoundError, Exception, a
  bare except) is optional and never refused; so is one under `if TYPE_CHECKING:` or
  `if __name__ == "__main__":`, which Lambda never runs.
Packages installed from requirements.txt are not read: pip chose their wheels for the
function's Python, and their imports are their authors' to keep.
"""
from __future__ import annotations

import ast
import os
import pathlib
import pkgutil
import sys
import sysconfig
import warnings
from collections.abc import Iterator

# Top-level standard-library modules that came or went since Python 3.9 ("What's New in
# Python 3.x": New Modules, Removed). They matter when this interpreter is older than the
# function's Python: `import tomllib` runs there, `import cgi` does not.
ADDED = {(3, 11): {"tomllib"}, (3, 14): {"annotationlib", "compression"}}
REMOVED = {
    (3, 10): {"formatter", "parser", "symbol"},
    (3, 11): {"binhex"},
    (3, 12): {"asynchat", "asyncore", "distutils", "imp", "smtpd"},
    (3, 13): {"aifc", "audioop", "cgi", "cgitb", "chunk", "crypt", "imghdr", "lib2to3",
              "mailcap", "msilib", "nis", "nntplib", "ossaudiodev", "pipes", "sndhdr", "spwd",
              "sunau", "telnetlib", "uu", "xdrlib"},
}
CATCHES_IMPORT_ERROR = frozenset({"ImportError", "ModuleNotFoundError", "Exception",
                                  "BaseException"})


class Problem:
    """One reason the code cannot load: `file:line: text`, and what Lambda's runtime would
    log for it (its error type and message)."""

    def __init__(self, path: str, line: int | None, text: str, error_type: str,
                 lambda_says: str):
        self.path = path
        self.line = line
        self.text = text
        self.error_type = error_type
        self.lambda_says = lambda_says

    def __str__(self) -> str:
        if self.line is None:
            return "%s: %s" % (self.path, self.text)
        return "%s:%d: %s" % (self.path, self.line, self.text)


def this_interpreters_stdlib() -> set[str]:
    """The top-level standard-library module names of the interpreter running this."""
    names = getattr(sys, "stdlib_module_names", None)  # Python 3.10 and newer
    if names is not None:
        return set(names)
    paths = sysconfig.get_paths()
    folders = [paths["stdlib"], paths["platstdlib"],
               os.path.join(paths["platstdlib"], "lib-dynload")]
    found = {module.name for module in pkgutil.iter_modules(folders)}
    return found | set(sys.builtin_module_names)


def stdlib_of(target: tuple[int, int]) -> set[str]:
    """The standard library of Python `target`, as seen from this interpreter."""
    names = this_interpreters_stdlib()
    version = sys.version_info[:2]
    for minor in range(version[1] + 1, target[1] + 1):
        names |= ADDED.get((3, minor), set())
        names -= REMOVED.get((3, minor), set())
    return names


class Finder:
    """Where the function finds a module, in the order Lambda looks: the folders of your
    code (each with the top-level names that ship from it), the installed requirements, the
    standard library."""

    def __init__(self, folders: list[tuple[pathlib.Path, set[str]]], installed: set[str],
                 stdlib: set[str], requirements: bool):
        self.folders = folders
        self.installed = installed
        self.stdlib = stdlib
        self.requirements = requirements

    def find(self, dotted: str, runtime: str) -> tuple[list[pathlib.Path], str | None]:
        """(the files of your code importing `dotted` runs, why it cannot be imported or
        None)."""
        top = dotted.split(".")[0]
        for folder, names in self.folders:
            if top in names:
                return find_in(folder, dotted)
        if top in self.installed or top in self.stdlib:
            return [], None
        for folder, _ in self.folders:
            if (folder / top / "__init__.py").is_file():
                return [], "make zip never ships %s/ (tools/build_zip.py says what ships)" % top
            if (folder / top).is_dir():
                return [], ("%s/ has no __init__.py, so make zip does not ship it (a folder "
                            "ships as a package)" % top)
        for version, gone in sorted(REMOVED.items()):
            if top in gone:
                return [], "it left the standard library in Python %d.%d" % version
        where = "requirements.txt installs no such module" if self.requirements else (
            "no requirements.txt installs it")
        return [], "not in %s's standard library, not in the zip, and %s" % (runtime, where)


def find_in(folder: pathlib.Path, dotted: str) -> tuple[list[pathlib.Path], str | None]:
    """The files `import dotted` runs in `folder` (each package's __init__.py, then the
    module), or why that import fails there."""
    parts = dotted.split(".")
    files = []
    current = folder
    for index, part in enumerate(parts):
        package = current / part / "__init__.py"
        module = current / (part + ".py")
        if package.is_file():
            files.append(package)
            current = current / part
        elif module.is_file() and index == len(parts) - 1:
            files.append(module)
        elif module.is_file():
            return files, "%s is a module, not a package" % ".".join(parts[:index + 1])
        else:
            return files, "%s has no module %s" % (".".join(parts[:index]), part)
    return files, None


def catches_import_error(handler: ast.ExceptHandler) -> bool:
    """An except clause that an ImportError stops in."""
    if handler.type is None:
        return True
    kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    for kind in kinds:
        if isinstance(kind, ast.Name) and kind.id in CATCHES_IMPORT_ERROR:
            return True
        if isinstance(kind, ast.Attribute) and kind.attr in CATCHES_IMPORT_ERROR:
            return True
    return False


def never_runs_on_lambda(test: ast.expr) -> bool:
    """`TYPE_CHECKING` (typing's, false when the code runs) and `__name__ == "__main__"` (a
    handler's module is imported by name, never run as a script)."""
    if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
        return True
    if isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING":
        return True
    if not isinstance(test, ast.Compare) or len(test.comparators) != 1:
        return False
    left = test.left
    right = test.comparators[0]
    return (isinstance(test.ops[0], ast.Eq) and isinstance(left, ast.Name)
            and left.id == "__name__" and isinstance(right, ast.Constant)
            and right.value == "__main__")


class Imports(ast.NodeVisitor):
    """Every import a module can run into, except optional ones: `found` holds (line,
    module, level, names imported from it)."""

    def __init__(self) -> None:
        self.found: list[tuple[int, str, int, list[str]]] = []
        self.optional = 0  # how many `try: ... except ImportError` bodies enclose us

    def visit_Import(self, node: ast.Import) -> None:
        if not self.optional:
            for alias in node.names:
                self.found.append((node.lineno, alias.name, 0, []))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if not self.optional:
            names = [alias.name for alias in node.names]
            self.found.append((node.lineno, node.module or "", node.level, names))

    def visit_Try(self, node: ast.Try) -> None:
        guarded = any(catches_import_error(handler) for handler in node.handlers)
        self.optional += guarded
        for statement in node.body:
            self.visit(statement)
        self.optional -= guarded
        for handler in node.handlers:
            self.visit(handler)
        for statement in node.orelse + node.finalbody:
            self.visit(statement)

    visit_TryStar = visit_Try  # except* (Python 3.11): the same rule

    def visit_If(self, node: ast.If) -> None:
        if never_runs_on_lambda(node.test):
            for statement in node.orelse:
                self.visit(statement)
        else:
            self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.AST) -> None:
        """A function's body runs when it is called, outside any try around its def."""
        enclosing = self.optional
        self.optional = 0
        self.generic_visit(node)
        self.optional = enclosing

    visit_AsyncFunctionDef = visit_Lambda = visit_FunctionDef


def absolute_name(relative: pathlib.PurePath, module: str, level: int) -> tuple[str, str | None]:
    """The module a `from .module import ...` in this file names, or why it names none."""
    package = list(relative.parts[:-1])  # pkg/sub/mod.py imports from [pkg, sub]
    if not package:
        return "", "relative import in a module outside any package"
    if level - 1 >= len(package):
        return "", "relative import beyond the top-level package"
    base = package[:len(package) - (level - 1)]
    return ".".join(base + ([module] if module else [])), None


def parse(path: pathlib.Path, shown: str, target: tuple[int, int], runtime: str,
          module: str) -> ast.Module | Problem:
    """The file's syntax tree, or why it does not compile (shown as `shown`)."""
    grammar = min(target, sys.version_info[:2])
    try:
        with warnings.catch_warnings():  # an invalid escape is a warning, not a refusal
            warnings.simplefilter("ignore")
            tree = ast.parse(path.read_bytes(), str(path), feature_version=grammar)
            compile(tree, str(path), "exec", dont_inherit=True)  # what parsing leaves: scopes
    except (SyntaxError, ValueError) as error:
        line = getattr(error, "lineno", None) or 1
        reason = getattr(error, "msg", None) or str(error)
        text = "%s: %s" % (type(error).__name__, reason)
        if grammar < target:
            this_python = "%d.%d" % grammar
            text += " (read as Python %s; PYTHON=%s reads it as the function does)" % (
                this_python, runtime)
        return Problem(shown, line, text, "Runtime.UserCodeSyntaxError",
                       "Syntax error in module '%s': %s" % (module, error))
    return tree


def problems(entries: list[tuple[pathlib.Path, pathlib.Path]], finder: Finder,
             target: tuple[int, int], runtime: str, module: str) -> list[Problem]:
    """Every problem in the files `entries` names ((their folder, the file)) and the files
    of yours their imports reach. `module` is the handler's module, named by Lambda in its
    own message."""
    found: list[Problem] = []
    queue = list(entries)
    seen = set()
    while queue:
        folder, path = queue.pop(0)
        if path in seen:
            continue
        seen.add(path)
        relative = path.relative_to(folder)
        shown = relative.as_posix()
        parsed = parse(path, shown, target, runtime, module)
        if isinstance(parsed, Problem):
            found.append(parsed)
            continue
        for line, name, files, reason in resolved_imports(parsed, relative, folder, finder,
                                                         runtime):
            queue += [(folder_of(file, finder, folder), file) for file in files]
            if reason is None:
                continue
            python_says = "No module named '%s'" % name
            if name.startswith("."):
                python_says = reason
            found.append(Problem(shown, line, "cannot import %s: %s" % (name, reason),
                                 "Runtime.ImportModuleError",
                                 "Unable to import module '%s': %s" % (module, python_says)))
    return sorted(found, key=lambda problem: (problem.path, problem.line or 0))


def folder_of(file: pathlib.Path, finder: Finder, default: pathlib.Path) -> pathlib.Path:
    """The folder of your code a file was found in."""
    for folder, _ in finder.folders:
        if folder in file.parents:
            return folder
    return default


def resolved_imports(tree: ast.Module, relative: pathlib.PurePath, folder: pathlib.Path,
                     finder: Finder, runtime: str
                     ) -> Iterator[tuple[int, str, list[pathlib.Path], str | None]]:
    """(line, module as written, files of yours it runs, why it fails or None) per import."""
    collector = Imports()
    collector.visit(tree)
    for line, module, level, names in collector.found:
        written = "." * level + module
        if level:
            dotted, reason = absolute_name(relative, module, level)
            if reason is not None:
                yield line, written, [], reason
                continue
            files, reason = find_in(folder, dotted)
        else:
            dotted = module
            files, reason = finder.find(dotted, runtime)
        if reason is None and files and files[-1].name == "__init__.py":
            files += submodules(files[-1].parent, names)
        yield line, written, files, reason


def submodules(package: pathlib.Path, names: list[str]) -> list[pathlib.Path]:
    """`from package import a, b`: the files of those names that are modules of it."""
    files = []
    for name in names:
        for candidate in (package / (name + ".py"), package / name / "__init__.py"):
            if candidate.is_file():
                files.append(candidate)
    return files
