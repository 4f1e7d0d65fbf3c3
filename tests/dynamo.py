"""DynamoDB peers for the deduplication tests, on loopback: moto_server and dynalite (npm),
each started by the tests, plus botocore clients to inspect tables independently of our own
client, and a proxy that counts requests and injects store faults."""
import contextlib
import functools
import http.client
import http.server
import json
import os
import random
import sys
import threading
import time

from conftest import ROOT, need
from peers import free_port, npm_install, running

BIN = os.path.dirname(sys.executable)
TABLE = "dedup"
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "AKIATESTDEDUPKEY0001",
                     "AWS_SECRET_ACCESS_KEY": "test-dedup-secret-key-0001",
                     "AWS_REGION": "us-east-1"}


@contextlib.contextmanager
def dynalite(path=None):
    """dynalite@4.0.0 (tests/dynalite/package.json) on a free loopback port: in memory, or
    in LevelDB files under `path`."""
    folder = npm_install("dynalite", ROOT / "tests/dynalite/package.json")
    port = free_port()
    argv = ["node", str(folder / "node_modules/dynalite/cli.js"), "--host", "127.0.0.1",
            "--port", str(port), "--createTableMs", "0", "--deleteTableMs", "0"]
    if path:
        argv += ["--path", str(path)]
    with running(argv, port=port) as process:
        process.endpoint = "http://127.0.0.1:%d" % port
        yield process


@contextlib.contextmanager
def moto():
    """moto_server (a test requirement) on a free loopback port."""
    need(os.path.exists(os.path.join(BIN, "moto_server")), "moto[server] is not installed")
    port = free_port()
    argv = [os.path.join(BIN, "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    with running(argv, port=port) as process:
        process.endpoint = "http://127.0.0.1:%d" % port
        yield process


def client(endpoint, service="dynamodb", credentials=None):
    """A botocore client: AWS's own code, independent of ours (one per peer and key)."""
    credentials = credentials or DUMMY_CREDENTIALS
    return _client(endpoint, service, tuple(sorted(credentials.items())))


@functools.lru_cache(maxsize=None)
def _client(endpoint, service, credentials):
    import botocore.session
    from botocore.config import Config
    credentials = dict(credentials)
    return botocore.session.get_session().create_client(
        service, region_name="us-east-1", endpoint_url=endpoint,
        aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=credentials.get("AWS_SESSION_TOKEN"),
        config=Config(retries={"max_attempts": 1}))


def create_table(endpoint, name=TABLE):
    """The table as the README describes it: key `id` (string), on demand, TTL expires_at."""
    dynamodb = client(endpoint)
    dynamodb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                          AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                          KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
    dynamodb.get_waiter("table_exists").wait(TableName=name,
                                             WaiterConfig={"Delay": 0.1, "MaxAttempts": 100})
    with contextlib.suppress(Exception):  # dynalite has no TTL API; moto has
        dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification={
            "Enabled": True, "AttributeName": "expires_at"})
    return name


def item(endpoint, key, table=TABLE):
    """A record as botocore reads it (strongly consistent), or None."""
    found = client(endpoint).get_item(TableName=table, Key={"id": {"S": key}},
                                      ConsistentRead=True).get("Item")
    if found is None:
        return None
    return _plain(found)


def items(endpoint, prefix="", table=TABLE):
    """Every record whose key starts with `prefix`, as botocore scans them (consistent)."""
    found = []
    start = {}
    while True:
        page = client(endpoint).scan(TableName=table, ConsistentRead=True, **start)
        found += [_plain(record) for record in page["Items"]
                  if record["id"]["S"].startswith(prefix)]
        if "LastEvaluatedKey" not in page:
            return found
        start = {"ExclusiveStartKey": page["LastEvaluatedKey"]}


def message_record(endpoint, message_id):
    """The one message record filed under `message_id` (its key also names the signed body
    and URL), or None."""
    found = items(endpoint, "qstash:message:" + message_id + ":")
    assert len(found) <= 1, found
    return found[0] if found else None


def _plain(record):
    return {name: int(v["N"]) if "N" in v else v["S"] for name, v in record.items()}


# Answers a broken store might send, in place of forwarding the request (raw HTTP/1.1).
GARBAGE = {
    "not_json": b"HTTP/1.1 200 OK\r\nContent-Length: 19\r\n\r\n<html>busy</html>\r\n",
    "length_1e20": b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n{}" % 10**20,
    "length_1e12": b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n{}" % 10**12,
    "chunk_2e80": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n{}" % 2**80,
    "json_list": b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n[1, 2]",
    "json_of_2_mb": b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s{}" % (
        2**21 + 2, b" " * 2**21),  # valid JSON, but no answer of DynamoDB's is that long
}


def error_answer(status, body, content_type=b"application/x-amz-json-1.0"):
    return (b"HTTP/1.1 %d Error\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s"
            % (status, content_type, len(body), body))


def dynamodb_error(status, kind, message, key="message"):
    return error_answer(status, json.dumps({
        "__type": "com.amazonaws.dynamodb.v20120810#" + kind, key: message}).encode())


