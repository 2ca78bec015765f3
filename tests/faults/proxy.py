"""A TCP proxy on loopback between the app processes and a server (PostgreSQL, Redis), that
a test can cut: every current connection is closed at once, and new ones are refused or left
hanging until `restore()`.

Threads and blocking sockets, stdlib only: two pump threads per connection are plenty for
the few dozen connections a test stack opens.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum

ACCEPT_POLL_SECONDS = 0.1
UPSTREAM_CONNECT_TIMEOUT = 5.0


class Mode(Enum):
    FORWARD = "forward"
    REFUSE = "refuse"  # accept and reset at once: a server that is down
    HANG = "hang"  # accept and never answer: a host that stopped responding


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(ACCEPT_POLL_SECONDS)
        self.port: int = self._listener.getsockname()[1]
        self._mode = Mode.FORWARD
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()  # both ends of every forwarded connection
        self._held: list[socket.socket] = []  # accepted while hanging
        self._stopped = threading.Event()
        self.accepted = 0
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        """Forwarded connections open right now."""
        with self._lock:
            return len(self._open) // 2

    def cut(self, *, hang: bool = False) -> None:
        """Close every connection; refuse new ones (`hang`: accept them, answer nothing)."""
        with self._lock:
            self._mode = Mode.HANG if hang else Mode.REFUSE
            victims = list(self._open)
            self._open.clear()
        for sock in victims:
            _close(sock)

    def restore(self) -> None:
        """Forward again; connections left hanging are closed (their clients gave up)."""
        with self._lock:
            self._mode = Mode.FORWARD
            held, self._held = self._held, []
        for sock in held:
            _close(sock)

    def close(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        self._listener.close()
        self.cut()
        self.restore()

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            with self._lock:
                mode = self._mode
                if mode is Mode.HANG:
                    self._held.append(client)
            if mode is Mode.REFUSE:
                _reset(client)
            elif mode is Mode.FORWARD:
                threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.upstream, timeout=UPSTREAM_CONNECT_TIMEOUT)
        except OSError:
            _reset(client)
            return
        server.settimeout(None)
        with self._lock:
            if self._mode is not Mode.FORWARD:  # cut while we were connecting
                _reset(client)
                _close(server)
                return
            self._open.update((client, server))
        for source, sink in ((client, server), (server, client)):
            threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        with self._lock:
            self._open.discard(source)
            self._open.discard(sink)
        _close(source)
        _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)  # wakes a pump thread blocked in recv()
    sock.close()


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST, as a port nobody listens on answers."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@contextmanager
def proxy_to(host: str, port: int) -> Iterator[TcpProxy]:
    proxy = TcpProxy(host, port)
    try:
        yield proxy
    finally:
        proxy.close()
