"""`make send URL=... BODY=...`: sign BODY for URL with $QSTASH_CURRENT_SIGNING_KEY exactly as
QStash does (fresh token, padded body hash, QStash's claim set and headers) and POST it.
Prints the status and body; exits non-zero unless the answer is 2xx.

SIGN_URL=... signs for that URL instead, while still posting to URL: what a request sent to
the wrong address, or a token replayed against another endpoint, looks like (a 401 whose
logged reason names both URLs)."""
import os
import sys
import urllib.error
import urllib.request

from lambda_events import qstash_headers


def main():
    url, body = os.environ.get("URL") or "", (os.environ.get("BODY") or "").encode()
    key = os.environ.get("QSTASH_CURRENT_SIGNING_KEY")
    if not url:
        sys.exit("usage: make send URL=https://<function-url>/ BODY='{\"hello\":\"world\"}' "
                 "[SIGN_URL=<the URL to sign for, when not URL>]")
    if not key:
        sys.exit("QSTASH_CURRENT_SIGNING_KEY is not set: nothing to sign with. For make serve's "
                 "dev keys: export QSTASH_CURRENT_SIGNING_KEY=sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r")
    sign_url = os.environ.get("SIGN_URL") or url  # the URL the token's `sub` claim names
    headers = qstash_headers(key, body, sign_url)
    headers["Content-Type"] = os.environ.get("CONTENT_TYPE") or "application/json"
    request = urllib.request.Request(url, data=body, headers=headers,
                                     method=os.environ.get("METHOD") or "POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, answer = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, answer = error.code, error.read()
    except urllib.error.URLError as error:
        sys.exit("could not reach %s: %s" % (url, error.reason))
    print(status)
    print(answer.decode("utf-8", "replace"))
    sys.exit(0 if 200 <= status < 300 else 1)


if __name__ == "__main__":
    main()
