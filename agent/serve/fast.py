"""The fast local transport: the Inference API as length-prefixed protobuf frames on a plain unix socket.

A gRPC call over a unix socket costs about 500 µs on a small board before the model runs; a frame on
a plain socket about 20 µs. Apps in a hot loop use this socket (agent.client.LocalClient does by
itself); gRPC on the other socket stays the API for everything else. Both call the same servicer
(agent.serve.servicer), so they share the waiting line, Feedback's memory of recent predictions,
telemetry and Health.

Frames (agent.client defines them; docs/protocol.md, "Local inference API"):

    request  u32 LE body length | u8 method | body: the protobuf request
    reply    u32 LE body length | u8 status | body: the protobuf response (status 0) or a UTF-8 message
    methods  1 Predict, 2 Feedback, 3 Health, 4 DescribeModel, 5 ListModels, 6 RegisterRegion,
             7 UnregisterRegion
    status   gRPC's code numbers (3 INVALID_ARGUMENT, 8 RESOURCE_EXHAUSTED, ...), same messages as gRPC

Shared memory (agent.serve.regions): a RegisterRegion frame carries a sealed memfd on its first byte
(SCM_RIGHTS); the connection's later Predicts may name slices of it instead of carrying tensor bytes.
Headers are read with recvmsg to take the descriptors; one that came with anything but a
RegisterRegion is closed when its frame is answered, so none accumulate. Regions end with their
connection.

A connection is served by a thread of its own, in order; at most `max_connections` at once, and one
more is told RESOURCE_EXHAUSTED and closed. A body longer than `max_request_bytes` is refused from its
header (never read) and the connection closed, as is one that stops halfway for `io_timeout_s`.
Unknown methods and unparsable bodies get an error reply and the connection stays usable. Nothing a
client sends ends the server: a connection's failure closes that connection only.

The socket file gets the gRPC socket's treatment (agent.serve.server): mode 0660, the optional group,
a stale file from a dead agent replaced, a live one or a non-socket refused.

Spinning: after a reply, a connection's thread polls for the next request for up to `spin_s` (200 µs)
before sleeping on it, only while the client's previous request came within that time (a hot loop).
A sleeping thread costs a wake-up and cold caches per request; a spin costs CPU, bounded per reply,
and none once requests are further apart or stop (docs/protocol.md, "Spinning").
"""

from __future__ import annotations

import array
import grp
import logging
import os
import socket
import stat
import struct
import threading
import time
from pathlib import Path
from typing import Any, Callable

from google.protobuf.message import DecodeError

from agent.client import FRAME, Method, Status
from agent.serve.prepared import MAX_PLAN_BODY, Plan
from agent.serve.regions import DEFAULT_MAX_REGION_BYTES, DEFAULT_MAX_REGIONS, RegionError, Regions
from agent.serve.server import DEFAULT_MAX_REQUEST_BYTES, SOCKET_MODE, SocketInUse, prepare_socket_path
from agent.serve.servicer import ApiError, InferenceServicer
from edgefleet.v1 import inference_pb2

log = logging.getLogger(__name__)

DEFAULT_MAX_CONNECTIONS = 16
DEFAULT_IO_TIMEOUT_S = 30.0
DEFAULT_SPIN_S = 0.0002  # bench/agent.py, "spinning"
MAX_SPIN_S = 0.01  # a bound on the CPU a reply may cost while waiting for the next request
_RECEIVE_BUFFER = 65536  # per connection, to start with
_KEEP_BELOW = 1 << 20    # a connection's buffer grows to fit frames up to this size (a 224×224 float image)
_MAX_FDS = 4             # descriptors taken per receive (more are closed by the kernel: MSG_CTRUNC)
_ANCILLARY = socket.CMSG_SPACE(_MAX_FDS * array.array("i").itemsize)


class _Truncated(Exception):
    pass


