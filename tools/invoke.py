"""`make invoke EVENT=events/<file>.json`: run lambda_handler on an event file, with the
configuration in your environment, and print the handler's log line and its response.

The code is first read as `make zip` reads it (tools/code_check.py): what Lambda could not
load is the same one line per problem that make zip prints, and nothing runs. With a
requirements.txt, its packages are installed for this interpreter (once, into build/) and
imported from there, as the function imports the zip's.

Exits 1 when the answer is a 4xx or 5xx (as `make send` does), so it works as a check in
scripts; a missing, unreadable or non-JSON event file, code that does not load, or a
handler that raises is reported in a few lines on stderr, never as a traceback of this tool
(exit 2)."""
from __future__ import annotations

import importlib
import json
import pathlib
import sys
import traceback
from types import ModuleType
from typing import Any, Callable, NoReturn

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import build_zip  # noqa: E402  (before your code's folder is on the path: never one of yours)

sys.path.insert(0, str(ROOT))

USAGE = "usage: make invoke EVENT=events/function-url.json"
MODULE = "lambda_function"  # Lambda's handler setting: lambda_function.lambda_handler
FUNCTION = "lambda_handler"


class Context:
    aws_request_id, function_name = "local-invoke", "local"


def fail(text: str) -> NoReturn:
    """Stop with `text` on stderr (one line per problem), exit status 2."""
    sys.stderr.write(text.rstrip("\n") + "\n")
    sys.exit(2)


def read_event(path: str) -> Any:
    """The event in the file at `path`; exits with one line saying why it cannot be read."""
    try:
        text = pathlib.Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        fail("make invoke: cannot read %s: %s" % (path, reason))
    try:
        return json.loads(text)
    except ValueError as error:
        fail("make invoke: %s is not JSON: %s" % (path, error))


def user_frames(error: BaseException) -> str:
    """The traceback of `error`, its frames in your code and the packages installed for it
    only (never this tool's, the import system's or the standard library's)."""
    frames = [frame for frame in traceback.extract_tb(error.__traceback__)
              if is_yours(pathlib.Path(frame.filename))]
    lines = traceback.format_list(frames)
    lines += traceback.format_exception_only(type(error), error)
    return "".join(lines)


def is_yours(path: pathlib.Path) -> bool:
    """A file in the project, outside tools/."""
    return ROOT in path.parents and ROOT / "tools" not in path.parents


def load_handler() -> Callable[[Any, Any], Any]:
    """lambda_function.lambda_handler, after the checks make zip makes; exits with their
    lines, or with the error the module raised while loading."""
    try:
        packages = build_zip.local_packages(ROOT, announce=lambda text: print(
            text, file=sys.stderr, flush=True))
    except build_zip.BuildError as error:
        fail(str(error))
    problems = build_zip.code_problems(ROOT, packages)
    if problems:
        fail("\n".join(str(problem) for problem in problems))
    if packages is not None:
        sys.path.insert(1, str(packages))  # beside your code, as in the zip
    shipped = build_zip.top_level_names(ROOT)
    for name in list(sys.modules):  # a module of yours named like one of this tool's
        if name.split(".")[0] in shipped:
            del sys.modules[name]
    try:
        module: ModuleType = importlib.import_module(MODULE)
    except Exception as error:  # the module's own code raised while it was imported
        fail("make invoke: %s.py does not load:\n%s" % (MODULE, user_frames(error)))
    function = getattr(module, FUNCTION, None)
    if not callable(function):
        fail("make invoke: %s.py has no function %s (Lambda's handler setting is %s.%s)"
             % (MODULE, FUNCTION, MODULE, FUNCTION))
    return function


def is_error_answer(response: Any) -> bool:
    """True for a 4xx or 5xx answer: the handler always answers with a statusCode."""
    status = response.get("statusCode") if isinstance(response, dict) else None
    return isinstance(status, int) and status >= 400


def main() -> None:
    if len(sys.argv) != 2 or not sys.argv[1]:
        sys.exit(USAGE)
    event = read_event(sys.argv[1])
    handler = load_handler()
    try:
        response = handler(event, Context())
    except Exception as error:  # Lambda answers the invocation with the error
        fail("make invoke: %s raised:\n%s" % (FUNCTION, user_frames(error)))
    print(json.dumps(response, indent=2, ensure_ascii=False), flush=True)
    sys.exit(1 if is_error_answer(response) else 0)


if __name__ == "__main__":
    main()
