"""One thread drives the MQTT sockets of every simulated device, with paho's external-loop API
(loop_read / loop_write / loop_misc and the socket callbacks) instead of a loop_start() thread per client.

It does what paho's own loop does, for all clients at once:

- read when the broker sent something; write when paho has packets queued. publish() from any thread
  only queues (a client with a register-write callback never writes from the caller's thread): the
  callback wakes this loop, which alone writes to the sockets, as paho's own thread would.
- loop_misc every `misc_interval_s` (keepalive pings; a broker that stopped answering closes the socket).
- reconnect with backoff: `min_delay_s` doubling to `max_delay_s` (what edgefleet.session sets for paho),
  spread by ±20 % so a fleet does not reconnect in lockstep after a broker restart. The TCP connect
  blocks, so it runs on the `connect` pool, never on this thread.

paho calls the client's callbacks (on_connect, on_message, on_publish...) on this thread: they must be
quick and never block on anything a device's own work may hold (AgentLink's callbacks only enqueue).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import selectors
import socket
import threading
import time
from typing import Any, Callable

from agent.simulate.scheduler import Pool

log = logging.getLogger(__name__)

READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


class _Conn:
    """One client as the loop sees it. Touched by the loop thread, except the flags noted."""

    __slots__ = ("client", "sock", "events", "wanted", "connecting", "retry_pending", "delay", "on_connect_fail")

    def __init__(self, client: Any, delay: float, on_connect_fail: Callable[[BaseException], None] | None) -> None:
        self.client = client
        self.sock: Any = None          # the socket registered in the selector (may be closed by paho since)
        self.events = 0
        self.wanted = True             # False after close(): never reconnect (any thread sets it)
        self.connecting = False        # a connect runs on the connect pool (set/cleared around it)
        self.retry_pending = False
        self.delay = delay
        self.on_connect_fail = on_connect_fail


class NetworkLoop:
    def __init__(
        self,
        connect_pool: Pool,
        *,
        misc_interval_s: float = 0.5,
        min_delay_s: float = 1.0,
        max_delay_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        """`misc_interval_s`: keep it under a quarter of the shortest keepalive (pings go out late by up to it)."""
        self._connect_pool = connect_pool
        self.misc_interval_s = misc_interval_s
        self.min_delay_s = min_delay_s
        self.max_delay_s = max_delay_s
        self._clock = clock
        self._rng = rng or random.Random()
        self._selector = selectors.DefaultSelector()
        self._bell_r, self._bell_w = socket.socketpair()
        self._bell_r.setblocking(False)
        self._bell_w.setblocking(False)
        self._selector.register(self._bell_r, READ, None)
        self._lock = threading.Lock()
        self._conns: dict[int, _Conn] = {}
        self._dirty: set[_Conn] = set()
        self._woken = False
        self._retries: list[tuple[float, int, _Conn]] = []
        self._seq = itertools.count()
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sim-network", daemon=True)

    # -- clients ------------------------------------------------------------------------------

    def add(self, client: Any, *, on_connect_fail: Callable[[BaseException], None] | None = None) -> None:
        """Drive `client` (connect_async() already called on it) from now on: connect, then keep it connected."""
        conn = _Conn(client, self.min_delay_s, on_connect_fail)
        client.on_socket_open = lambda c, u, s: self._mark(conn)
        client.on_socket_close = lambda c, u, s: self._mark(conn)
        client.on_socket_register_write = lambda c, u, s: self._mark(conn)
        with self._lock:
            self._conns[id(client)] = conn
        self._begin_connect(conn)

    def close(self, client: Any) -> None:
        """Never reconnect `client` again; call before client.disconnect() (the loop still sends DISCONNECT)."""
        conn = self._conns.get(id(client))
        if conn is not None:
            conn.wanted = False

    def connected_count(self) -> int:
        return sum(1 for conn in list(self._conns.values()) if conn.client.is_connected())

    def open_count(self) -> int:
        """Clients with a socket open (connected, connecting, or still sending their DISCONNECT)."""
        return sum(1 for conn in list(self._conns.values()) if conn.client.socket() is not None)

    def wait_closed(self, timeout_s: float) -> bool:
        """Until every socket is closed (after close() + disconnect() on each client); False on timeout."""
        deadline = self._clock() + timeout_s
        with self._changed:
            while self.open_count():
                left = deadline - self._clock()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.2))
        return True

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._ring()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self._selector.close()
        self._bell_r.close()
        self._bell_w.close()

    # -- from any thread ----------------------------------------------------------------------

    def _mark(self, conn: _Conn) -> None:
        """Something changed for `conn` (socket opened or closed, packets queued): the loop looks at it."""
        with self._lock:
            self._dirty.add(conn)
            if self._woken:
                return
            self._woken = True
        self._ring()

    def _ring(self) -> None:
        try:
            self._bell_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # the pipe is full (a wake-up is pending anyway) or closed at stop

    def _begin_connect(self, conn: _Conn) -> None:
        conn.connecting = True
        self._connect_pool.post(lambda: self._connect(conn))

    def _connect(self, conn: _Conn) -> None:
        """On the connect pool: paho's reconnect() (TCP connect, then CONNECT is queued for the loop)."""
        try:
            if conn.wanted and not self._stop.is_set():
                conn.client.reconnect()
        except Exception as exc:  # noqa: BLE001 - OSError mostly; anything else is retried the same way
            if conn.on_connect_fail is not None:
                try:
                    conn.on_connect_fail(exc)
                except Exception:  # noqa: BLE001
                    log.exception("connect-failure callback failed")
        finally:
            conn.connecting = False
            self._mark(conn)

    # -- the loop thread ----------------------------------------------------------------------

    def _run(self) -> None:
        next_misc = self._clock() + self.misc_interval_s
        while not self._stop.is_set():
            due = min(next_misc, self._retries[0][0]) if self._retries else next_misc
            try:
                events = self._selector.select(max(0.0, due - self._clock()))
            except OSError:
                log.exception("select failed; continuing")
                events = []
            touched: set[_Conn] = set()
            for key, mask in events:
                conn = key.data
                if conn is None:
                    self._drain_bell()
                    continue
                touched.add(conn)
                if key.fileobj is not conn.client.socket():
                    continue  # a socket paho closed since: _sync drops it
                self._guard(self._io, conn, mask)
            with self._lock:
                dirty, self._dirty, self._woken = self._dirty, set(), False
            for conn in touched | dirty:
                self._guard(self._flush, conn)
            now = self._clock()
            if now >= next_misc:
                next_misc = now + self.misc_interval_s
                for conn in list(self._conns.values()):
                    if conn.sock is not None and not conn.connecting:
                        self._guard(self._misc, conn)
            while self._retries and self._retries[0][0] <= now:
                _, _, conn = heapq.heappop(self._retries)
                conn.retry_pending = False
                if conn.wanted and not conn.connecting and conn.client.socket() is None:
                    self._begin_connect(conn)
            with self._changed:
                self._changed.notify_all()

    @staticmethod
    def _guard(fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - one client's failure must not stop every device's network
            log.exception("network loop: %s failed", fn.__name__)

    def _drain_bell(self) -> None:
        try:
            while self._bell_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _io(self, conn: _Conn, mask: int) -> None:
        client = conn.client
        if mask & READ:
            client.loop_read()  # on a lost connection paho closes the socket and calls on_disconnect
            sock = client.socket()
            while sock is not None and getattr(sock, "pending", lambda: 0)() > 0:  # TLS: bytes select() cannot see
                client.loop_read()
                sock = client.socket()
        if mask & WRITE and client.socket() is not None:
            client.loop_write()

    def _flush(self, conn: _Conn) -> None:
        client = conn.client
        if client.socket() is not None and client.want_write():
            client.loop_write()
        self._sync(conn)

    def _misc(self, conn: _Conn) -> None:
        conn.client.loop_misc()
        self._flush(conn)  # a ping queued, or the socket closed for a broker that stopped answering

    def _sync(self, conn: _Conn) -> None:
        """Make the selector match the client's socket; schedule a reconnect when it has none."""
        client = conn.client
        sock = client.socket()
        if sock is not conn.sock:
            if conn.sock is not None:
                self._unregister(conn.sock)
                conn.sock, conn.events = None, 0
            if sock is not None:
                self._register(sock, conn)
        if sock is None or conn.sock is None:
            if conn.wanted and not conn.connecting and not conn.retry_pending and not self._stop.is_set():
                self._schedule_retry(conn)
            return
        want = READ | (WRITE if client.want_write() else 0)
        if want != conn.events:
            self._selector.modify(sock, want, conn)
            conn.events = want
        if client.is_connected():
            conn.delay = self.min_delay_s  # the next outage starts again from the short delay

    def _register(self, sock: Any, conn: _Conn) -> None:
        try:
            self._selector.register(sock, READ, conn)
        except KeyError:
            # The fd number still belongs to a socket paho closed before its client was synced.
            stale = self._selector.get_key(sock)
            self._unregister(stale.fileobj)
            if isinstance(stale.data, _Conn) and stale.data.sock is stale.fileobj:
                stale.data.sock, stale.data.events = None, 0
                self._mark(stale.data)
            self._selector.register(sock, READ, conn)
        except (ValueError, OSError):
            return  # closed again already; the next sync sees it
        conn.sock, conn.events = sock, READ

    def _unregister(self, sock: Any) -> None:
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError, OSError):
            pass

    def _schedule_retry(self, conn: _Conn) -> None:
        delay = conn.delay * (0.8 + 0.4 * self._rng.random())
        conn.delay = min(conn.delay * 2, self.max_delay_s)
        conn.retry_pending = True
        heapq.heappush(self._retries, (self._clock() + delay, next(self._seq), conn))
