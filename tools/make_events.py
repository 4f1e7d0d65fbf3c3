"""Write the sample events in events/, one per door into the Lambda, deterministically.

They are signed with the sample keys below at SAMPLE_TIME, so they are long expired: pasted
into the Lambda console they show the checks at work (see README.md, "Sample events").
`--fresh NAME` prints that event signed now: QStash events with your
QSTASH_CURRENT_SIGNING_KEY, soketi events with your SOKETI_SECRET (and SOKETI_KEY) and a
fresh time_ms. Either is valid for five minutes (QStash's token lifetime, soketi's default
SOKETI_MAX_AGE).
"""
import argparse
import json
import os
import pathlib
import sys

import lambda_events as ev
from signer import sign_pusher

SAMPLE_QSTASH_KEYS = ("sig_SampleCurrentKeyForTheEventsFolder",
                      "sig_SampleNextKeyForTheEventsFolder")
# Not soketi's default `app-secret`: the handler refuses published secrets unless
# ALLOW_PUBLIC_DEV_KEYS=1, and these events must work in a deployed function's console.
SAMPLE_SOKETI = ("sample-app-key", "sample-app-secret-for-the-events-folder")
SAMPLE_TIME = 1790000000  # 2026-09-21T14:13:20Z
BODY = b'{"hello":"world","order":42}'
SOKETI_EVENTS = [
    {"name": "channel_occupied", "channel": "presence-room"},
    {"name": "member_added", "channel": "presence-room", "user_id": 7},
    {"name": "client_event", "channel": "presence-room", "event": "client-typing",
     "data": {"text": "h\u00e9llo \U0001f44b", "ratio": 0.000025}, "socket_id": "123.456",
     "user_id": 7}]
ROOT = pathlib.Path(__file__).resolve().parent.parent


def soketi_payload(now):
    """The webhook payload soketi would send at `now`: time_ms is when it was signed."""
    return {"time_ms": int(now * 1000), "events": SOKETI_EVENTS}


def build(now, qstash_key, soketi):
    key, secret = soketi
    payload = soketi_payload(now)
    sign = {"now": now, "message_id": "msg_sample0001", "claims": {"jti": "jwt_sample0001"}}
    furl = "https://abc123.lambda-url.us-east-1.on.aws/"
    stage_url = "https://api456.execute-api.us-east-1.amazonaws.com/prod/hooks/qstash?tenant=7"
    rest_url = "https://api789.execute-api.us-east-1.amazonaws.com/prod/hooks/qstash"
    alb_url = "https://hooks.example.com/hooks/qstash?tenant=7"
    soketi_body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).replace(
        "2.5e-05", "0.000025").encode()  # the bytes Node's JSON.stringify sends
    events = {
        "function-url": ev.function_url(url=furl, body=BODY, now=now,
                                        headers=ev.qstash_headers(qstash_key, BODY, furl, **sign)),
        "http-api-stage": ev.function_url(url=stage_url, body=BODY, now=now,
                                          headers=ev.qstash_headers(qstash_key, BODY, stage_url,
                                                                    **sign)),
        "rest-api": ev.rest(url=rest_url, body=BODY, now=now,
                            headers=ev.qstash_headers(qstash_key, BODY, rest_url, **sign)),
        "alb": ev.alb(url=alb_url, body=BODY,
                      headers=ev.qstash_headers(qstash_key, BODY, alb_url, **sign)),
        "alb-multi-value": ev.alb(url=alb_url, body=BODY, multi_value=True,
                                  headers=ev.qstash_headers(qstash_key, BODY, alb_url, **sign)),
        "soketi-http": ev.function_url(url=furl, body=soketi_body, now=now,
                                       headers=ev.soketi_headers(key, secret, soketi_body)),
        "soketi-invoke": ev.soketi_invoke(payload, {
            "X-Pusher-Key": key, "X-Pusher-Signature": sign_pusher(secret, soketi_body)}),
    }
    for event in events.values():  # fixed ids, so the files are reproducible
        context = event.get("requestContext", {})
        if "requestId" in context:
            context["requestId"] = "c0ffee00-0000-4000-8000-000000000001"
    return events


def fresh_event(name):
    """Event NAME signed now with the keys in the environment; exits saying what is missing."""
    import time
    names = list(build(SAMPLE_TIME, "unset", SAMPLE_SOKETI))
    if name not in names:
        sys.exit(f"unknown event {name!r}; one of: {', '.join(names)}")
    if name.startswith("soketi"):
        secret = os.environ.get("SOKETI_SECRET")
        if not secret:
            sys.exit("SOKETI_SECRET is not set: nothing to sign the soketi event with")
        soketi = (os.environ.get("SOKETI_KEY") or SAMPLE_SOKETI[0], secret)
        return build(time.time(), "unset", soketi)[name]
    qstash_key = os.environ.get("QSTASH_CURRENT_SIGNING_KEY")
    if not qstash_key:
        sys.exit("QSTASH_CURRENT_SIGNING_KEY is not set: nothing to sign with")
    return build(time.time(), qstash_key, SAMPLE_SOKETI)[name]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fresh", metavar="NAME", help="print NAME signed now with your keys")
    args = parser.parse_args()
    if args.fresh:
        print(json.dumps(fresh_event(args.fresh), indent=2))
        return
    for name, event in build(SAMPLE_TIME, SAMPLE_QSTASH_KEYS[0], SAMPLE_SOKETI).items():
        path = ROOT / "events" / f"{name}.json"
        path.write_text(json.dumps(event, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(path.relative_to(ROOT))


if __name__ == "__main__":
    main()
