"""Every event shape Lambda delivers, normalized once: event -> Request; Answer -> response.

The shapes (the log line's `shape`): "http" (Function URL and API Gateway HTTP API,
payload 2.0), "rest" (API Gateway REST, payload 1.0), "alb" and "alb-multi" (Application
Load Balancer, multi-value headers off or on), and "soketi-invoke" (soketi's Lambda
trigger: the payload and headers, no HTTP envelope). Each response goes back in the shape
its event came in.

The shape is told from the event's structure alone; no field of it is trusted. The public
URL comes only from fields AWS sets (`requestContext.domainName`); an ALB event has none.
"""
from __future__ import annotations

import base64

from .errors import Reject, safe_str

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for type checkers and editors only: no import at cold start
    from typing import Any

SOKETI_INVOKE = "soketi-invoke"
ALB_SHAPES = ("alb", "alb-multi")


class Request:
    """One request however Lambda delivered it. Built by `read_request`; trusted inside.

    shape: "http" (Function URL, HTTP API), "rest", "alb", "alb-multi" or "soketi-invoke".
    headers: lowercased names, repeats joined with ",". body: the raw bytes.
    url: the public URL derived from fields AWS sets, or None when the event cannot tell it
    (ALB: its Host header is the caller's; REST or HTTP events without a domainName).
    query_pairs: REST's parsed query parameters, decoded (the raw query string is not given).
    """

    def __init__(self, shape: str, method: str, headers: dict[str, str], body: bytes,
                 url: str | None = None,
                 query_pairs: list[tuple[str, str]] | None = None) -> None:
        self.shape = shape
        self.method = method
        self.headers = headers
        self.body = body
        self.url = url
        self.query_pairs = query_pairs

    @property
    def is_alb_health_check(self) -> bool:
        """ALB target-group health checks are GETs with this User-Agent. They are answered
        200 without reaching `handle`; nothing is accepted by it."""
        user_agent = self.headers.get("user-agent", "")
        return (self.shape in ALB_SHAPES and self.method == "GET"
                and user_agent.startswith("ELB-HealthChecker/"))


def event_shape(event: Any) -> str:
    """The event's shape, from its structure alone (no field is trusted)."""
    if not isinstance(event, dict):
        return "unknown"
    context = event.get("requestContext")
    if context is None and "payload" in event and "headers" in event:
        return SOKETI_INVOKE  # soketi's Lambda trigger: {"payload": ..., "headers": ...}
    if not isinstance(context, dict):
        return "unknown"
    if event.get("version") == "2.0":
        return "http"
    if "elb" in context:
        return "alb-multi" if "multiValueHeaders" in event else "alb"
    if "httpMethod" in event:
        return "rest"
    return "unknown"


def read_request(event: Any, shape: str | None = None) -> Request:
    """Normalize the event; Reject(400) naming what is wrong for any event no AWS service sends."""
    shape = shape or event_shape(event)
    if shape == "unknown":
        if not isinstance(event, dict):
            raise Reject(400, "event is a %s, not a JSON object" % type(event).__name__)
        raise Reject(400, "unknown event shape: not a Function URL, API Gateway, ALB or "
                     "soketi event")
    try:
        if shape == SOKETI_INVOKE:
            return _read_soketi_invoke(event)
        return _read_http_event(event, shape)
    except (KeyError, AttributeError, TypeError, ValueError, RecursionError) as exc:
        raise Reject(400, "malformed %s event: %s %.80s"
                     % (shape, type(exc).__name__, safe_str(exc))) from None


def _read_http_event(event: dict[str, Any], shape: str) -> Request:
    context = event["requestContext"]
    headers = _join_headers(event.get("multiValueHeaders") or event.get("headers"))
    body = _read_body(event)
    if shape == "http":  # Function URL, HTTP API (payload 2.0): rawPath carries the stage
        method = context["http"]["method"]
        domain = context.get("domainName")
        url = None
        if domain:
            query = event.get("rawQueryString") or ""
            url = "https://" + domain + event["rawPath"] + ("?" + query if query else "")
        return Request(shape, method, headers, body, url)
    method = event["httpMethod"]
    if shape == "rest":  # API Gateway REST (1.0): requestContext.path has the stage
        domain = context.get("domainName")
        stage_path = context.get("path")
        url = None
        if domain and stage_path:
            url = "https://" + domain + stage_path
        return Request(shape, method, headers, body, url, _query_pairs(event))
    return Request(shape, method, headers, body)  # ALB: nothing in it says the public URL


def _read_body(event: dict[str, Any]) -> bytes:
    encoded = event.get("isBase64Encoded", False)
    if encoded is not True and encoded is not False:  # no AWS service sends anything else
        raise Reject(400, "isBase64Encoded is %.20r, not true or false" % (encoded,))
    body = event.get("body") or ""
    if not isinstance(body, str):
        raise Reject(400, "body is a %s, not a string" % type(body).__name__)
    try:
        if encoded:
            return base64.b64decode(body, validate=True)
        return body.encode()
    except ValueError:
        raise Reject(400, "body is not valid base64 (isBase64Encoded) or UTF-8") from None


def _join_headers(raw: Any) -> dict[str, str]:
    """Lowercase names once, here; repeats (lists, names differing in case) join with ","."""
    joined: dict[str, list[str]] = {}
    for name, value in (raw or {}).items():
        if not isinstance(value, str):
            value = ",".join(value)
        joined.setdefault(name.lower(), []).append(value)
    return {name: ",".join(values) for name, values in joined.items()}


def _query_pairs(event: dict[str, Any]) -> list[tuple[str, str]]:
    """REST's decoded query parameters as (name, value) pairs, repeats kept."""
    multi = event.get("multiValueQueryStringParameters")
    if multi:
        return [(name, value) for name, values in multi.items() for value in values]
    single = event.get("queryStringParameters") or {}
    return [(name, value) for name, value in single.items()]


def _read_soketi_invoke(event: dict[str, Any]) -> Request:
    """soketi signed Node's JSON.stringify(payload); rebuild those bytes (node_json.py), in
    time and memory linear in the payload. The rebuild stops with a 400 as soon as it would
    pass Lambda's 6 MB or MAX_NESTING levels, so nothing Lambda would refuse is paid for."""
    from . import node_json  # soketi's direct invocations only

    headers = _join_headers(event["headers"])
    return Request(SOKETI_INVOKE, "INVOKE", headers, node_json.node_json(event["payload"]))


def respond(shape: str, status: int, headers: dict[str, str], body: str) -> dict[str, Any]:
    """The response in the shape its event came in (ALB: statusDescription, and
    multiValueHeaders in multi-value mode)."""
    headers = {"content-type": "application/json", **headers}
    response: dict[str, Any] = {"statusCode": status, "headers": headers, "body": body,
                                "isBase64Encoded": False}
    if shape in ALB_SHAPES:
        response["statusDescription"] = _status_text(status)
        if shape == "alb-multi":
            response["multiValueHeaders"] = {name: [value] for name, value
                                             in response.pop("headers").items()}
    return response


STATUS_PHRASES = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
                  404: "Not Found", 409: "Conflict", 410: "Gone", 413: "Payload Too Large",
                  422: "Unprocessable Entity", 429: "Too Many Requests",
                  489: "Non-Retryable Error",  # QStash's own status, not in HTTP's registry
                  500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
                  503: "Service Unavailable", 504: "Gateway Timeout"}


def _status_text(status: int) -> str:
    """ALB's statusDescription, e.g. "200 OK"."""
    phrase = STATUS_PHRASES.get(status) or ("Client Error" if status < 500 else "Server Error")
    return "%d %s" % (status, phrase)
