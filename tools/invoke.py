"""`make invoke EVENT=events/<file>.json`: run lambda_handler on an event file, with the
configuration in your environment, and print the handler's log line and its response.

Exits 1 when the answer is a 4xx or 5xx (as `make send` does), so it works as a check in
scripts; a missing, unreadable or non-JSON event file is a one-line error (exit 2)."""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import lambda_function  # noqa: E402

USAGE = "usage: make invoke EVENT=events/function-url.json"


class Context:
    aws_request_id, function_name = "local-invoke", "local"


def read_event(path: str):
    """The event in the file at `path`; exits with one line saying why it cannot be read."""
    try:
        text = pathlib.Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        sys.stderr.write("make invoke: cannot read %s: %s\n" % (path, reason))
        sys.exit(2)
    try:
        return json.loads(text)
    except ValueError as error:
        sys.stderr.write("make invoke: %s is not JSON: %s\n" % (path, error))
        sys.exit(2)


def is_error_answer(response) -> bool:
    """True for a 4xx or 5xx answer: the handler always answers with a statusCode."""
    status = response.get("statusCode") if isinstance(response, dict) else None
    return isinstance(status, int) and status >= 400


def main():
    if len(sys.argv) != 2 or not sys.argv[1]:
        sys.exit(USAGE)
    event = read_event(sys.argv[1])
    response = lambda_function.lambda_handler(event, Context())
    print(json.dumps(response, indent=2, ensure_ascii=False), flush=True)
    sys.exit(1 if is_error_answer(response) else 0)


if __name__ == "__main__":
    main()
