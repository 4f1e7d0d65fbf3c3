"""transport.py on its own: one HTTP/1.1 request by a deadline, against small servers on
loopback that each misbehave one way (hold the answer, never read, trickle it, close, send
bytes after it, never finish the TLS handshake). What is measured: what the server saw
(connections opened, closed, requests), what the client raised, and that no socket was
left for the garbage collector to close."""
import contextlib
import gc
import select
import socket
import ssl
import threading
import time
import warnings

import pytest

from conftest import self_signed_certificate
from signed_webhooks import transport

def answer(body=b"{}", headers=b""):
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n" % (len(body), headers)
    return head + body


def read_request(stream):
    """One request from a file over the connection: its body, or None at the client's end."""
    length = None
    while True:
        line = stream.readline()
        if not line:
            return None
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return stream.read(length or 0)


class Server:
    """A loopback server: `serve(connection, server)` runs for each connection it accepts,
    in a thread of its own. It counts connections accepted, requests read and connections
    the client closed (read to their end)."""

    def __init__(self, serve, tls=None):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.serve = serve
        self.tls = tls
        self.accepted = 0
        self.requests = 0
        self.ended_by_client = 0
        self.lock = threading.Lock()
        self.threads = []
        self.open = []
        threading.Thread(target=self.accept_all, daemon=True).start()

    def accept_all(self):
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                self.open.append(connection)
            thread = threading.Thread(target=self.run, args=(connection,), daemon=True)
            thread.start()
            with self.lock:
                self.threads.append(thread)

    def run(self, connection):
        with contextlib.suppress(OSError, ssl.SSLError, ValueError):
            if self.tls is not None:
                connection = self.tls.wrap_socket(connection, server_side=True)
                with self.lock:
                    self.open.append(connection)
            self.serve(connection, self)

    def answer_each(self, connection, answers):
        """Read requests and send `answers(n)` for the n-th (from 1), until the client ends."""
        stream = connection.makefile("rb")
        while True:
            body = read_request(stream)
            if body is None:
                with self.lock:
                    self.ended_by_client += 1
                return
            with self.lock:
                self.requests += 1
                number = self.requests
            connection.sendall(answers(number))

    def close(self):
        self.listener.close()
        with self.lock:
            for connection in self.open:
                with contextlib.suppress(OSError):
                    connection.close()
            threads = list(self.threads)
        for thread in threads:
            thread.join(5)


@pytest.fixture
def servers():
    """servers(serve, tls=None) starts a Server; all are closed after the test."""
    started = []

    def start(serve, tls=None):
        server = Server(serve, tls)
        started.append(server)
        return server
    yield start
    for server in started:
        server.close()


@pytest.fixture(autouse=True)
def no_connections_kept(monkeypatch):
    """Each test starts with no idle connection and a fresh TLS context."""
    monkeypatch.setattr(transport, "_idle_connections", [])
    monkeypatch.setattr(transport, "_tls", None)


@contextlib.contextmanager
def no_socket_left_open():
    """Every socket the block opened is closed by the code itself: none reaches the garbage
    collector (which would say so with a ResourceWarning)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        yield
        gc.collect()
    left = [str(warning.message) for warning in caught
            if issubclass(warning.category, ResourceWarning)]
    assert not left, left


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """(server context, CA file) for a self-signed certificate for 127.0.0.1 (openssl)."""
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("transport-tls"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context, cert


@pytest.fixture
def trusted(tls, monkeypatch):
    """The test certificate trusted by the client's next TLS context."""
    monkeypatch.setenv("SSL_CERT_FILE", tls[1])
    return tls[0]


def post(server, deadline_in=5.0, body=b"{}", tls=False):
    address = transport.Address(tls, "127.0.0.1", server.port)
    headers = {"host": address.host_header, "content-type": "application/x-amz-json-1.0"}
    return transport.post(address, headers, body, time.monotonic() + deadline_in)


# --- Where requests go ----------------------------------------------------------------------

@pytest.mark.parametrize("tls, host, port, expected_port, host_header", [
    (True, "dynamodb.eu-west-1.amazonaws.com", None, 443, "dynamodb.eu-west-1.amazonaws.com"),
    (True, "ddb.example", 443, 443, "ddb.example"),
    (True, "ddb.example", 8443, 8443, "ddb.example:8443"),
    (False, "127.0.0.1", None, 80, "127.0.0.1"),
    (False, "127.0.0.1", 80, 80, "127.0.0.1"),
    (False, "127.0.0.1", 8000, 8000, "127.0.0.1:8000"),
    (False, "::1", 8000, 8000, "[::1]:8000"),
    (True, "::1", None, 443, "[::1]"),
])
def test_the_address_and_host_header_follow_http(tls, host, port, expected_port, host_header):
    """The port defaults to 443 for TLS, 80 without; the Host header (RFC 9110 7.2) names
    the port only when it is not the default, and an IPv6 address in brackets."""
    address = transport.Address(tls, host, port)
    assert (address.tls, address.host, address.port) == (tls, host, expected_port)
    assert address.host_header == host_header


