"""One HTTP/1.1 request that ends by a deadline: http.client over a socket that keeps it.

Imported only when DEDUP_TABLE is set (by dynamodb.py). http.client does the HTTP: framing by
Content-Length, chunks or the connection's end, `100 Continue`, header lines folded or too
long, `Connection: close`. What it leaves to its caller is done here:
- A deadline for the whole exchange. A socket timeout bounds one read, and a server that
  sends one byte just inside it every time holds a reader forever; so every send and every
  receive first sets the timeout to the time left (TimedSocket, TimedTLSSocket).
- A bound on the answer: it is read in pieces, and refused once over MAX_ANSWER_BYTES,
  whatever length it claims (AnswerTooLarge).
- Connections kept alive across warm invocations, each checked before reuse: bytes waiting
  on it (the server's close, or bytes after its last answer) would be read as the next
  answer, so such a connection is closed instead.
TLS is verified against the system's CA certificates (ssl.create_default_context).
"""
from __future__ import annotations

import http.client
import select
import socket
import ssl
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for type checkers and editors only: no import at cold start
    from typing import Any

MAX_ANSWER_BYTES = 1 << 20  # a DynamoDB item is at most 400 KB; an answer here holds one
READ_SIZE = 64 * 1024
IDLE_CONNECTIONS = 8  # kept for later requests (one at a time in Lambda; more in threads)


class AnswerTooLarge(Exception):
    """The answer is over MAX_ANSWER_BYTES."""


class Address:
    """Where requests go: TLS or not, host (an IPv6 address without brackets), port, and
    the Host header naming them."""

    def __init__(self, tls: bool, host: str, port: int | None) -> None:
        default_port = 443 if tls else 80
        self.tls = tls
        self.host = host
        self.port = port or default_port
        self.host_header = host
        if ":" in host:  # IPv6
            self.host_header = "[%s]" % host
        if self.port != default_port:
            self.host_header += ":%d" % self.port


# What a request on a connection the server has closed meets, before any answer.
CLOSED_WHILE_IDLE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


def post(address: Address, headers: dict[str, str], body: bytes,
         deadline: float) -> tuple[int, bytes]:
    """POST / with `headers` (Host among them) and `body`; (status, answer bytes) by
    `deadline` (time.monotonic()), else socket.timeout. Any other failure raises as it
    comes (OSError, http.client.HTTPException, AnswerTooLarge); the connection is then
    closed, never reused. A kept connection that the server closed while it sat idle (its
    close raced the check before reuse) fails before any answer: the request then goes once
    more on a new connection, as HTTP clients do (a write it had in fact delivered is
    recognised by the protocol as its own)."""
    connection = _take_connection(address)
    reused = connection.sock is not None
    try:
        return _exchange(connection, headers, body, deadline)
    except CLOSED_WHILE_IDLE:
        if not reused:
            raise
    return _exchange(Connection(address), headers, body, deadline)


def _exchange(connection: Connection, headers: dict[str, str], body: bytes,
              deadline: float) -> tuple[int, bytes]:
    """One request on `connection`, kept for later when it went well, else closed."""
    try:
        status, answer = connection.exchange(headers, body, deadline)
    except BaseException:
        connection.close()
        raise
    _keep(connection)
    return status, answer


