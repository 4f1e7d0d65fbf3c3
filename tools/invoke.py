"""`make invoke EVENT=events/<file>.json`: run lambda_handler on an event file, with the
configuration in your environment, and print the handler's log line and its response."""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import lambda_function  # noqa: E402


class Context:
    aws_request_id, function_name = "local-invoke", "local"


def main():
    if len(sys.argv) != 2 or not sys.argv[1]:
        sys.exit("usage: make invoke EVENT=events/function-url.json")
    event = json.loads(pathlib.Path(sys.argv[1]).read_text(encoding="utf-8"))
    response = lambda_function.lambda_handler(event, Context())
    print(json.dumps(response, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