# Error answers a store, or a gateway in front of it, may give (answered instead of
# forwarding): DynamoDB's JSON, a gateway's XML, none of either, and errors about the
# credentials, whose message can echo the canonical request and with it the session token.
ECHOED_SECRET = "FwoGZXIvYXdzEBaaSessionTokenEchoed"
ERRORS = {
    "xml_throttle": error_answer(400, b"<ErrorResponse><Error><Code>ThrottlingException</Code>"
                                      b"<Message>Rate exceeded</Message></Error></ErrorResponse>",
                                 b"text/xml"),
    "html_502": error_answer(502, b"<html><body>Bad Gateway</body></html>", b"text/html"),
    "json_without_type": error_answer(503, b"{}"),
    "json_not_an_object": error_answer(500, b"[1, 2]"),
    "long_message": dynamodb_error(400, "ValidationException", "v" * 300),
    "two_lines": dynamodb_error(500, "InternalServerError", "first line\nsecond line",
                                key="Message"),
}
for kind in ("InvalidSignatureException", "UnrecognizedClientException",
             "ExpiredTokenException", "MissingAuthenticationTokenException",
             "InvalidClientTokenId", "CredentialsError"):
    ERRORS[kind] = dynamodb_error(400, kind, "The canonical request was: POST / ... "
                                  "x-amz-security-token:" + ECHOED_SECRET)