def time_left(deadline: float) -> float:
    """Seconds until `deadline`; socket.timeout once it has passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise socket.timeout("the deadline passed")
    return left


_idle_connections: list[Connection] = []  # kept alive between warm invocations


def _take_connection(address: Address) -> Connection:
    """An idle connection to `address` with nothing waiting on it, or a new one."""
    while _idle_connections:
        connection = _idle_connections.pop()
        if connection.key == (address.tls, address.host, address.port) and connection.clean():
            return connection
        connection.close()
    return Connection(address)


def _keep(connection: Connection) -> None:
    if connection.sock is None or len(_idle_connections) >= IDLE_CONNECTIONS:
        connection.close()  # the server is closing it, or enough are kept
        return
    _idle_connections.append(connection)


_tls: ssl.SSLContext | None = None  # one per process: loading the CA certificates is slow


def _tls_context() -> ssl.SSLContext:
    global _tls
    if _tls is None:
        context = ssl.create_default_context()
        context.sslsocket_class = TimedTLSSocket
        _tls = context
    return _tls


class Connection(http.client.HTTPConnection):
    """http.client's connection, over a TimedSocket (or TimedTLSSocket) that keeps the
    deadline of the request in hand."""

    deadline: float  # of the request under way: set by `exchange` before anything is sent

    def __init__(self, address: Address) -> None:
        super().__init__(address.host, address.port)
        self.key = (address.tls, address.host, address.port)
        self.timed: TimedSocket | TimedTLSSocket | None = None

    def connect(self) -> None:
        """TCP, then TLS for https, within the time left (the TLS handshake as a whole is
        bounded by the socket's timeout). Name resolution is the one step no timeout
        bounds; each address it gives is tried with the time left."""
        raw = socket.create_connection((self.host, self.port), time_left(self.deadline))
        timed: TimedSocket | TimedTLSSocket = TimedSocket(fileno=raw.detach())
        try:
            timed.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
            if self.key[0]:
                timed.settimeout(time_left(self.deadline))
                # a TimedTLSSocket: the context's sslsocket_class (typeshed says SSLSocket)
                timed = _tls_context().wrap_socket(  # type: ignore[assignment]
                    timed, server_hostname=self.host)
        except BaseException:
            timed.close()
            raise
        timed.deadline = self.deadline
        self.sock = timed
        self.timed = timed

    def exchange(self, headers: dict[str, str], body: bytes,
                 deadline: float) -> tuple[int, bytes]:
        """(status, answer bytes) of one request."""
        self.deadline = deadline
        if self.timed is not None:
            self.timed.deadline = deadline
        self.request("POST", "/", body, headers)
        response = self.getresponse()
        parts = []
        size = 0
        while True:
            part = response.read(READ_SIZE)
            if not part:
                break
            size += len(part)
            if size > MAX_ANSWER_BYTES:
                raise AnswerTooLarge("the answer is over %d bytes" % MAX_ANSWER_BYTES)
            parts.append(part)
        if response.length:  # http.client returns what came before the connection closed
            raise http.client.IncompleteRead(b"".join(parts), response.length)
        return response.status, b"".join(parts)

    def clean(self) -> bool:
        """Whether nothing waits to be read on the connection (a kept one has a socket):
        decrypted bytes in the TLS layer, or bytes on the socket."""
        sock = self.sock
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return False
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return not poller.poll(0)


def _send_by_deadline(sock: socket.socket, deadline: float, data: Any) -> None:
    """sendall, the timeout set to the time left before each send (an SSL socket's sendall
    applies its timeout to each send, not to the whole)."""
    view = memoryview(data).cast("B")
    while view:
        sock.settimeout(time_left(deadline))
        sent = sock.send(view)
        view = view[sent:]


class TimedSocket(socket.socket):
    """A socket whose every send and receive first sets its timeout to the time left before
    `deadline` (http.client reads through socket.makefile, which calls recv_into)."""

    deadline: float  # set by Connection.connect before any send or receive

    def recv_into(self, *args: Any, **options: Any) -> int:
        self.settimeout(time_left(self.deadline))
        return super().recv_into(*args, **options)

    def sendall(self, data: Any, *args: Any) -> None:
        _send_by_deadline(self, self.deadline, data)


class TimedTLSSocket(ssl.SSLSocket):
    """The same over TLS: the socket class of the TLS context."""

    deadline: float  # set by Connection.connect once the handshake is done

    def recv_into(self, *args: Any, **options: Any) -> int:
        self.settimeout(time_left(self.deadline))
        return super().recv_into(*args, **options)

    def sendall(self, data: Any, *args: Any) -> None:
        _send_by_deadline(self, self.deadline, data)
