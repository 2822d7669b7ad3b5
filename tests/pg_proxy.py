"""A TCP proxy in front of PostgreSQL that a test can take down and bring back: a database outage without touching
the shared server (other runs use it: it is never stopped or restarted).

    with PgProxy("127.0.0.1", 5432) as proxy:
        url = proxy.url_for(database_url)   # the same database, reached through the proxy
        proxy.down()                        # every open connection is cut (RST), new ones are refused
        proxy.up()                          # new connections get through again (same port)

Threads only: one accept loop, two pumps per connection.
"""

from __future__ import annotations

import socket
import struct
import threading
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit


def _reset(sock: socket.socket) -> None:
    """Close `sock` with a RST (SO_LINGER 0), as a crashed server or a cut cable would leave it."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes the pump blocked in recv() (a close from this thread would not)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class PgProxy:
    """Forwards 127.0.0.1:<port> to `target_host`:`target_port` while up; cuts and refuses everything while down."""

    def __init__(self, target_host: str = "127.0.0.1", target_port: int = 5432) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self.accepted = 0  # connections forwarded since start (to see that clients reconnected)

    # -- life cycle -------------------------------------------------------------------------------------------

    def start(self) -> PgProxy:
        self._listen()
        return self

    def close(self) -> None:
        self.down()

    def __enter__(self) -> PgProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def is_up(self) -> bool:
        return self._listener is not None

    def url_for(self, database_url: str) -> str:
        """`database_url` with its host and port replaced by the proxy's."""
        parts = urlsplit(database_url)
        userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        return urlunsplit(parts._replace(netloc=f"{userinfo}127.0.0.1:{self.port}"))

    def down(self) -> None:
        """The outage: stop listening (new connections are refused) and reset every open one."""
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, set()
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=5)
            self._accept_thread = None
        for sock in conns:
            _reset(sock)

    def up(self) -> None:
        """The database is back: listen again on the same port."""
        if self._listener is None:
            self._listen()

    # -- internals --------------------------------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        with self._lock:
            self._listener = listener
        self._accept_thread = threading.Thread(target=self._accept_loop, args=(listener,), name="pg-proxy", daemon=True)
        self._accept_thread.start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed: down()
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                if self._listener is not listener:  # went down while connecting
                    _reset(client)
                    _reset(upstream)
                    return
                self._conns.update((client, upstream))
                self.accepted += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), name="pg-proxy-pump", daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            # One side finished or failed: end the pair (a later down() finds them gone).
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                try:
                    sock.close()
                except OSError:
                    pass