def test_time_left_is_none_at_the_deadline_itself(monkeypatch):
    monkeypatch.setattr(time, "monotonic", lambda: 1000.0)
    assert transport.time_left(1000.25) == 0.25
    for deadline in (1000.0, 999.0):
        with pytest.raises(socket.timeout):
            transport.time_left(deadline)


# --- Connections kept alive -----------------------------------------------------------------

def test_a_kept_connection_is_reused_under_the_next_requests_deadline(servers):
    """The second request goes over the first one's connection, once its deadline has
    passed: the connection works by the new request's deadline, not the old one's."""
    server = servers(lambda connection, server: server.answer_each(
        connection, lambda number: answer(b'{"n":%d}' % number)))
    with no_socket_left_open():
        assert post(server, deadline_in=0.2) == (200, b'{"n":1}')
        time.sleep(0.3)
        assert post(server) == (200, b'{"n":2}')
        assert server.accepted == 1
        connection = transport._idle_connections[0]
        assert connection.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        connection.close()


def test_a_connection_the_server_closes_is_not_kept(servers):
    server = servers(lambda connection, server: server.answer_each(
        connection, lambda number: answer(b'{"n":%d}' % number, b"Connection: close\r\n")))
    with no_socket_left_open():
        assert post(server) == (200, b'{"n":1}')
        assert transport._idle_connections == []
        assert post(server) == (200, b'{"n":2}')
        assert server.accepted == 2


def test_a_kept_connection_the_server_closed_while_idle_is_replaced_once(servers,
                                                                       monkeypatch):
    """A server closes an idle connection when it likes, and its close can race the check
    made before reuse (modelled: the check passes). The request on it then fails before any
    answer and goes once more, on a new connection. A new connection that fails the same way
    is not tried again here: that failure is the caller's (dynamodb.py retries once)."""
    def answer_then_close(connection, server):
        stream = connection.makefile("rb")
        if read_request(stream) is None:
            return
        with server.lock:
            server.requests += 1
            number = server.requests
        if number == 1:  # answered, then closed while the client keeps it idle
            connection.sendall(answer(b'{"n":1}'))
        connection.shutdown(socket.SHUT_RDWR)
        connection.close()
    server = servers(answer_then_close)
    monkeypatch.setattr(transport.Connection, "clean", lambda connection: True)
    with no_socket_left_open():
        assert post(server) == (200, b'{"n":1}')
        time.sleep(0.1)  # the server's close arrives while the connection sits idle
        with pytest.raises(transport.CLOSED_WHILE_IDLE):
            post(server)  # the kept one fails, and so does its replacement: raised
        assert (server.accepted, server.requests) == (2, 2)
        with pytest.raises(transport.CLOSED_WHILE_IDLE):
            post(server)  # a new connection that fails is not tried again
        assert (server.accepted, server.requests) == (3, 3)


def test_a_request_on_a_kept_connection_closed_while_idle_goes_again_on_a_new_one(
        servers, monkeypatch):
    """The request the server's idle close cut off is answered on a new connection, in the
    same call: the caller never sees the close."""
    def close_the_first_after_answering(connection, server):
        stream = connection.makefile("rb")
        while read_request(stream) is not None:
            with server.lock:
                server.requests += 1
                number = server.requests
            connection.sendall(answer(b'{"n":%d}' % number))
            if number == 1:
                connection.shutdown(socket.SHUT_RDWR)
                connection.close()
                return
    server = servers(close_the_first_after_answering)
    monkeypatch.setattr(transport.Connection, "clean", lambda connection: True)
    with no_socket_left_open():
        assert post(server) == (200, b'{"n":1}')
        time.sleep(0.1)
        assert post(server) == (200, b'{"n":2}')
        assert (server.accepted, server.requests) == (2, 2)
        for connection in transport._idle_connections:
            connection.close()


