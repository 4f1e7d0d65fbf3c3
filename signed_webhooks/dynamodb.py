"""The deduplication store on a DynamoDB table: five conditional single-item requests.

Imported only when DEDUP_TABLE is set. The table: partition key `id` (a string), TTL
attribute `expires_at`. The requests go to DynamoDB's JSON API (POST /, X-Amz-Target),
signed with Signature Version 4 (sigv4.py) from the credentials and region Lambda sets
(dedup_config.py reads them, and checks the endpoint), over HTTP/1.1 (transport.py: http.client,
TLS for https, kept alive across warm invocations). Every request ends by its deadline: the
protocol's (the invocation's end, less a margin) or REQUEST_SECONDS, whichever comes first.
Any failure, whatever its type, is a StoreError.

A failed condition returns the item that failed it (ReturnValuesOnConditionCheckFailure),
saving a read; dynalite ignores that option, so the protocol then reads the record. No
credential, token or signature ever reaches a log line or an exception's text.
"""
from __future__ import annotations

import http.client
import json
import time

from . import transport
from .sigv4 import Credentials, sign_post
from .store import ConditionFailedError, StoreError

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for type checkers and editors only: no import at cold start
    from typing import Any

    from .dedup_config import DedupSettings
    from .store import Record

TARGET_PREFIX = "DynamoDB_20120810."
CONTENT_TYPE = "application/x-amz-json-1.0"
REQUEST_SECONDS = 2.0  # the most one request may take, connecting included; DynamoDB answers
# in milliseconds. The invocation's deadline may cut it shorter.
OWNED_IN_PROGRESS = "#owner = :me AND #state = :in_progress"
OWNER_AND_STATE = {"#state": "state", "#owner": "owner"}


class DynamoDBStore:
    """The store's five operations, each one DynamoDB request on the table."""

    def __init__(self, settings: DedupSettings) -> None:
        self.settings = settings

    def put_if_absent(self, record: Record, now_s: int, deadline: float) -> None:
        self.put(record, "attribute_not_exists(id) OR expires_at < :now", {":now": now_s},
                 None, deadline)

    def put_unless_held(self, record: Record, now_s: int, now_ms: int,
                        deadline: float) -> Record | None:
        condition = ("attribute_not_exists(id) OR expires_at < :now_s OR "
                     "(#state = :in_progress AND lease_until < :now_ms)")
        values = {":now_s": now_s, ":now_ms": now_ms, ":in_progress": "in_progress"}
        return self.put(record, condition, values, {"#state": "state"}, deadline)

    def complete(self, key: str, owner: str, answer: str, status: int, expires_at: int,
                 deadline: float) -> None:
        update = ("SET #state = :completed, answer = :answer, #status = :status, "
                  "expires_at = :expires REMOVE lease_until")
        values = {":completed": "completed", ":answer": answer, ":status": status,
                  ":expires": expires_at, ":me": owner, ":in_progress": "in_progress"}
        names = {**OWNER_AND_STATE, "#status": "status"}
        fields = {"Key": {"id": {"S": key}}, "UpdateExpression": update,
                  **_condition(OWNED_IN_PROGRESS, values, names)}
        self.request("UpdateItem", fields, deadline)

    def release(self, key: str, owner: str, deadline: float) -> None:
        values = {":me": owner, ":in_progress": "in_progress"}
        fields = {"Key": {"id": {"S": key}},
                  **_condition(OWNED_IN_PROGRESS, values, OWNER_AND_STATE)}
        self.request("DeleteItem", fields, deadline)

    def get(self, key: str, deadline: float) -> Record | None:
        fields = {"Key": {"id": {"S": key}}, "ConsistentRead": True}
        return self.request("GetItem", fields, deadline, "Item")

    def put(self, record: Record, condition: str, values: dict[str, Any],
            names: dict[str, str] | None, deadline: float) -> Record | None:
        """PutItem if `condition` holds; returns the item it replaced, or None."""
        item = {name: _to_dynamo(value) for name, value in record.items()}
        fields = {"Item": item, **_condition(condition, values, names), "ReturnValues": "ALL_OLD"}
        return self.request("PutItem", fields, deadline, "Attributes")

    def request(self, operation: str, fields: dict[str, Any], deadline: float,
                returned: str | None = None) -> Record | None:
        """One DynamoDB request; the record in its answer's `returned` member, or None.
        ConditionFailedError, or StoreError for any other failure, whatever its type: an
        answer that is not JSON, a length no memory holds, a bug. The caller's answer may
        depend on it (after `handle`, QStash must get handle's answer)."""
        try:
            answer = self.call(operation, fields, deadline)
            if returned is None:
                return None
            return _record(answer.get(returned))
        except (ConditionFailedError, StoreError):
            raise
        except Exception as exc:  # noqa: BLE001 - see above
            raise StoreError("%s: the answer could not be read (%s)"
                             % (operation, type(exc).__name__)) from None

    def call(self, operation: str, fields: dict[str, Any], deadline: float) -> dict[str, Any]:
        """One DynamoDB request; its JSON answer."""
        body = json.dumps({"TableName": self.settings.table, **fields}).encode()
        status, answer = dynamodb_request(self.settings, operation, body, deadline)
        if status == 200:
            parsed = json.loads(answer)
            if not isinstance(parsed, dict):
                raise StoreError("%s: the answer is not a JSON object" % operation)
            return parsed
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
    """A typed value back: {"S": "x"} -> "x", {"N": "7"} -> 7; ValueError for anything
    else (the records hold only these)."""
    if "N" in attribute:
        return int(attribute["N"])
    if not isinstance(attribute.get("S"), str):
        raise ValueError("an attribute of a type the records never hold")
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
    headers = {"content-type": CONTENT_TYPE, "host": address(settings).host_header,
               "x-amz-target": TARGET_PREFIX + operation}
    return sign_post(headers, body, settings.region, "dynamodb", credentials, now)