class _Link:
    """What one connection holds besides its bytes: its shared-memory regions and the descriptors that
    came with the frames being read."""

    def __init__(self, regions: Regions) -> None:
        self.regions = regions
        self.fds: list[int] = []
        self.replied_at = 0.0   # perf_counter when the last reply went out
        self.quick = False      # the last request came within the spin time of the reply before it
        self.last_predict = b""  # the last Predict body (small ones): a repeat of it gets a plan
        self.no_plan = False     # ... unless prepare() said it cannot have one
        self.plan: Plan | None = None

    def forget_plan(self) -> None:
        """Before the regions change: the plan's arrays are views of them."""
        self.plan = None
        self.last_predict, self.no_plan = b"", False

    def take(self, ancillary: list[tuple[int, int, bytes]]) -> None:
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
                self.fds.extend(fds)

    def drop_fds(self) -> None:
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds.clear()

    def close(self) -> None:
        self.forget_plan()
        self.drop_fds()
        self.regions.close()


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1e6))


class FastServer:
    def __init__(
        self,
        socket_path: Path | str,
        servicer: InferenceServicer,
        *,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        io_timeout_s: float = DEFAULT_IO_TIMEOUT_S,
        group: str | None = None,
        max_regions: int = DEFAULT_MAX_REGIONS,
        max_region_bytes: int = DEFAULT_MAX_REGION_BYTES,
        spin_s: float = DEFAULT_SPIN_S,
    ) -> None:
        """`servicer`: the gRPC server's (InferenceServer.servicer), so both transports share its state.
        `max_regions`, `max_region_bytes`: shared-memory regions per connection and bytes per region.
        `spin_s`: after a reply, poll the connection up to this long for the next request before sleeping
        on it, when the request before came within that time (a client in a hot loop); 0: never."""
        if not 0 <= spin_s <= MAX_SPIN_S:
            raise ValueError(f"spin_s must be between 0 and {MAX_SPIN_S} s, got {spin_s}")
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        if io_timeout_s <= 0:
            raise ValueError(f"io_timeout_s must be above 0, got {io_timeout_s}")
        self.socket_path = Path(socket_path)
        self.servicer = servicer
        self.max_request_bytes = max_request_bytes
        self.max_connections = max_connections
        self.io_timeout_s = io_timeout_s
        self.group = group
        Regions(max_regions=max_regions, max_bytes=max_region_bytes)  # checks the limits now, not per connection
        self.max_regions = max_regions
        self.max_region_bytes = max_region_bytes
        self.spin_s = spin_s
        self.refused = 0  # connections turned away at the bound, since start
        self.planned = 0  # Predicts answered through a plan (agent.serve.prepared), since start
        # method -> (request type's parser, the function answering it on a connection, the request's name)
        self._methods: dict[int, tuple[Callable[[Any], Any], Callable[[Any, _Link], Any], str]] = {
            Method.PREDICT: (inference_pb2.PredictRequest.FromString, lambda r, link: servicer.predict(r, link.regions),
                             "PredictRequest"),
            Method.FEEDBACK: (inference_pb2.FeedbackRequest.FromString, lambda r, link: servicer.feedback(r), "FeedbackRequest"),
            Method.HEALTH: (inference_pb2.HealthRequest.FromString, lambda r, link: servicer.health(r), "HealthRequest"),
            Method.DESCRIBE_MODEL: (inference_pb2.DescribeModelRequest.FromString, lambda r, link: servicer.describe(r),
                                    "DescribeModelRequest"),
            Method.LIST_MODELS: (inference_pb2.ListLocalModelsRequest.FromString, lambda r, link: servicer.list_models(r),
                                 "ListLocalModelsRequest"),
            Method.REGISTER_REGION: (inference_pb2.RegisterRegionRequest.FromString, _register, "RegisterRegionRequest"),
            Method.UNREGISTER_REGION: (inference_pb2.UnregisterRegionRequest.FromString, _unregister,
                                       "UnregisterRegionRequest"),
        }
        self._known = ", ".join(f"{int(m)} {m.name}" for m in Method)
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._stopping = False

    @property
    def connections(self) -> int:
        """Connections open now."""
        with self._lock:
            return len(self._connections)

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        prepare_socket_path(self.socket_path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.socket_path))
            os.chmod(self.socket_path, SOCKET_MODE)
            listener.listen(max(16, self.max_connections))
        except OSError as exc:
            listener.close()
            raise SocketInUse(f"cannot listen on {self.socket_path}: {exc.strerror or exc}") from None
        if self.group:
            try:
                os.chown(self.socket_path, -1, grp.getgrnam(self.group).gr_gid)
            except (KeyError, PermissionError) as exc:
                log.warning("cannot give inference socket %s to group %s: %s", self.socket_path, self.group, exc)
        self._stopping = False
        self._listener = listener
        self._acceptor = threading.Thread(target=self._accept, name="fast-accept", daemon=True)
        self._acceptor.start()
        log.info("fast inference socket on %s (mode %o, at most %d connections)", self.socket_path, SOCKET_MODE,
                 self.max_connections)

    def stop(self, grace_s: float = 2.0) -> None:
        """Stop accepting, let requests in progress finish for up to `grace_s`, close every connection,
        and remove the socket file."""
        if self._listener is None:
            return
        self._stopping = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        except OSError:
            pass
        self._listener.close()
        if self._acceptor is not None:
            self._acceptor.join(5)
        self._listener = None
        try:
            if stat.S_ISSOCK(self.socket_path.lstat().st_mode):
                self.socket_path.unlink()
        except FileNotFoundError:
            pass
        with self._lock:
            connections = dict(self._connections)
        # No more reading: idle connections end now; one handling a request still sends its reply.
        for conn in connections:
            _shutdown(conn, socket.SHUT_RD)
        deadline = time.monotonic() + grace_s
        for conn, thread in connections.items():
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                _shutdown(conn, socket.SHUT_RDWR)
                thread.join(1)

    # -- connections --------------------------------------------------------------------------

    def _accept(self) -> None:
        listener = self._listener
        assert listener is not None
        pause = threading.Event()  # never set: its wait is a bounded back-off
        while not self._stopping:
            try:
                conn, _ = listener.accept()
            except OSError as exc:
                if self._stopping:
                    return
                log.warning("fast inference socket: accept failed: %s", exc)  # e.g. out of file descriptors
                pause.wait(0.1)
                continue
            if self._stopping:
                conn.close()
                return
            self._admit(conn)

    def _admit(self, conn: socket.socket) -> None:
        thread = threading.Thread(target=self._serve, args=(conn,), name="fast-inference", daemon=True)
        with self._lock:
            full = len(self._connections) >= self.max_connections
            if not full:
                self._connections[conn] = thread
        if full:
            self.refused += 1
            self._refuse(conn, f"the agent already serves {self.max_connections} connections on this socket, its limit; "
                               "close idle ones or retry later")
            return
        try:
            thread.start()
        except RuntimeError as exc:  # the system cannot start another thread
            with self._lock:
                self._connections.pop(conn, None)
            self._refuse(conn, f"the agent cannot take another connection now: {exc}")

    def _refuse(self, conn: socket.socket, message: str) -> None:
        try:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(1.0))
            _reply(conn, Status.RESOURCE_EXHAUSTED, message.encode())
        except OSError:
            pass
        finally:
            conn.close()

    def _serve(self, conn: socket.socket) -> None:
        link = _Link(Regions(max_regions=self.max_regions, max_bytes=self.max_region_bytes))
        try:
            # Kernel timeouts rather than Python's: a blocking socket costs no extra poll() per call.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(self.io_timeout_s))
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(self.io_timeout_s))
            # Frames are received into one buffer per connection, kept between frames (a hot loop sends
            # the same size every time) and grown to the largest frame up to _KEEP_BELOW; larger ones
            # get a buffer of their own. A small frame arrives whole in one receive; bytes beyond it (a
            # client may send its next frames before reading replies) start the next frame.
            buffer = bytearray(_RECEIVE_BUFFER)
            view = memoryview(buffer)
            have = 0
            while not self._stopping:
                got = self._fill(conn, view, have, FRAME.size, header=True, link=link)
                if got is None:
                    return  # the client closed the connection between frames
                length, method = FRAME.unpack_from(buffer)
                if length > self.max_request_bytes:
                    # gRPC's own words for the same case; the body stays unread, so the stream is lost.
                    _reply(conn, Status.RESOURCE_EXHAUSTED,
                           f"Received message larger than max ({length} vs. {self.max_request_bytes})".encode())
                    return
                end = FRAME.size + length
                if end > len(buffer) and end <= _KEEP_BELOW:
                    grown = bytearray(end)
                    grown[:got] = view[:got]
                    buffer, view = grown, memoryview(grown)
                if end <= len(buffer):
                    got = self._fill(conn, view, got, end, header=False)
                    body: bytearray | memoryview = view[FRAME.size:end]
                else:
                    body = bytearray(length)
                    body[:got - FRAME.size] = view[FRAME.size:got]
                    self._fill(conn, memoryview(body), got - FRAME.size, length, header=False, counted_from=FRAME.size)
                    end = got
                status, payload = self._dispatch(method, body, link)  # parses the body before the buffer is reused
                body = b""  # no view of the buffer outlives the frame
                if link.fds and got == end:  # nothing more is buffered: these came with no RegisterRegion
                    link.drop_fds()
                _reply(conn, status, payload)
                link.replied_at = time.perf_counter()
                have = got - end
                if have:
                    buffer[:have] = buffer[end:got]
        except _Truncated as exc:
            try:
                _reply(conn, Status.INVALID_ARGUMENT, str(exc).encode())
            except OSError:
                pass
        except OSError as exc:  # the client went away, or stopped reading its replies
            log.debug("fast inference connection closed: %s", exc)
        except Exception:  # noqa: BLE001 - one connection's failure must not reach the server
            log.exception("fast inference connection failed")
        finally:
            link.close()
            with self._lock:
                self._connections.pop(conn, None)
            conn.close()

    def _fill(self, conn: socket.socket, view: memoryview, have: int, need: int, *, header: bool,
              counted_from: int = 0, link: _Link | None = None) -> int | None:
        """Receive into `view` until it holds at least `need` bytes (it holds `have`); returns how many
        it holds, None on a clean end of stream between frames. Raises _Truncated when the stream
        ends, or stalls for io_timeout_s, in the middle of a frame (`counted_from`: bytes of the frame
        before `view`, for the message)."""
        while have < need:
            try:
                if header:  # whatever is there: a small frame, or more, comes in one receive
                    # recvmsg: a RegisterRegion's memfd rides on its first byte, which is always read here
                    # (a body is read exactly to its end, so the next frame starts with a header read).
                    if have == 0 and link is not None and link.quick:
                        n, ancillary = self._spin(conn, view)
                    else:
                        n, ancillary, _, _ = conn.recvmsg_into([view[have:]], _ANCILLARY)
                    if have == 0 and link is not None and self.spin_s:
                        link.quick = time.perf_counter() - link.replied_at <= self.spin_s
                    if ancillary and link is not None:
                        link.take(ancillary)
                else:  # exactly the rest of this frame, which the kernel collects before waking us
                    n = conn.recv_into(view[have:need], need - have, socket.MSG_WAITALL)
            except BlockingIOError:  # SO_RCVTIMEO passed without a byte
                if header and have == 0 and not self._stopping:
                    continue  # an idle connection between requests: keep waiting
                raise _Truncated(f"incomplete frame: {self._part(have, need, header, counted_from)} arrived, "
                                 f"then nothing for {self.io_timeout_s:g} s") from None
            if n == 0:
                if header and have == 0:
                    return None
                raise _Truncated(f"incomplete frame: the stream ended after {self._part(have, need, header, counted_from)}")
            have += n
        return have

    def _spin(self, conn: socket.socket, view: memoryview) -> tuple[int, list]:
        """Receive the next frame's first bytes, polling for up to spin_s before sleeping: a thread woken
        from sleep costs a wake-up (tens of µs on a VM) and comes back to cold caches."""
        deadline = time.perf_counter() + self.spin_s
        while True:
            try:
                n, ancillary, _, _ = conn.recvmsg_into([view], _ANCILLARY, socket.MSG_DONTWAIT)
                return n, ancillary
            except BlockingIOError:
                if time.perf_counter() >= deadline:
                    n, ancillary, _, _ = conn.recvmsg_into([view], _ANCILLARY)
                    return n, ancillary

    @staticmethod
    def _part(have: int, need: int, header: bool, counted_from: int) -> str:
        if header:
            return f"{have} of the {FRAME.size} bytes of its header"
        return f"{have + counted_from} of its {need + counted_from} bytes (header and body)"

    def _dispatch(self, method: int, body: bytearray | memoryview, link: _Link) -> tuple[int, bytes]:
        if method == Method.PREDICT and len(body) <= MAX_PLAN_BODY:
            answer = self._repeat(body, link)
            if answer is not None:
                return answer
        entry = self._methods.get(method)
        if entry is None:
            return Status.UNIMPLEMENTED, f"unknown method {method}; this socket serves {self._known}".encode()
        parse, call, name = entry
        try:
            request = parse(body)
        except DecodeError as exc:
            return Status.INVALID_ARGUMENT, f"the body of a method {method} frame is not a {name}: {exc}".encode()
        try:
            response = call(request, link)
        except ApiError as exc:
            return exc.code.value[0], exc.message.encode()
        except RegionError as exc:
            return Status.INVALID_ARGUMENT, str(exc).encode()
        except Exception as exc:  # noqa: BLE001 - as gRPC answers a handler's unexpected exception
            log.exception("fast inference method %d failed", method)
            return Status.UNKNOWN, f"Exception calling application: {exc}".encode()
        return Status.OK, response.SerializeToString()

    def _repeat(self, body: bytearray | memoryview, link: _Link) -> tuple[int, bytes] | None:
        """A Predict the connection sent before, run through its plan (agent.serve.prepared); None: take
        the general path (a new request, or a plan that no longer holds)."""
        plan = link.plan
        if plan is None or body != plan.body:
            if body != link.last_predict:
                link.last_predict, link.no_plan = bytes(body), False
                return None
            if link.no_plan:
                return None  # this request cannot have one (it carries tensor bytes, ...)
            try:  # the second time in a row: worth a plan
                request = inference_pb2.PredictRequest.FromString(body)
            except DecodeError:
                return None  # the general path says what is wrong with it
            plan = link.plan = self.servicer.prepare(request, link.regions, link.last_predict)
            if plan is None:
                link.no_plan = True
                return None
        try:
            payload = self.servicer.predict_prepared(plan, link.regions)
        except ApiError as exc:
            return exc.code.value[0], exc.message.encode()
        except Exception as exc:  # noqa: BLE001 - as _dispatch answers an unexpected failure
            log.exception("fast inference: a repeated Predict failed")
            return Status.UNKNOWN, f"Exception calling application: {exc}".encode()
        if payload is None:  # another model is active now: a plan for it from the next repeat
            link.plan = None
            return None
        self.planned += 1  # (a statistic: increments from two connections may race)
        return Status.OK, payload


