"""Loopback helpers for the local tools, the tests and the benchmark."""
import contextlib
import socket
import time


def free_port():
    """A TCP port on 127.0.0.1 that nothing is listening on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, process, timeout=30):
    """True once 127.0.0.1:port accepts; False if `process` exits or time runs out first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        time.sleep(0.05)
    return False