def test_at_most_8_idle_connections_are_kept(servers):
    """Nine requests at once (threads) need nine connections; once answered, eight are kept
    for later requests and the ninth is closed."""
    arrived = threading.Barrier(9)

    def hold_until_all_nine(connection, server):
        def answers(number):
            arrived.wait(10)
            return answer()
        server.answer_each(connection, answers)
    server = servers(hold_until_all_nine)
    results = []
    with no_socket_left_open():
        threads = [threading.Thread(target=lambda: results.append(post(server)))
                   for _ in range(9)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == [(200, b"{}")] * 9 and server.accepted == 9
        assert len(transport._idle_connections) == 8
        for connection in transport._idle_connections:
            connection.close()


def test_bytes_waiting_on_an_idle_connection_close_it_rather_than_be_read(servers):
    """The server sends bytes after its answer (a forged second answer). The next request
    does not read them as its own: it closes that connection and opens another."""
    def answer_then_more(connection, server):
        def answers(number):
            if number == 1:
                connection.sendall(answer(b'{"n":1}'))
                time.sleep(0.05)
                return answer(b'{"forged":true}')
            return answer(b'{"n":%d}' % number)
        server.answer_each(connection, answers)
    server = servers(answer_then_more)
    with no_socket_left_open():
        assert post(server) == (200, b'{"n":1}')
        time.sleep(0.2)
        assert post(server) == (200, b'{"n":2}')
        assert server.accepted == 2
        transport._idle_connections[0].close()
    for _ in range(100):
        if server.ended_by_client:
            break
        time.sleep(0.01)
    assert server.ended_by_client == 1


def test_a_kept_tls_connection_with_decrypted_bytes_waiting_is_not_clean(servers, trusted):
    """Bytes the TLS layer has already decrypted are not on the socket any more, where
    poll would see them: they count as waiting all the same."""
    def answer_then_more(connection, server):
        def answers(number):
            connection.sendall(answer())
            time.sleep(0.05)
            return b"HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n{\"forged\": true}\r\n"
        server.answer_each(connection, answers)
    server = servers(answer_then_more, tls=trusted)
    with no_socket_left_open():
        assert post(server, tls=True) == (200, b"{}")
        [connection] = transport._idle_connections
        assert select.select([connection.sock], [], [], 5)[0]
        assert connection.sock.recv(1) == b"H"  # the TLS record is decrypted whole
        assert connection.sock.pending() > 0
        assert not select.select([connection.sock], [], [], 0)[0]
        assert not connection.clean()
        connection.close()


# --- The deadline -------------------------------------------------------------------------

def test_a_server_that_never_reads_is_given_up_at_the_deadline(servers):
    """A 32 MB body to a server that accepts and never reads: the send blocks once the
    socket buffers are full, and stops at the deadline (socket.timeout)."""
    stop = threading.Event()
    server = servers(lambda connection, server: stop.wait(10))
    with no_socket_left_open():
        with pytest.raises(socket.timeout):
            post(server, deadline_in=0.5, body=b" " * (32 << 20))
    stop.set()
    assert transport._idle_connections == []


def test_a_tls_handshake_the_server_never_answers_ends_at_the_deadline(servers, trusted):
    stop = threading.Event()
    server = servers(lambda connection, server: stop.wait(10))  # plain TCP: no TLS spoken
    with no_socket_left_open():
        with pytest.raises(socket.timeout):
            post(server, deadline_in=0.5, tls=True)
    stop.set()
    assert server.accepted == 1 and transport._idle_connections == []


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_an_answer_trickled_byte_by_byte_is_cut_off_at_the_deadline(scheme, servers, request):
    """Each byte comes within any per-read timeout; the whole answer would take 4 s. The
    request ends at its deadline (socket.timeout), over TLS as without it."""
    stop = threading.Event()

    def trickle(connection, server):
        read_request(connection.makefile("rb"))
        for byte in answer(b" " * 40 + b"{}"):
            if stop.wait(0.05):
                return
            connection.sendall(bytes([byte]))
    context = request.getfixturevalue("trusted") if scheme == "https" else None
    server = servers(trickle, tls=context)
    with no_socket_left_open():
        with pytest.raises(socket.timeout):
            post(server, deadline_in=0.5, tls=scheme == "https")
    stop.set()
    assert transport._idle_connections == []


def test_a_deadline_passing_between_connect_and_handshake_leaves_no_socket(servers, trusted,
                                                                          monkeypatch):
    """The deadline passes once the TCP connection is made, before the TLS handshake: the
    socket is closed there and then (a clock that reads 1 s before the deadline once,
    then 1 s after it)."""
    stop = threading.Event()
    server = servers(lambda connection, server: stop.wait(10))
    readings = iter([999.0])
    monkeypatch.setattr(time, "monotonic", lambda: next(readings, 1001.0))
    address = transport.Address(True, "127.0.0.1", server.port)
    with no_socket_left_open():
        with pytest.raises(socket.timeout):
            transport.post(address, {"host": address.host_header}, b"{}", 1000.0)
    stop.set()