class Proxy:
    """An HTTP proxy in front of a DynamoDB peer, on loopback. It counts the requests by
    operation (an independent count of round trips) and notes when each arrived, can
    serialize them (moto's threaded server does not make a conditional write atomic), and
    can inject faults with probability `fault_rate`: a throttling answer, a 500, a connection
    closed before forwarding, or a connection closed AFTER forwarding (the write applied,
    its answer lost).

    `plan(operation, *faults)` scripts the next requests of one operation instead, in order:
    those four, "pass" (none), one of GARBAGE or ERRORS (answered instead of forwarding), or,
    after
    forwarding (the write applied): "trickle" (the answer one byte every `trickle_seconds`),
    "continue" (a `100 Continue` first), "folded" (Content-Length folded onto a second line),
    "stale" (a second, forged `200 {}` answer right behind the real one), "stale_later" (the
    same, 50 ms after it), "hang" (no answer, until the client hangs up), "no_item" (a
    failed condition answered without the item, as
    dynalite and any store ignoring ReturnValuesOnConditionCheckFailure answer), "pad_to_N"
    (the answer padded with spaces, still the same JSON, to N bytes)."""

    FAULTS = ("throttle", "server_error", "drop_before", "drop_after")

    def __init__(self, upstream, serialize=False, fault_rate=0.0, seed=1, tls=None,
                 framing="length", trickle_seconds=0.05):
        self.upstream = upstream.partition("://")[2]
        self.counts, self.faults = {}, {name: 0 for name in self.FAULTS}
        self.fault_rate, self.random = fault_rate, random.Random(seed)
        self.lock, self.serial = threading.Lock(), threading.Lock() if serialize else None
        self.connections = threading.local()
        self.script = {}  # operation: the faults its next requests meet
        self.arrivals = []  # (operation, time.monotonic()) of each request
        self.asked = []  # (operation, the request's JSON) of each request
        self.trickle_seconds = trickle_seconds
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes

            def setup(self):
                super().setup()
                with proxy.lock:
                    proxy.open_connections.add(self.connection)

            def do_POST(self):
                proxy.forward(self)

            def log_message(self, *args):
                pass
        self.open_connections = set()  # the clients' connections, for close_idle()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.framing = framing  # answers by Content-Length, in chunks, or until closed
        scheme = "http"
        if tls:  # (certificate file, key file): the proxy speaks HTTPS
            import ssl
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.endpoint = "%s://127.0.0.1:%d" % (scheme, self.server.server_port)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def total(self):
        with self.lock:
            return sum(self.counts.values())

    def reset(self):
        with self.lock:
            self.counts.clear()
            self.script.clear()
            self.arrivals.clear()
            self.asked.clear()

    def plan(self, operation, *faults):
        """The next requests of `operation` (PutItem, UpdateItem, ...) meet these faults."""
        with self.lock:
            self.script.setdefault(operation, []).extend(faults)

    def times(self, operation):
        """When each request of `operation` arrived (time.monotonic())."""
        with self.lock:
            return [when for name, when in self.arrivals if name == operation]

    def forward(self, request):
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        operation = request.headers.get("X-Amz-Target", "").rpartition(".")[2]
        with self.lock:
            self.counts[operation] = self.counts.get(operation, 0) + 1
            self.arrivals.append((operation, time.monotonic()))
            self.asked.append((operation, json.loads(body or b"null")))
            planned = self.script.get(operation)
            if planned:
                fault = planned.pop(0)
            else:
                fault = self.random.random() < self.fault_rate and self.random.choice(
                    self.FAULTS)
            if fault in self.faults:
                self.faults[fault] += 1
        if fault in GARBAGE:  # then the connection is closed, and the answer says so (else
            # the next request could be sent as the close comes in, and spend its one retry)
            request.close_connection = True
            self.write(request, GARBAGE[fault].replace(b"\r\n", b"\r\nConnection: close\r\n", 1))
            return
        if fault in ERRORS:
            self.write(request, ERRORS[fault])
            return
        if fault == "drop_before":
            request.close_connection = True
            request.connection.shutdown(2)
            return
        if fault == "hang":  # no answer at all, until the client gives up
            request.close_connection = True
            with contextlib.suppress(OSError):
                request.connection.recv(1)
            return
        if fault in ("throttle", "server_error"):
            kind = "ProvisionedThroughputExceededException" if fault == "throttle" else \
                "InternalServerError"
            self.answer_framed(request, 400 if fault == "throttle" else 500, (
                '{"__type":"com.amazonaws.dynamodb.v20120810#%s","message":"injected"}'
                % kind).encode())
            return
        try:
            with self.serial or contextlib.nullcontext():
                status, answer = self.send_upstream(body, request.headers)
        except OSError:  # the peer is gone: so is the answer
            request.close_connection = True
            return
        if fault == "drop_after":
            request.close_connection = True
            request.connection.shutdown(2)
            return
        if fault == "no_item":
            answer = without_item(answer)
        if str(fault).startswith("pad_to_"):
            answer = answer.ljust(int(fault[len("pad_to_"):]))
        if fault == "trickle":
            request.close_connection = True
            self.trickle(request, raw_answer(status, answer))
        elif fault == "continue":
            self.write(request, b"HTTP/1.1 100 Continue\r\n\r\n" + raw_answer(status, answer))
        elif fault == "folded":
            self.write(request, raw_answer(status, answer, folded=True))
        elif fault == "stale":
            self.write(request, raw_answer(status, answer) + raw_answer(200, b"{}"))
        elif fault == "stale_later":
            self.write(request, raw_answer(status, answer))
            time.sleep(0.05)
            self.write(request, raw_answer(200, b"{}"))
        else:
            self.answer_framed(request, status, answer)

    @staticmethod
    def write(request, raw):
        """Raw bytes as the answer; a client that hung up ends it."""
        with contextlib.suppress(OSError):
            request.wfile.write(raw)

    def trickle(self, request, raw):
        """The answer one byte at a time, until it is all sent or the client hangs up."""
        for position in range(len(raw)):
            try:
                request.wfile.write(raw[position:position + 1])
            except OSError:
                return
            time.sleep(self.trickle_seconds)

    def answer_framed(self, request, status, body):
        if self.framing == "length":
            self.answer(request, status, body)
            return
        request.send_response(status)
        request.send_header("Content-Type", "application/x-amz-json-1.0")
        if self.framing == "chunked":
            request.send_header("Transfer-Encoding", "chunked")
            request.end_headers()
            for start in range(0, len(body), 7):
                piece = body[start:start + 7]
                request.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            request.wfile.write(b"0\r\n\r\n")
        else:  # no length: the body ends when the connection closes
            request.send_header("Connection", "close")
            request.end_headers()
            request.wfile.write(body)
            request.close_connection = True

    def send_upstream(self, body, headers):
        """(status, answer) from the peer, over this thread's kept-alive connection. A kept
        connection the peer has closed meanwhile (Node's servers close idle ones after 5 s)
        fails before any answer: the request is sent once more on a new connection."""
        for attempt in (1, 2):
            upstream = getattr(self.connections, "upstream", None)
            reused = upstream is not None
            if upstream is None:
                upstream = self.connections.upstream = http.client.HTTPConnection(
                    self.upstream, timeout=10)
            try:
                upstream.request("POST", "/", body, {k: v for k, v in headers.items()
                                                     if k.lower() != "connection"})
                response = upstream.getresponse()
                answer = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.connections.upstream = None
                upstream.close()
                if reused and attempt == 1:
                    continue
                raise
            except Exception:
                self.connections.upstream = None
                upstream.close()
                raise
            if response.will_close:
                self.connections.upstream = None
                upstream.close()
            return response.status, answer
        raise AssertionError("the loop above returns or raises")

    @staticmethod
    def answer(request, status, body):
        request.send_response(status)
        request.send_header("Content-Type", "application/x-amz-json-1.0")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def close_idle(self):
        """Close every client connection from this side, as a server closes idle ones."""
        import socket
        with self.lock:
            connections, self.open_connections = self.open_connections, set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def without_item(answer):
    """A ConditionalCheckFailedException answer without its `Item`; any other as it is."""
    error = json.loads(answer)
    if not str(error.get("__type", "")).endswith("ConditionalCheckFailedException"):
        return answer
    error.pop("Item", None)
    return json.dumps(error).encode()


def raw_answer(status, body, folded=False):
    """One HTTP/1.1 answer by Content-Length; `folded` puts the length on a continuation
    line (obsolete line folding, RFC 9112 section 5.2)."""
    length = b"Content-Length: %d\r\n" % len(body)
    if folded:
        length = b"Content-Length:\r\n %d\r\n" % len(body)
    return (b"HTTP/1.1 %d Whatever\r\nContent-Type: application/x-amz-json-1.0\r\n" % status
            + length + b"\r\n" + body)
