"""The deduplication store on a DynamoDB table: five conditional single-item requests.

Imported only when DEDUP_TABLE is set. The table: partition key `id` (a string), TTL
attribute `expires_at`. The requests go to DynamoDB's JSON API (POST /, X-Amz-Target),
signed with Signature Version 4 (sigv4.py) from the credentials and region Lambda sets
(config.py reads them), as HTTP/1.1 over a socket (TLS for https, verified against the
system's CA certificates), kept alive across warm invocations. Endpoint:
AWS_ENDPOINT_URL_DYNAMODB, else AWS_ENDPOINT_URL (the SDKs' convention), else
https://dynamodb.<region>.amazonaws.com.

A failed condition returns the item that failed it (ReturnValuesOnConditionCheckFailure),
saving a read; dynalite ignores that option, so the protocol then reads the record. No
credential, token or signature ever reaches a log line or an exception's text.
"""
from __future__ import annotations

import json
import socket

from .sigv4 import Credentials, sign_post
from .store import ConditionFailedError, Store, StoreError

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for type checkers and editors only: no import at cold start
    from typing import Any

    from .config import DedupSettings
    from .store import Record

TARGET_PREFIX = "DynamoDB_20120810."
CONTENT_TYPE = "application/x-amz-json-1.0"
TIMEOUT = 2.0  # seconds for connecting and for each answer; DynamoDB answers in ms
OWNED_IN_PROGRESS = "#owner = :me AND #state = :in_progress"
OWNER_AND_STATE = {"#state": "state", "#owner": "owner"}


class DynamoDBStore(Store):
    """The store's five operations, each one DynamoDB request on the table."""

    def __init__(self, settings: DedupSettings) -> None:
        self.settings = settings

    def put_if_absent(self, record: Record, now_s: int) -> None:
        self.put(record, "attribute_not_exists(id) OR expires_at < :now", {":now": now_s})

    def put_unless_held(self, record: Record, now_s: int, now_ms: int) -> Record | None:
        condition = ("attribute_not_exists(id) OR expires_at < :now_s OR "
                     "(#state = :in_progress AND lease_until < :now_ms)")
        values = {":now_s": now_s, ":now_ms": now_ms, ":in_progress": "in_progress"}
        return self.put(record, condition, values, names={"#state": "state"})

    def complete(self, key: str, owner: str, answer: str, status: int,
                 expires_at: int) -> None:
        update = ("SET #state = :completed, answer = :answer, #status = :status, "
                  "expires_at = :expires REMOVE lease_until")
        values = {":completed": "completed", ":answer": answer, ":status": status,
                  ":expires": expires_at, ":me": owner, ":in_progress": "in_progress"}
        names = {**OWNER_AND_STATE, "#status": "status"}
        fields = {"Key": {"id": {"S": key}}, "UpdateExpression": update,
                  **_condition(OWNED_IN_PROGRESS, values, names)}
        self.call("UpdateItem", fields)

    def release(self, key: str, owner: str) -> None:
        values = {":me": owner, ":in_progress": "in_progress"}
        fields = {"Key": {"id": {"S": key}},
                  **_condition(OWNED_IN_PROGRESS, values, OWNER_AND_STATE)}
        self.call("DeleteItem", fields)

    def get(self, key: str) -> Record | None:
        answer = self.call("GetItem", {"Key": {"id": {"S": key}}, "ConsistentRead": True})
        return _record(answer.get("Item"))

    def put(self, record: Record, condition: str, values: dict[str, Any],
            names: dict[str, str] | None = None) -> Record | None:
        """PutItem if `condition` holds; returns the item it replaced, or None."""
        item = {name: _to_dynamo(value) for name, value in record.items()}
        answer = self.call("PutItem", {"Item": item, **_condition(condition, values, names),
                                       "ReturnValues": "ALL_OLD"})
        return _record(answer.get("Attributes"))

    def call(self, operation: str, fields: dict[str, Any]) -> dict[str, Any]:
        """One DynamoDB request; its JSON answer. ConditionFailedError or StoreError
        otherwise."""
        body = json.dumps({"TableName": self.settings.table, **fields}).encode()
        status, answer = dynamodb_request(self.settings, operation, body)
        if status == 200:
            return json.loads(answer)
        error = _error_fields(answer)
        kind = str(error.get("__type", "")).rpartition("#")[2] or "HTTP %d" % status
        if kind == "ConditionalCheckFailedException":
            raise ConditionFailedError(_record(error.get("Item")))
        raise StoreError("%s %s: %s" % (operation, kind, _safe_message(kind, error)))


