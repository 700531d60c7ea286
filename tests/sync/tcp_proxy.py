"""A small fault-injecting TCP proxy on loopback, for sync tests: HubClient -> proxy -> LiveHub.

It forwards plain HTTP/1.1 (keep-alive, one request at a time per connection, as httpx sends it)
and understands just enough of it (request head, Content-Length or chunked body, response of the
same shape) to fault one chosen request at a chosen point. Faults, switchable at run time:

* pass-through: the default, and what ``clear()`` returns to.
* ``offline()`` / ``online()``: the network is gone. Open connections are reset and new ones are
  refused (``refuse=True``: nothing listens, so connect() gets ECONNREFUSED) or accepted and
  reset at once (``refuse=False``: a firewall or a load balancer with no backend).
* ``inject(Fault.DROP, after_bytes=N)``: forward the first N bytes of the request (never all of
  it), then reset both sides: the service sees a request cut short, the client a dead connection.
* ``inject(Fault.STALL)``: take the request and forward nothing, answer nothing, so the client's
  timeout fires. The connection is held until the client gives up (at most ``stall_limit``).
* ``inject(Fault.RESET_AFTER_REPLY)``: forward the whole request, read the service's whole
  response, then reset the client's connection without sending it: the service applied the
  request and the client never learns it.

``inject`` chooses which requests: ``match`` is a prefix of the request line (``"POST
/v1/changes "``), ``skip`` lets that many matching requests through first, ``times`` faults that
many (None: until ``clear()``). ``on_fault`` is called in the proxy's thread at the fault point,
before the client's connection is reset: after the first N bytes went up (DROP), when the stall
begins (STALL), after the service's reply came back (RESET_AFTER_REPLY). A test can stop the
service there, or take the network away. ``faults_done`` / ``wait_faults(n)`` count faults.

Bounded: it listens on 127.0.0.1 only and forwards to a loopback port only; at most
``max_connections`` at a time; every socket has a timeout; heads are capped at 64 KiB; a watchdog
stops it after ``max_lifetime`` seconds if a test forgot to. Threads are daemons and ``stop()``
joins them.

Sockets are closed only by the thread that serves them: another thread that wants a connection
gone marks it and shuts down its read side, which wakes the owner. (Closing a socket under a
thread blocked in select() on it delays the close, and the reset, until that select returns.)
"""

from __future__ import annotations

import enum
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Self

LOOPBACK = "127.0.0.1"
MAX_HEAD = 64 * 1024
CHUNK = 64 * 1024
TICK = 0.05  # how often idle threads look at the proxy's state


class Fault(enum.StrEnum):
    DROP = "drop"
    STALL = "stall"
    RESET_AFTER_REPLY = "reset_after_reply"


@dataclass
class Rule:
    fault: Fault
    match: str = ""
    skip: int = 0
    times: int | None = 1
    after_bytes: int = 0
    on_fault: Callable[[], None] | None = None
    seen: int = 0  # matching requests so far
    done: int = 0  # faults acted out so far

    def take(self, request_line: str) -> bool:
        """Whether this request is to be faulted (counts it either way). Caller holds the lock."""
        if not request_line.startswith(self.match):
            return False
        self.seen += 1
        if self.seen <= self.skip or (self.times is not None and self.done >= self.times):
            return False
        self.done += 1
        return True


class _Closed(Exception):
    """The peer closed, or the connection was killed: end it."""


@dataclass(eq=False)
class _Conn:
    client: socket.socket
    upstream: socket.socket | None = None
    buffered: bytes = b""  # client bytes read past the previous request (not expected from httpx)
    up_buffered: bytes = b""
    killed: bool = False  # set by another thread: reset and end
    thread: threading.Thread | None = field(default=None, repr=False)

    def kill(self) -> None:
        """From another thread: mark, and wake the owner out of select()/recv()."""
        self.killed = True
        for sock in (self.client, self.upstream):
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RD)
                except OSError:
                    pass


def _reset(sock: socket.socket | None) -> None:
    """Close with RST (SO_LINGER 0): the peer gets ECONNRESET, not a tidy end of stream."""
    if sock is None or sock.fileno() == -1:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def _close(sock: socket.socket | None) -> None:
    if sock is not None:
        sock.close()