def address(settings: DedupSettings) -> transport.Address:
    """Where the requests go: the endpoint dedup_config.py checked (https, or http to this
    machine), taken apart."""
    endpoint = settings.endpoint
    if endpoint is None or not endpoint.hostname:
        raise StoreError("the endpoint variable is refused (see the configuration)")
    return transport.Address(endpoint.scheme == "https", endpoint.hostname, endpoint.port)


def _error_fields(answer: bytes) -> dict[str, Any]:
    """{"__type", "message"} from an error answer: DynamoDB's JSON, or the XML that some
    gateways in front of it answer with (<Code>, <Message>)."""
    try:
        error = json.loads(answer)
    except ValueError:
        text = answer.decode("utf-8", "replace")
        code = text.partition("<Code>")[2].partition("</Code>")[0]
        message = text.partition("<Message>")[2].partition("</Message>")[0]
        return {"__type": code, "message": message}
    if isinstance(error, dict):
        return error
    return {}


def _safe_message(kind: str, error: dict[str, Any]) -> str:
    """DynamoDB's error message, unless it is about the signature or the credentials (those
    can echo the canonical request, and with it the session token)."""
    if any(word in kind for word in ("Signature", "Token", "Client", "Credential", "Auth")):
        return "(message withheld: it is about the credentials)"
    text = str(error.get("message") or error.get("Message") or "")
    if not text:
        return "(no message)"
    return text.splitlines()[0][:200]


def dynamodb_request(settings: DedupSettings, operation: str, body: bytes,
                     deadline: float) -> tuple[int, bytes]:
    """POST one signed JSON-API request; (HTTP status, answer bytes), by `deadline` at the
    latest, and REQUEST_SECONDS from now. A broken connection or a cut answer is tried once
    more, on a new connection, by the same deadline (the protocol recognises its own applied
    writes); after a timeout, that deadline has passed."""
    headers = signed_headers(settings, operation, body)
    deadline = min(deadline, time.monotonic() + REQUEST_SECONDS)
    for attempt in (1, 2):
        try:
            return transport.post(address(settings), headers, body, deadline)
        except Exception as exc:  # noqa: BLE001 - every failure is a StoreError
            if attempt == 1 and isinstance(exc, (OSError, http.client.HTTPException)):
                continue
            raise StoreError("%s failed on its way (%s)" % (operation, type(exc).__name__)
                             ) from None
    raise AssertionError("the loop above returns or raises")