def _condition(condition: str, values: dict[str, Any],
               names: dict[str, str] | None) -> dict[str, Any]:
    fields: dict[str, Any] = {"ConditionExpression": condition,
                              "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
    if values:
        fields["ExpressionAttributeValues"] = {name: _to_dynamo(value)
                                               for name, value in values.items()}
    if names:
        fields["ExpressionAttributeNames"] = names
    return fields


def _to_dynamo(value: str | int) -> dict[str, str]:
    """DynamoDB's typed JSON, for the two types the records use."""
    if isinstance(value, str):
        return {"S": value}
    return {"N": str(int(value))}


def _from_dynamo(attribute: dict[str, str]) -> str | int:
    """A typed value back: {"S": "x"} -> "x", {"N": "7"} -> 7."""
    if "N" in attribute:
        return int(attribute["N"])
    return attribute["S"]


def _record(attributes: dict[str, dict[str, str]] | None) -> Record | None:
    if not attributes:
        return None
    return {name: _from_dynamo(value) for name, value in attributes.items()}


def signed_headers(settings: DedupSettings, operation: str, body: bytes,
                   now: float | None = None) -> dict[str, str]:
    """The headers of one request, signed; StoreError without credentials. `now` (epoch
    seconds) pins the clock for tests."""
    if not settings.access_key_id or not settings.secret_access_key:
        raise StoreError("no AWS credentials in the environment (AWS_ACCESS_KEY_ID, "
                         "AWS_SECRET_ACCESS_KEY)")
    credentials = Credentials(settings.access_key_id, settings.secret_access_key,
                              settings.session_token)
    headers = {"content-type": CONTENT_TYPE, "host": _host_header(settings.endpoint),
               "x-amz-target": TARGET_PREFIX + operation}
    return sign_post(headers, body, settings.region, "dynamodb", credentials, now)


def _host_header(endpoint: str) -> str:
    """The Host header for an endpoint URL: its host, with the port unless it is the default."""
    scheme, _, rest = endpoint.partition("://")
    host = rest.split("/")[0]
    default = ":443" if scheme == "https" else ":80"
    return host[:-len(default)] if host.endswith(default) else host


def _error_fields(answer):
    """{"__type", "message"} from an error answer: DynamoDB's JSON, or the XML that some
    gateways in front of it answer with (<Code>, <Message>)."""
    try:
        error = json.loads(answer)
    except ValueError:
        text = answer.decode("utf-8", "replace")
        code = text.partition("<Code>")[2].partition("</Code>")[0]
        message = text.partition("<Message>")[2].partition("</Message>")[0]
        return {"__type": code, "message": message}
    return error if isinstance(error, dict) else {}


def _safe_message(kind, error):
    """DynamoDB's error message, unless it is about the signature or the credentials (those
    can echo the canonical request, and with it the session token)."""
    if any(word in kind for word in ("Signature", "Token", "Client", "Credential", "Auth")):
        return "(message withheld: it is about the credentials)"
    text = str(error.get("message") or error.get("Message") or "")
    return text.splitlines()[0][:200] if text else "(no message)"


_idle_connections: list[tuple[str, Connection]] = []  # kept alive between warm invocations


def dynamodb_request(settings: DedupSettings, operation: str, body: bytes) -> tuple[int, bytes]:
    """POST one signed JSON-API request; (HTTP status, answer bytes). A broken connection is
    tried once more on a new one (the protocol recognises its own applied writes); a
    timeout is not (waiting twice would be too long)."""
    endpoint = settings.endpoint
    headers = signed_headers(settings, operation, body)
    head = "POST / HTTP/1.1\r\n" + "".join("%s: %s\r\n" % item for item in headers.items())
    message = (head + "content-length: %d\r\n\r\n" % len(body)).encode() + body
    for attempt in (1, 2):
        connection = None
        try:
            connection = _take_connection(endpoint, socket)
            status, answer, keep_alive = connection.exchange(message)
        except (OSError, ValueError) as exc:
            if connection is not None:
                connection.close()
            if attempt == 2 or isinstance(exc, socket.timeout):
                raise StoreError("%s could not reach DynamoDB (%s)" % (
                    operation, type(exc).__name__)) from None
            continue
        if keep_alive:
            _idle_connections.append((endpoint, connection))
        else:
            connection.close()
        return status, answer
    raise AssertionError("the loop above returns or raises")


def _take_connection(endpoint, socket):
    """An idle kept-alive connection to `endpoint`, or a new one."""
    while _idle_connections:
        idle_endpoint, connection = _idle_connections.pop()
        if idle_endpoint == endpoint:
            return connection
        connection.close()
    return Connection(endpoint, socket)


_tls: list[Any] = []  # one ssl context per process: loading the CA certificates is the slow part


class Connection:
    """One HTTP/1.1 connection (TLS for https) to the DynamoDB endpoint: a request is sent
    as one write, the answer read by its Content-Length (or chunks, or until closed)."""

    def __init__(self, endpoint, socket):
        scheme, _, host_port = endpoint.partition("://")
        host, _, port = host_port.partition("/")[0].rpartition(":")
        if not host or not port.isdigit():  # no port in the URL
            host, port = host_port.partition("/")[0], "443" if scheme == "https" else "80"
        raw = socket.create_connection((host.strip("[]"), int(port)), TIMEOUT)
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                import ssl
                if not _tls:
                    _tls.append(ssl.create_default_context())
                raw = _tls[0].wrap_socket(raw, server_hostname=host.strip("[]"))
        except OSError:
            raw.close()
            raise
        self.socket, self.reader = raw, raw.makefile("rb")

    def exchange(self, message):
        """(status, body, whether the connection stays open) for one request."""
        self.socket.sendall(message)
        status_line = self.reader.readline(1024)
        version, status, _ = (status_line.decode("latin-1") + "  ").split(" ", 2)
        if not version.startswith("HTTP/1.") or not status.isdigit():
            raise ValueError("not an HTTP/1.x answer")
        fields = {}
        while True:
            line = self.reader.readline(8192)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            fields[name.strip().lower()] = value.strip()
        keep_alive = fields.get("connection", "").lower() != "close" and \
            version == "HTTP/1.1"
        if "chunked" in fields.get("transfer-encoding", "").lower():
            body = self._chunks()
        elif "content-length" in fields:
            body = self._exactly(int(fields["content-length"]))
        else:
            body, keep_alive = self.reader.read(), False
        return int(status), body, keep_alive

    def _exactly(self, size):
        body = self.reader.read(size)
        if len(body) != size:
            raise ValueError("the answer ended early")
        return body

    def _chunks(self):
        parts: list[bytes] = []
        while True:
            size = int(self.reader.readline(1024).split(b";")[0], 16)
            if size == 0:
                while self.reader.readline(8192) not in (b"\r\n", b"\n", b""):
                    pass  # trailer fields
                return b"".join(parts)
            parts.append(self._exactly(size))
            self.reader.readline(1024)

    def close(self):
        self.reader.close()
        self.socket.close()
