"""What the local venue servers (Alpaca-compatible, OANDA-v20-compatible) share: the HTTP server's
lifecycle, the request log and fault injection. Each server adds its own routes and fault kinds.

Fault kinds every server understands: ``latency`` (wait ``seconds``, then answer), ``drop`` (close
the connection without a response), ``timeout_after_accept`` (act on the request, then never
answer), and any HTTP status such as ``"429"`` (answer it without acting). ``route`` is
``"METHOD /path"`` with ``fnmatch`` wildcards, or ``"*"``.
"""
from __future__ import annotations

import fnmatch
import re
import socket
import threading
from collections import namedtuple
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

RequestRecord = namedtuple("RequestRecord", "method path status")  # status None: no response was sent
STATUS_KIND = re.compile(r"^[45]\d\d$")
_ROUTE = re.compile(r"^(GET|POST|PUT|PATCH|DELETE|\*) /")


class Drop(Exception):
    """Close the connection without a response."""


@dataclass
class Fault:
    route: str
    kind: str
    times: int | None
    seconds: float
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.fired >= self.times:
            return False
        return self.route == "*" or fnmatch.fnmatchcase(f"{method} {path}", self.route)


class LocalVenueServer:
    """Subclasses set ``handler`` (their request handler class), ``fault_kinds``, ``thread_name`` and
    ``route_example``, and call ``__init__`` with the bind address."""

    handler: ClassVar[type[BaseHTTPRequestHandler]]
    fault_kinds: ClassVar[tuple[str, ...]]
    thread_name: ClassVar[str] = "local-venue"
    route_example: ClassVar[str] = "POST /orders"

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.requests: list[RequestRecord] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._sockets: list[socket.socket] = []  # kept-alive connections (servers speaking HTTP/1.1)
        self._host, self._port = host, port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the server is not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self):
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = ThreadingHTTPServer((self._host, self._port), self.handler)
        httpd.daemon_threads = True
        httpd.block_on_close = False
        httpd.app = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stopping.set()  # wakes handlers waiting in latency / timeout_after_accept
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            for sock in self._sockets:  # kept-alive connections would otherwise outlive the server
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._sockets.clear()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd, self._thread = None, None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults

    def inject(self, route: str, kind: str, times: int | None = 1, seconds: float = 0.0) -> None:
        kind = str(kind)
        if kind not in self.fault_kinds and not STATUS_KIND.match(kind):
            raise ValueError(f"kind must be one of {self.fault_kinds} or an HTTP status such as '429', got {kind!r}")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1, or None for every matching request")
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        if route != "*" and not _ROUTE.match(route):
            raise ValueError(f"route must look like '{self.route_example}' or be '*', got {route!r}")
        with self._lock:
            self._faults.append(Fault(route, kind, times, seconds))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    # -- plumbing (used by the handlers)

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.fired += 1
                    return fault
        return None

    def _record(self, method: str, path: str, status: int | None) -> None:
        with self._lock:
            self.requests.append(RequestRecord(method, path, status))

    def _wait(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    def _track(self, connection: socket.socket) -> None:
        with self._lock:
            self._sockets.append(connection)
