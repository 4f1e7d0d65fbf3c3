"""Coverage-guided fuzzing of the handler's parsing with atheris (`make stress` runs it).
Each input becomes an event: raw JSON when it parses, else a real event shape whose fields
are filled from the fuzzer's bytes. Every response must be a well-formed 4xx/5xx answer, and
the business logic must never run."""
import contextlib
import io
import json
import os
import pathlib
import sys

import atheris

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
with atheris.instrument_imports():
    import lambda_function

SAMPLES = [json.loads(p.read_text()) for p in sorted((ROOT / "events").glob("*.json"))]
os.environ.update(QSTASH_CURRENT_SIGNING_KEY="sig_SampleCurrentKeyForTheEventsFolder",
                  QSTASH_NEXT_SIGNING_KEY="sig_SampleNextKeyForTheEventsFolder",
                  SOKETI_SECRET="sample-app-secret-for-the-events-folder",
                  SOKETI_KEY="sample-app-key")  # the samples' own (tools/make_events.py)


def never(message):
    raise AssertionError("the business logic ran for a fuzzed event")


lambda_function.handle = never


def event_from(data):
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeBool():
        try:
            return json.loads(fdp.ConsumeUnicodeNoSurrogates(len(data)))
        except (ValueError, RecursionError):
            return None
    event = json.loads(json.dumps(SAMPLES[fdp.ConsumeIntInRange(0, len(SAMPLES) - 1)]))
    headers = event.get("headers") or event.get("multiValueHeaders") or {}
    for _ in range(fdp.ConsumeIntInRange(1, 4)):
        text = fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 200))
        choice = fdp.ConsumeIntInRange(0, 5)
        if choice == 0 and headers:
            name = sorted(headers)[fdp.ConsumeIntInRange(0, len(headers) - 1)]
            headers[name] = [text] if isinstance(headers[name], list) else text
        elif choice == 1:
            event["body"] = text
        elif choice == 2:
            event["isBase64Encoded"] = fdp.ConsumeBool()
        elif choice == 3 and "rawPath" in event:
            event["rawPath"] = text
        elif choice == 4 and "payload" in event:
            event["payload"] = {"time_ms": fdp.ConsumeInt(8), "events": [text]}
        else:
            headers[text] = fdp.ConsumeUnicode(50)
    return event


def test_one_input(data):
    event = event_from(data)
    with contextlib.redirect_stdout(io.StringIO()) as log:
        response = lambda_function.lambda_handler(event, None)
    status = response["statusCode"]
    assert isinstance(status, int) and 400 <= status < 600, response
    assert isinstance(response["body"], str) and json.loads(response["body"])["error"]
    line = json.loads(log.getvalue().strip().splitlines()[-1])
    assert line["status"] == status and line["reason"]


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