def _register(request: inference_pb2.RegisterRegionRequest, link: _Link) -> inference_pb2.RegisterRegionResponse:
    link.forget_plan()
    if not link.fds:
        raise RegionError("no file descriptor came with the RegisterRegion frame: send the region's memfd with "
                          "SCM_RIGHTS on the frame's first byte")
    fd = link.fds.pop(0)
    region_id, size = link.regions.register(fd, request.name)  # closes fd, mapped or not
    return inference_pb2.RegisterRegionResponse(region_id=region_id, size=size)


def _unregister(request: inference_pb2.UnregisterRegionRequest, link: _Link) -> inference_pb2.UnregisterRegionResponse:
    link.forget_plan()
    link.regions.unregister(request.region_id)
    return inference_pb2.UnregisterRegionResponse()


def _reply(conn: socket.socket, status: int, payload: bytes) -> None:
    header = FRAME.pack(len(payload), status)
    if len(payload) < 16384:
        conn.sendall(header + payload)  # one small copy beats a second buffer in the kernel call
        return
    sent = conn.sendmsg([header, payload])
    if sent < len(header) + len(payload):
        conn.sendall((header + payload)[sent:] if sent < len(header) else memoryview(payload)[sent - len(header):])


def _shutdown(conn: socket.socket, how: int) -> None:
    try:
        conn.shutdown(how)
    except OSError:
        pass