class FaultProxy:
    """See the module docstring. Use as a context manager, or start() and stop()."""

    def __init__(
        self,
        upstream_port: int,
        *,
        upstream_host: str = LOOPBACK,
        port: int = 0,
        max_connections: int = 32,
        io_timeout: float = 45.0,
        stall_limit: float = 15.0,
        max_lifetime: float = 120.0,
    ) -> None:
        if upstream_host not in (LOOPBACK, "localhost"):
            raise ValueError("the fault proxy forwards to loopback only")
        self.upstream = (LOOPBACK, upstream_port)
        self.max_connections = max_connections
        self.io_timeout = io_timeout  # more than the service's 30 s long-poll
        self.stall_limit = stall_limit
        self.max_lifetime = max_lifetime
        self._port = port
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._conns: set[_Conn] = set()
        self._rules: list[Rule] = []
        self._offline = False
        self._refuse = False
        self._wanted = 0  # generation of the offline/online switch asked for ...
        self._applied = 0  # ... and the one the accept thread has put in place
        self._faults = 0
        self._stopping = threading.Event()
        self._accept_thread: threading.Thread | None = None
        self._listener: socket.socket | None = None  # owned by the accept thread once started
        self.requests: list[str] = []  # request lines seen (the last 1000)
        self.refused = 0  # connections reset at accept while offline
        self.errors: list[BaseException] = []  # unexpected errors in the proxy's threads

    # -- life cycle -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._port}"

    def start(self) -> Self:
        self._listener = self._listen()
        self._accept_thread = threading.Thread(target=self._accept_loop, name="fault-proxy", daemon=True)
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            conns = list(self._conns)
            self._changed.notify_all()
        for c in conns:
            c.kill()
        me = threading.current_thread()
        if self._accept_thread is not None and self._accept_thread is not me:
            self._accept_thread.join(timeout=5)
        for c in conns:
            if c.thread is not None and c.thread is not me:
                c.thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _listen(self) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((LOOPBACK, self._port))  # the same port again after offline(refuse=True)
        s.listen(64)
        s.settimeout(TICK)
        self._port = s.getsockname()[1]
        return s

    # -- switches ---------------------------------------------------------------------------

    def offline(self, *, refuse: bool = True) -> None:
        """The network is gone: reset open connections; refuse (or accept and reset) new ones.
        Returns once that is in place (connect() is refused from then on)."""
        with self._lock:
            self._offline, self._refuse = True, refuse
            self._wanted += 1
            wanted, conns = self._wanted, list(self._conns)
        for c in conns:
            c.kill()
        self._wait_applied(wanted)

    def online(self) -> None:
        with self._lock:
            if not self._offline:
                return
            self._offline = self._refuse = False
            self._wanted += 1
            wanted = self._wanted
        self._wait_applied(wanted)

    def _wait_applied(self, wanted: int, timeout: float = 5.0) -> None:
        if threading.current_thread() is self._accept_thread:
            return
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._applied < wanted and not self._stopping.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError("the fault proxy did not switch in time")
                self._changed.wait(left)

    def inject(
        self,
        fault: Fault,
        *,
        match: str = "",
        skip: int = 0,
        times: int | None = 1,
        after_bytes: int = 0,
        on_fault: Callable[[], None] | None = None,
    ) -> Rule:
        """Fault requests whose request line starts with ``match`` (after ``skip`` of them)."""
        rule = Rule(Fault(fault), match, skip, times, after_bytes, on_fault)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        """Back to pass-through: no rules, online; a stalled request is let go (reset)."""
        with self._lock:
            self._rules.clear()
            self._changed.notify_all()
        self.online()

    @property
    def faults_done(self) -> int:
        """Faults acted out since start (clear() does not reset it)."""
        with self._lock:
            return self._faults

    def wait_faults(self, n: int = 1, timeout: float = 10.0) -> bool:
        """Wait until ``n`` faults have started (with a deadline); False if they did not."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._faults < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    # -- accepting --------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        deadline = time.monotonic() + self.max_lifetime
        try:
            while not self._stopping.is_set():
                if time.monotonic() > deadline:  # a forgotten proxy stops itself
                    threading.Thread(target=self.stop, name="fault-proxy-stop", daemon=True).start()
                    return
                self._apply_switch()
                if self._listener is None:  # offline and refusing: nothing listens
                    self._stopping.wait(TICK)
                    continue
                try:
                    client, _addr = self._listener.accept()
                except TimeoutError:
                    continue
                with self._lock:
                    reject = self._offline or len(self._conns) >= self.max_connections or self._stopping.is_set()
                    if not reject:
                        conn = _Conn(client)
                        self._conns.add(conn)
                if reject:
                    self.refused += 1
                    _reset(client)
                    continue
                client.settimeout(self.io_timeout)
                conn.thread = threading.Thread(target=self._serve, args=(conn,), name="fault-proxy-conn", daemon=True)
                conn.thread.start()
        except Exception as exc:  # noqa: BLE001 - the test sees it in .errors
            self.errors.append(exc)
        finally:
            _close(self._listener)
            self._listener = None

    def _apply_switch(self) -> None:
        """Open or close the listening socket as offline()/online() asked (this thread owns it)."""
        with self._lock:
            wanted, listen = self._wanted, not (self._offline and self._refuse)
        if listen and self._listener is None:
            try:
                self._listener = self._listen()
            except OSError:  # the port is not free again yet: next round
                return
        elif not listen and self._listener is not None:
            _close(self._listener)
            self._listener = None
        with self._lock:
            self._applied = max(self._applied, wanted)
            self._changed.notify_all()

    # -- one connection -----------------------------------------------------------------------

    def _serve(self, conn: _Conn) -> None:
        tidy = True
        try:
            while not self._stopping.is_set():
                if not self._wait_for_request(conn):
                    break
                head, body = self._read_request(conn)
                line = head.split(b"\r\n", 1)[0].decode("latin-1")
                with self._lock:
                    self.requests.append(line)
                    del self.requests[:-1000]
                    rule = next((r for r in self._rules if r.take(line)), None)
                    self._faults += rule is not None
                    self._changed.notify_all()
                request = head + body
                if rule is None:
                    self._forward(conn, request)
                    if self._relay_response(conn):
                        continue
                    break  # the service said "Connection: close": close the client's too, tidily
                tidy = False
                if rule.fault is Fault.DROP:
                    cut = min(rule.after_bytes, len(request) - 1)  # never the whole request
                    if cut > 0:
                        self._forward(conn, request[:cut])
                    self._hook(rule)
                elif rule.fault is Fault.STALL:
                    self._hook(rule)
                    self._stall(conn, rule)
                else:  # RESET_AFTER_REPLY
                    self._forward(conn, request)
                    self._read_response(conn)  # the service answered; the client never hears it
                    self._hook(rule)
                break
        except (_Closed, OSError):
            tidy = False
        except Exception as exc:  # noqa: BLE001 - e.g. an on_fault hook that failed: the test sees it
            self.errors.append(exc)
            tidy = False
        finally:
            if tidy and not conn.killed:
                _close(conn.client)
                _close(conn.upstream)
            else:
                _reset(conn.client)
                _reset(conn.upstream)
            with self._lock:
                self._conns.discard(conn)

    @staticmethod
    def _hook(rule: Rule) -> None:
        if rule.on_fault is not None:
            rule.on_fault()

    def _wait_for_request(self, conn: _Conn) -> bool:
        """Idle between requests: True when the client sends; False when it (or the service) hangs up.

        A service that closes an idle keep-alive connection (it restarted, or its idle timeout)
        has the client's closed too, tidily, so the client opens a fresh one next time.
        """
        if conn.buffered:
            return True
        while not (self._stopping.is_set() or conn.killed):
            watch = [conn.client] + ([conn.upstream] if conn.upstream is not None else [])
            readable, _, _ = select.select(watch, [], [], TICK)
            if conn.killed:
                break
            if conn.upstream is not None and conn.upstream in readable:
                data = conn.upstream.recv(CHUNK)
                if not data:
                    return False
                conn.up_buffered += data  # unsolicited bytes (not expected): keep them in order
            if conn.client in readable:
                return True
        raise _Closed

    def _recv(self, conn: _Conn, sock: socket.socket) -> bytes:
        try:
            data = sock.recv(CHUNK)
        except TimeoutError:
            raise _Closed from None
        if not data or conn.killed or self._stopping.is_set():
            raise _Closed
        return data

    def _read_head(self, conn: _Conn, sock: socket.socket, buffered: bytes) -> tuple[bytes, bytes]:
        buf = buffered
        while b"\r\n\r\n" not in buf:
            if len(buf) > MAX_HEAD:
                raise _Closed
            buf += self._recv(conn, sock)
        end = buf.index(b"\r\n\r\n") + 4
        return buf[:end], buf[end:]

    def _read_body(
        self, conn: _Conn, sock: socket.socket, head: bytes, rest: bytes, *, response: bool
    ) -> tuple[bytes, bytes]:
        """The body after ``head`` (``rest``: bytes already read past it); returns (body, leftover)."""
        headers = {}
        for raw in head.split(b"\r\n")[1:]:
            name, _, value = raw.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
        if response:
            status = int(head.split(b" ", 2)[1])
            if status in (204, 304) or 100 <= status < 200:
                return b"", rest
        if headers.get(b"transfer-encoding", b"").endswith(b"chunked"):
            return self._read_chunked(conn, sock, rest)
        if b"content-length" in headers:
            length = int(headers[b"content-length"])
            body = rest
            while len(body) < length:
                body += self._recv(conn, sock)
            return body[:length], body[length:]
        if not response:
            return b"", rest
        body = rest  # a response without a length ends with the stream
        try:
            while True:
                body += self._recv(conn, sock)
        except _Closed:
            return body, b""

    def _read_chunked(self, conn: _Conn, sock: socket.socket, rest: bytes) -> tuple[bytes, bytes]:
        buf, pos = rest, 0
        while True:
            while b"\r\n" not in buf[pos:]:
                buf += self._recv(conn, sock)
            eol = buf.index(b"\r\n", pos)
            size = int(buf[pos:eol].split(b";")[0], 16)
            if size == 0:  # the last chunk; then trailers, up to an empty line
                while b"\r\n\r\n" not in buf[eol:]:
                    buf += self._recv(conn, sock)
                end = buf.index(b"\r\n\r\n", eol) + 4
                return buf[:end], buf[end:]
            pos = eol + 2 + size + 2
            while len(buf) < pos:
                buf += self._recv(conn, sock)

    def _read_request(self, conn: _Conn) -> tuple[bytes, bytes]:
        head, rest = self._read_head(conn, conn.client, conn.buffered)
        body, conn.buffered = self._read_body(conn, conn.client, head, rest, response=False)
        return head, body

    def _read_response(self, conn: _Conn) -> bytes:
        assert conn.upstream is not None
        head, rest = self._read_head(conn, conn.upstream, conn.up_buffered)
        body, conn.up_buffered = self._read_body(conn, conn.upstream, head, rest, response=True)
        return head + body

    def _forward(self, conn: _Conn, data: bytes) -> None:
        if conn.upstream is None:
            try:
                conn.upstream = socket.create_connection(self.upstream, timeout=self.io_timeout)
            except OSError:  # the service is down: the client sees its connection die
                raise _Closed from None
        if conn.killed:
            raise _Closed
        conn.upstream.sendall(data)

    def _relay_response(self, conn: _Conn) -> bool:
        """Pass the service's response on; False when the service closes the connection after it."""
        response = self._read_response(conn)
        if conn.killed:
            raise _Closed
        conn.client.sendall(response)
        head = response[: response.find(b"\r\n\r\n")].lower()
        return not any(line.replace(b" ", b"") == b"connection:close" for line in head.split(b"\r\n"))

    def _stall(self, conn: _Conn, rule: Rule) -> None:
        """Answer nothing until the client gives up, the rule is cleared, the connection is killed,
        the proxy stops, or ``stall_limit`` passes (then the caller resets the connection)."""
        deadline = time.monotonic() + self.stall_limit
        while not (self._stopping.is_set() or conn.killed) and time.monotonic() < deadline:
            with self._lock:
                if rule not in self._rules:
                    return
            readable, _, _ = select.select([conn.client], [], [], TICK)
            if readable and not conn.client.recv(CHUNK):
                return  # the client timed out and closed
