"""DynamoDB peers for the deduplication tests, on loopback: moto_server and dynalite (npm),
each started by the tests, plus botocore clients to inspect tables independently of our own
client, and a proxy that counts requests and injects store faults."""
import contextlib
import functools
import http.client
import http.server
import os
import random
import sys
import threading

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
    return {name: int(v["N"]) if "N" in v else v["S"] for name, v in found.items()}


class Proxy:
    """An HTTP proxy in front of a DynamoDB peer, on loopback. It counts the requests by
    operation (an independent count of round trips), can serialize them (moto's threaded
    server does not make a conditional write atomic), and can inject faults with probability
    `fault_rate`: a throttling answer, a 500, a connection closed before forwarding, or a
    connection closed AFTER forwarding (the write applied, its answer lost)."""

    FAULTS = ("throttle", "server_error", "drop_before", "drop_after")

    def __init__(self, upstream, serialize=False, fault_rate=0.0, seed=1, tls=None,
                 framing="length"):
        self.upstream = upstream.partition("://")[2]
        self.counts, self.faults = {}, {name: 0 for name in self.FAULTS}
        self.fault_rate, self.random = fault_rate, random.Random(seed)
        self.lock, self.serial = threading.Lock(), threading.Lock() if serialize else None
        self.connections = threading.local()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes

            def do_POST(self):
                proxy.forward(self)

            def log_message(self, *args):
                pass
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

    def forward(self, request):
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        operation = request.headers.get("X-Amz-Target", "").rpartition(".")[2]
        with self.lock:
            self.counts[operation] = self.counts.get(operation, 0) + 1
            fault = self.random.random() < self.fault_rate and self.random.choice(self.FAULTS)
            if fault:
                self.faults[fault] += 1
        if fault == "drop_before":
            request.close_connection = True
            request.connection.shutdown(2)
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
        self.answer_framed(request, status, answer)

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
        """(status, answer) from the peer, over this thread's kept-alive connection."""
        upstream = getattr(self.connections, "upstream", None)
        if upstream is None:
            upstream = self.connections.upstream = http.client.HTTPConnection(
                self.upstream, timeout=10)
        try:
            upstream.request("POST", "/", body, {k: v for k, v in headers.items()
                                                 if k.lower() != "connection"})
            response = upstream.getresponse()
            answer = response.read()
        except Exception:
            self.connections.upstream = None
            upstream.close()
            raise
        if response.will_close:
            self.connections.upstream = None
            upstream.close()
        return response.status, answer

    @staticmethod
    def answer(request, status, body):
        request.send_response(status)
        request.send_header("Content-Type", "application/x-amz-json-1.0")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def close(self):
        self.server.shutdown()
        self.server.server_close()
