"""Build the events Lambda hands a function, one builder per door, from an HTTP request
(method, public URL, headers, body bytes). Used by the tests, `make serve` and the sample
events in events/. Never shipped in lambda.zip."""
import base64
import secrets
import time
import urllib.parse

from signer import sign_pusher, sign_qstash

TEXT_TYPES = ("text/", "application/json", "application/javascript", "application/xml")
DEFAULT_URL = "https://abc123.lambda-url.us-east-1.on.aws/"


def _split(url):
    host, _, rest = url.partition("://")[2].partition("/")
    path, _, query = ("/" + rest).partition("?")
    return host, path, query


def _is_text(headers):
    ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    return ctype.lower().startswith(TEXT_TYPES)


def _encode_body(headers, body, *, binary_for_non_text=True):
    """(body field, isBase64Encoded) as AWS sets them for this content type."""
    if not body:
        return None, False
    if _is_text(headers) or not binary_for_non_text:
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass  # text type, but not text: AWS falls back to base64
    return base64.b64encode(body).decode("ascii"), True


def _pairs(headers):
    """Headers as (name, value) pairs; a dict, or a list of pairs for repeated names."""
    return list(headers.items()) if isinstance(headers, dict) else list(headers)


def function_url(method="POST", url=DEFAULT_URL, headers=(), body=b"", cookies=None,
                 now=None, source_ip="127.0.0.1"):
    """Function URL / HTTP API payload 2.0: lowercased header names, repeats joined with
    commas, cookies split out, base64 for non-text content, no `body` key when empty."""
    host, path, query = _split(url)
    joined: dict[str, str] = {}
    cookie_list = list(cookies or [])
    for name, value in _pairs(headers):
        name = name.lower()
        if name == "cookie":
            cookie_list += [c.strip() for c in value.split(";") if c.strip()]
            continue
        joined[name] = joined[name] + "," + value if name in joined else value
    joined.setdefault("host", host)
    when = time.time() if now is None else now
    event = {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
        "headers": joined,
        "requestContext": {
            "accountId": "anonymous", "apiId": host.split(".")[0], "domainName": host,
            "domainPrefix": host.split(".")[0],
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": source_ip, "userAgent": joined.get("user-agent", "")},
            "requestId": secrets.token_hex(16), "routeKey": "$default", "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(when)),
            "timeEpoch": int(when * 1000)},
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = dict(urllib.parse.parse_qsl(query))
    if cookie_list:
        event["cookies"] = cookie_list
    text, is_b64 = _encode_body(joined, body)
    if text is not None:
        event["body"], event["isBase64Encoded"] = text, is_b64
    return event


def rest(method="POST", url="https://api123.execute-api.us-east-1.amazonaws.com/prod/hook",
         headers=(), body=b"", stage="prod", now=None):
    """API Gateway REST (payload 1.0): headers in the client's case, multiValueHeaders,
    decoded query parameters, `path` without the stage, requestContext.path with it,
    body null when empty (base64 when the API lists the type as binary)."""
    host, full_path, query = _split(url)
    path = full_path[len(stage) + 1:] if full_path.startswith(f"/{stage}/") else full_path
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in _pairs(headers):
        single[name] = value
        multi.setdefault(name, []).append(value)
    single.setdefault("Host", host)
    multi.setdefault("Host", [host])
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    multi_query: dict[str, list[str]] = {}
    for k, v in pairs:
        multi_query.setdefault(k, []).append(v)
    text, is_b64 = _encode_body(single, body)
    when = time.time() if now is None else now
    return {
        "resource": "/{proxy+}", "path": path, "httpMethod": method,
        "headers": single, "multiValueHeaders": multi,
        "queryStringParameters": dict(pairs) or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": {"proxy": path.lstrip("/")}, "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}", "httpMethod": method, "path": full_path,
            "stage": stage, "domainName": host, "apiId": host.split(".")[0],
            "requestId": secrets.token_hex(16), "requestTimeEpoch": int(when * 1000),
            "identity": {"sourceIp": "127.0.0.1"}, "protocol": "HTTP/1.1"},
        "body": text, "isBase64Encoded": is_b64,
    }


def alb(method="POST", url="https://hooks.example.com/hook", headers=(), body=b"",
        multi_value=False):
    """ALB target: lowercased headers (or only multiValueHeaders in multi-value mode), query
    values not URL-decoded, empty body as "", base64 for non-text content."""
    host, path, query = _split(url)
    pairs = [(k.lower(), v) for k, v in _pairs(headers)]
    pairs += [("host", host), ("x-forwarded-proto", "https")]
    qpairs = [tuple(p.partition("=")[::2]) for p in query.split("&") if p]
    text, is_b64 = _encode_body(dict(pairs), body)
    event = {
        "requestContext": {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:"
                                                     "123456789012:targetgroup/hooks/abc"}},
        "httpMethod": method, "path": path, "body": text or "", "isBase64Encoded": is_b64,
    }
    if multi_value:
        event["multiValueHeaders"], event["multiValueQueryStringParameters"] = {}, {}
        for k, v in pairs:
            event["multiValueHeaders"].setdefault(k, []).append(v)
        for k, v in qpairs:
            event["multiValueQueryStringParameters"].setdefault(k, []).append(v)
    else:
        event["headers"], event["queryStringParameters"] = dict(pairs), dict(qpairs)
    return event


def soketi_invoke(payload, headers):
    """soketi's Lambda trigger: Payload = JSON.stringify({payload, headers}), no HTTP envelope."""
    return {"payload": payload, "headers": dict(headers)}


def qstash_headers(signing_key, body, url, now=None, message_id=None, **sign_options):
    """The headers QStash sends with a fresh signature."""
    return {"Upstash-Signature": sign_qstash(signing_key, body, url, now=now, **sign_options),
            "Upstash-Message-Id": message_id or "msg_" + secrets.token_hex(10),
            "Upstash-Retried": "0", "User-Agent": "Upstash-QStash",
            "Content-Type": "application/json"}


def soketi_headers(app_key, secret, body):
    """The headers soketi sends with a webhook (signature over the exact body bytes)."""
    return {"Accept": "application/json", "Content-Type": "application/json",
            "User-Agent": "SoketiWebhooksAxiosClient/1.0 (Process: 1)",
            "X-Pusher-Key": app_key, "X-Pusher-Signature": sign_pusher(secret, body)}
