"""A small client for apps on the device: Predict, Feedback, Health and DescribeModel on the local agent.

    from agent.client import LocalClient

    with LocalClient("/var/lib/edgefleet-agent/inference.sock") as agent:
        outputs, request_id, latency_ms = agent.predict({"input": image})   # float arrays in and out
        agent.feedback(request_id, label=3)                                 # when the true label is known

Two transports reach the same API (docs/protocol.md, "Local inference API"):

- the *fast* socket, `<socket>` with `.fast` before its suffix (`inference.fast.sock`): length-prefixed
  protobuf frames over a plain unix socket, about 20 µs per round trip where gRPC needs 500 µs;
- gRPC on `<socket>` itself, the documented API every language can call.

LocalClient uses the fast socket when the agent offers one and falls back to gRPC when it does not
(an older agent, or a socket path too long for the extra suffix); `transport` forces one. It keeps one
connection and serializes calls on it: give each thread its own LocalClient for parallel requests.

On the fast socket, inputs of at least `shared_memory_min_bytes` go through shared memory: the client
makes one memfd (sealed against shrinking), registers it on its connection, copies such inputs into it
and sends only where they are (docs/protocol.md, "Shared memory"). `shared_memory=False` turns that
off; an agent that does not offer it (an older one) gets the bytes in the frame, as before.
Errors raise InferenceError with the gRPC status code and the agent's message, whichever transport
carried the call. Output arrays are read-only views of the response (copy them to write into them).

This module also defines the fast socket's frame format, which agent.serve.fast serves; it imports
neither grpc (only when falling back) nor anything of the agent's server side.
"""

from __future__ import annotations

import array as _array
import enum
import fcntl
import mmap
import os
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from edgefleet.v1 import inference_pb2

# -- the frame format ---------------------------------------------------------------------------

# Request:  u32 little-endian length of the body | u8 method | body (a protobuf request message)
# Reply:    u32 little-endian length of the body | u8 status | body (the response message when the
#           status is 0, else the error message in UTF-8)
FRAME = struct.Struct("<IB")
FAST_MARK = ".fast"


class Method(enum.IntEnum):
    PREDICT = 1          # PredictRequest -> PredictResponse
    FEEDBACK = 2         # FeedbackRequest -> FeedbackResponse
    HEALTH = 3           # HealthRequest -> HealthResponse
    DESCRIBE_MODEL = 4   # DescribeModelRequest -> DescribeModelResponse
    LIST_MODELS = 5      # ListLocalModelsRequest -> ListLocalModelsResponse
    REGISTER_REGION = 6  # RegisterRegionRequest + a memfd (SCM_RIGHTS) -> RegisterRegionResponse
    UNREGISTER_REGION = 7  # UnregisterRegionRequest -> UnregisterRegionResponse


class Status(enum.IntEnum):
    """gRPC's status codes, by number: the fast socket's reply status uses the same numbers."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


def fast_socket_path(socket_path: Path | str) -> Path:
    """The fast socket beside the gRPC one: `inference.sock` -> `inference.fast.sock`."""
    path = Path(socket_path)
    return path.with_name(path.stem + FAST_MARK + path.suffix)


class InferenceError(Exception):
    """The agent refused or failed a call: `status` (a Status, gRPC's code) and the agent's message."""

    def __init__(self, status: int, message: str) -> None:
        try:
            self.status: Status | int = Status(status)
        except ValueError:
            self.status = status
        self.message = message
        name = self.status.name if isinstance(self.status, Status) else f"status {status}"
        super().__init__(f"{name}: {message}")

    @property
    def code(self) -> int:
        return int(self.status)


# -- encoding a Predict request without copying the tensors ---------------------------------------
# (varint and delimited are protobuf's wire format; agent.serve.prepared encodes responses with them.)


def varint(value: int) -> bytes:
    value &= 0xFFFFFFFFFFFFFFFF  # int64 on the wire: a negative number takes ten bytes
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def delimited(tag: int, payload: bytes) -> bytes:
    """A length-delimited field: its tag byte (field number << 3 | 2), the length, the bytes."""
    return bytes((tag,)) + varint(len(payload)) + payload


def _wire_array(value: Any) -> np.ndarray:
    """C-order, little-endian: what Tensor.data carries."""
    array = value if type(value) is np.ndarray else np.asarray(value)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return array if array.flags.c_contiguous else np.ascontiguousarray(array)  # (that one makes 0-d arrays 1-d)


# A hot loop sends the same tensor (name, shape, dtype) every call: its encoded head is kept.
_HEADS: dict[tuple[str, tuple[int, ...], np.dtype], bytes] = {}
_HEADS_MAX = 256
# Below this, the data is copied into one buffer with the head (one send, no gather list).
_COPY_BELOW = 16384


def _tensor_head(name: str, array: np.ndarray) -> bytes:
    """inputs' tag and length, then Tensor's name, shape, dtype and data's tag and length: everything
    before the data bytes."""
    key = (name, array.shape, array.dtype)
    head = _HEADS.get(key)
    if head is None:
        fields = delimited(0x0A, name.encode()) if name else b""                     # Tensor.name
        if array.ndim:
            fields += delimited(0x12, b"".join(varint(d) for d in array.shape))     # Tensor.shape, packed
        fields += delimited(0x1A, array.dtype.name.encode())                         # Tensor.dtype
        if array.nbytes:
            fields += b"\x22" + varint(array.nbytes)                             # Tensor.data
        head = b"\x12" + varint(len(fields) + array.nbytes) + fields              # PredictRequest.inputs
        if len(_HEADS) >= _HEADS_MAX:
            _HEADS.clear()
        _HEADS[key] = head
    return head


def _shared_tensor(name: str, array: np.ndarray, region_id: int, offset: int) -> bytes:
    """inputs' tag and length, then a Tensor whose bytes are in a shared region (Tensor.shared)."""
    key = (name, array.shape, array.dtype, region_id, offset)
    encoded = _HEADS.get(key)
    if encoded is None:
        fields = delimited(0x0A, name.encode()) if name else b""
        if array.ndim:
            fields += delimited(0x12, b"".join(varint(d) for d in array.shape))
        fields += delimited(0x1A, array.dtype.name.encode())
        where = (b"\x08" + varint(region_id) if region_id else b"") + (b"\x10" + varint(offset) if offset else b"")
        where += b"\x18" + varint(array.nbytes) if array.nbytes else b""
        fields += delimited(0x2A, where)                                              # Tensor.shared
        encoded = delimited(0x12, fields)                                             # PredictRequest.inputs
        if len(_HEADS) >= _HEADS_MAX:
            _HEADS.clear()
        _HEADS[key] = encoded
    return encoded


def encode_predict(inputs: Mapping[str, Any], model: str = "",
                   shared: Mapping[str, tuple[int, int]] | None = None) -> list[bytes | memoryview]:
    """The protobuf bytes of PredictRequest(model, inputs) as a list of buffers to send in one call:
    large tensors' data are views of the arrays (a 110 kB image is not copied three times to be framed).
    `shared`: input name -> (region id, offset) for inputs whose bytes the caller put in a registered
    region (their Tensors name the slice instead of carrying data).

    Byte for byte what `PredictRequest(...).SerializeToString()` gives for the same tensors."""
    parts: list[bytes | memoryview] = []
    pending = delimited(0x0A, model.encode()) if model else b""  # PredictRequest.model
    for name, value in inputs.items():
        array = _wire_array(value)
        if shared and name in shared:
            pending += _shared_tensor(name, array, *shared[name])
            continue
        pending += _tensor_head(name, array)
        if array.nbytes < _COPY_BELOW:
            pending += array.tobytes()
        else:
            parts.append(pending)
            parts.append(memoryview(array).cast("B"))
            pending = b""
    if pending or not parts:
        parts.append(pending)
    return parts


_DTYPES: dict[str, np.dtype] = {}


def array_of(tensor: inference_pb2.Tensor) -> np.ndarray:
    """The (read-only) array a response Tensor carries."""
    dtype = _DTYPES.get(tensor.dtype)
    if dtype is None:
        dtype = _DTYPES.setdefault(tensor.dtype, np.dtype(tensor.dtype or "float32").newbyteorder("<"))
    return np.frombuffer(tensor.data, dtype=dtype).reshape(tuple(tensor.shape))


def outputs_of(response: inference_pb2.PredictResponse) -> dict[str, np.ndarray]:
    return {t.name: array_of(t) for t in response.outputs}


# -- the client -----------------------------------------------------------------------------------


_REPLY_BUFFER = 65536  # replies up to this size arrive in one receive
# Inputs from this size up go through the shared region. Before the agent planned repeated requests
# (agent.serve.prepared) the frame was as cheap below ~32 kB (p50 round trip, bytes / shm: 16 kB 95/102 µs,
# 32 kB 121/116, 128 kB 552/391). With plans a hot loop's shm request skips the agent's parse, decode and
# checks: the digits model's 256-byte input, same agent, rounds interleaved: 151-205 µs in the frame,
# 113-153 µs through the region (2026-11-22, one agent, the two clients in alternating rounds).
SHARED_MEMORY_MIN_BYTES = 1
_ALIGN = 64  # each input starts on a cache line in the region


class _Region:
    """The client's shared-memory region: a memfd sealed against shrinking, mapped here, registered on
    one connection at a time (regions belong to a connection: a new one registers it again)."""

    def __init__(self, size: int) -> None:
        size = -(-size // mmap.PAGESIZE) * mmap.PAGESIZE
        fd = os.memfd_create("edgefleet-inputs", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(fd, size)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)  # the agent refuses a region that could shrink
            self.memory = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            raise
        self.fd, self.size = fd, size
        self.sock: socket.socket | None = None  # the connection it is registered on
        self.region_id = 0

    def slots(self, arrays: Mapping[str, np.ndarray]) -> list[tuple[str, int, np.ndarray]]:
        """Where the arrays go, one after another on cache-line boundaries: (name, offset, a view there)."""
        out, at = [], 0
        for name, array in arrays.items():
            out.append((name, at, np.ndarray(array.shape, array.dtype, buffer=self.memory, offset=at)))
            at += _aligned(array.nbytes)
        return out

    def place(self, arrays: Mapping[str, np.ndarray]) -> dict[str, tuple[int, int]]:
        """Copy the arrays in; name -> (region id, offset)."""
        where = {}
        for name, at, view in self.slots(arrays):
            np.copyto(view, arrays[name], casting="no")
            where[name] = (self.region_id, at)
        return where

    def close(self) -> None:
        try:
            self.memory.close()
        except BufferError:  # an app still holds a view: unmapped when it goes
            pass
        os.close(self.fd)


class _Placed:
    """The last Predict whose inputs all went into the region: the same names, shapes and dtypes again
    (an app's hot loop) only need their values copied where they went; the body stays the same (and the
    agent, seeing the same body, runs the plan it made for it: agent.serve.prepared)."""

    __slots__ = ("region", "model", "slots", "body")

    def __init__(self, region: _Region, model: str, arrays: Mapping[str, np.ndarray], body: list[bytes | memoryview]) -> None:
        self.region, self.model, self.body = region, model, body
        self.slots = [(name, view.shape, view.dtype, view) for name, _, view in region.slots(arrays)]

    def fill(self, inputs: Mapping[str, Any], model: str) -> bool:
        """Copy `inputs` into their places if they are laid out as last time; False (nothing copied)
        when they are not."""
        if model != self.model or len(inputs) != len(self.slots):
            return False
        for (name, shape, dtype, _), (given, value) in zip(self.slots, inputs.items()):
            if name != given or type(value) is not np.ndarray or value.shape != shape or value.dtype != dtype:
                return False
        for (_, _, _, view), value in zip(self.slots, inputs.values()):
            np.copyto(view, value, casting="no")
        return True


def _region_bytes(arrays: Mapping[str, np.ndarray]) -> int:
    return sum(_aligned(a.nbytes) for a in arrays.values())


def _aligned(size: int) -> int:
    return -(-size // _ALIGN) * _ALIGN


class _Closed(Exception):
    """The agent closed the fast connection."""


class _Reconnect(Exception):
    """The connection was closed before the request went out: connect again and resend."""


class LocalClient:
    FAST, GRPC, AUTO = "fast", "grpc", "auto"
    RETRY_FAST_S = 5.0  # after a fallback, look for the fast socket again at most this often

    def __init__(
        self,
        socket_path: Path | str,
        *,
        fast_socket: Path | str | None = None,
        transport: str = AUTO,
        timeout_s: float = 10.0,
        shared_memory: bool = True,
        shared_memory_min_bytes: int = SHARED_MEMORY_MIN_BYTES,
        spin_s: float = 0.0,
    ) -> None:
        """`socket_path`: the agent's gRPC socket (`edge-agent run --socket`); the fast one is found
        beside it (or pass `fast_socket`). `transport`: auto (fast when offered), fast or grpc.
        `shared_memory`: on the fast socket, pass inputs of at least `shared_memory_min_bytes` through a
        shared-memory region instead of the frame. `spin_s` (opt-in, at most 0.01): poll for a fast reply
        this long before sleeping on it: less latency for a core kept busy while waiting."""
        if transport not in (self.AUTO, self.FAST, self.GRPC):
            raise ValueError(f"transport must be auto, fast or grpc, not {transport!r}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be above 0, got {timeout_s}")
        if not 0 <= spin_s <= 0.01:
            raise ValueError(f"spin_s must be between 0 and 0.01 s, got {spin_s}")
        if shared_memory_min_bytes < 1:
            raise ValueError(f"shared_memory_min_bytes must be at least 1, got {shared_memory_min_bytes}")
        self.socket_path = Path(socket_path)
        self.fast_socket_path = Path(fast_socket) if fast_socket is not None else fast_socket_path(self.socket_path)
        self.mode = transport
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._buffer = bytearray(_REPLY_BUFFER)
        self._view = memoryview(self._buffer)
        self._next_fast_try = 0.0
        self._channel: Any = None
        self._stub: Any = None
        self.shared_memory = shared_memory
        self.spin_s = spin_s
        self.shared_memory_min_bytes = shared_memory_min_bytes
        # Why this client does not use shared memory (no memfd here, or the agent refused it), or "".
        self.shared_memory_off = "" if hasattr(os, "memfd_create") else "this system has no memfd_create"
        self._region: _Region | None = None
        self._placed: _Placed | None = None  # the last all-in-the-region Predict

    # -- the API ------------------------------------------------------------------------------

    def predict(self, inputs: Mapping[str, Any], model: str = "") -> tuple[dict[str, np.ndarray], str, float]:
        """Run the active model (or the one `model` names) on named arrays (float for any model: the
        agent quantizes). Returns (outputs by name, request_id for feedback, the agent's latency in ms)."""
        response = self._call(
            Method.PREDICT, "Predict", lambda sock: self._predict_body(sock, inputs, model),
            lambda: inference_pb2.PredictRequest(model=model, inputs=[_tensor(k, v) for k, v in inputs.items()]),
            inference_pb2.PredictResponse)
        return outputs_of(response), response.request_id, response.latency_ms

    def feedback(self, request_id: str, label: int | None = None, target: float | None = None) -> bool:
        """The true label (classification) or target (regression) of an earlier prediction; returns
        whether the prediction matched it (a regression target always counts as matched)."""
        if label is None and target is None:
            raise ValueError("feedback needs a label (classification) or a target (regression)")
        request = inference_pb2.FeedbackRequest(request_id=request_id, label=int(label or 0), target=float(target or 0.0))
        return self._unary(Method.FEEDBACK, "Feedback", request, inference_pb2.FeedbackResponse).matched

    def health(self) -> inference_pb2.HealthResponse:
        """status: serving | no_model | degraded, and a detail saying why."""
        return self._unary(Method.HEALTH, "Health", inference_pb2.HealthRequest(), inference_pb2.HealthResponse)

    def describe(self, model: str = "") -> inference_pb2.DescribeModelResponse:
        """The model's inputs and outputs (names, shapes, dtypes, quantization), runtime and delegate."""
        return self._unary(Method.DESCRIBE_MODEL, "DescribeModel", inference_pb2.DescribeModelRequest(model=model),
                           inference_pb2.DescribeModelResponse)

    def list_models(self) -> inference_pb2.ListLocalModelsResponse:
        return self._unary(Method.LIST_MODELS, "ListModels", inference_pb2.ListLocalModelsRequest(),
                           inference_pb2.ListLocalModelsResponse)

    @property
    def transport(self) -> str:
        """fast or grpc: what the next call will use (connecting now if needed)."""
        with self._lock:
            return self.FAST if self._fast() is not None else self.GRPC

    def close(self) -> None:
        with self._lock:
            self._drop()
            self._placed = None  # its views must go before the region's memory is closed
            if self._region is not None:
                self._region.close()
                self._region = None
            if self._channel is not None:
                self._channel.close()
                self._channel = self._stub = None

    def __enter__(self) -> LocalClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the fast socket ----------------------------------------------------------------------

    def _fast(self) -> socket.socket | None:
        """The connected fast socket, or None when the calls go over gRPC."""
        if self._sock is not None or self.mode == self.GRPC:
            return self._sock
        if self.mode == self.AUTO and time.monotonic() < self._next_fast_try:
            return None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout_s)
        try:
            sock.connect(str(self.fast_socket_path))
        except OSError as exc:
            sock.close()
            if self.mode == self.FAST:
                raise InferenceError(Status.UNAVAILABLE, f"cannot connect to the agent's fast socket {self.fast_socket_path}: "
                                     f"{exc.strerror or exc}") from None
            self._next_fast_try = time.monotonic() + self.RETRY_FAST_S
            return None  # no fast socket here: gRPC
        # Kernel timeouts on a blocking socket: no poll() before every send and receive.
        sock.settimeout(None)
        whole = int(self.timeout_s)
        timeval = struct.pack("ll", whole, int((self.timeout_s - whole) * 1e6))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        self._sock = sock
        return sock

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _call(self, method: int, name: str, fast_body: Callable[[socket.socket], Sequence[bytes | memoryview]],
              grpc_request: Callable[[], Any], response_type: Any) -> Any:
        with self._lock:
            for _ in range(2):
                sock = self._fast()
                if sock is None:
                    return self._grpc(name, grpc_request())
                try:
                    return response_type.FromString(self._exchange(sock, method, fast_body(sock)))
                except _Reconnect:
                    continue  # the agent restarted: the request never reached it, so send it again
            raise InferenceError(Status.UNAVAILABLE, f"the agent closed the fast socket {self.fast_socket_path} twice in a row")

    def _exchange(self, sock: socket.socket, method: int, parts: Sequence[bytes | memoryview],
                  fd: int | None = None) -> bytes | bytearray | memoryview:
        """Send one request frame (with `fd` on its first byte) and read its reply (valid until the next
        call); raises InferenceError for an error reply."""
        size = sum(len(p) for p in parts)
        try:
            first = FRAME.pack(size, method) + parts[0]
            if fd is not None:
                rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, _array.array("i", [fd]).tobytes())]
                sent = sock.sendmsg([first], rights)
                if sent < len(first):
                    sock.sendall(first[sent:])
                for part in parts[1:]:
                    sock.sendall(part)
            elif len(parts) == 1:
                sock.sendall(first)
            else:
                _send(sock, [first, *parts[1:]], FRAME.size + size)
        except (BrokenPipeError, ConnectionResetError):
            # The agent closed this connection. Either it said why (too many connections, a request
            # too large) and that reply is waiting here, or it restarted.
            status, body = self._leftover_reply(sock)
            self._drop()
            if status is not None:
                raise InferenceError(status, bytes(body).decode("utf-8", "replace")) from None
            raise _Reconnect() from None
        except (BlockingIOError, socket.timeout):
            self._drop()
            raise InferenceError(Status.DEADLINE_EXCEEDED, f"sending the request took longer than {self.timeout_s:g} s") from None
        try:
            status, body = self._read_frame(sock)
        except (BlockingIOError, socket.timeout):
            self._drop()  # the reply may still come: this connection is out of step now
            raise InferenceError(Status.DEADLINE_EXCEEDED, f"no reply from the agent within {self.timeout_s:g} s") from None
        except (_Closed, ConnectionResetError):
            self._drop()
            raise InferenceError(Status.UNAVAILABLE, "the agent closed the connection before replying (stopping or restarting)") from None
        if status != Status.OK:
            raise InferenceError(status, bytes(body).decode("utf-8", "replace"))
        return body

    def _leftover_reply(self, sock: socket.socket) -> tuple[int | None, bytes | bytearray | memoryview]:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 500_000))
            return self._read_frame(sock)  # whatever the agent sent before closing is already here
        except (OSError, _Closed):
            return None, b""

    def _read_frame(self, sock: socket.socket) -> tuple[int, bytearray | memoryview]:
        """One reply frame. A small one comes in one receive into the client's buffer (the body is a
        view of it, valid until the next call); a large one gets a buffer of its own."""
        view, got = self._view, 0
        if self.spin_s:
            got = _spin_receive(sock, view, self.spin_s)
        while got < FRAME.size:
            n = sock.recv_into(view[got:])
            if n == 0:
                raise _Closed()
            got += n
        length, status = FRAME.unpack_from(self._buffer)
        end = FRAME.size + length
        if end <= len(self._buffer):
            while got < end:
                n = sock.recv_into(view[got:end])
                if n == 0:
                    raise _Closed()
                got += n
            return status, view[FRAME.size:end]
        body = bytearray(length)
        body[:got - FRAME.size] = view[FRAME.size:got]
        _recv_exact(sock, memoryview(body)[got - FRAME.size:])
        return status, body

    # -- shared memory ------------------------------------------------------------------------

    def _predict_body(self, sock: socket.socket, inputs: Mapping[str, Any], model: str) -> list[bytes | memoryview]:
        """The Predict frame's body: large inputs copied into the registered region and named by slice,
        the rest as bytes."""
        if not self.shared_memory or self.shared_memory_off:
            return encode_predict(inputs, model)
        placed = self._placed
        if placed is not None and placed.region is self._region and placed.region.sock is sock and placed.fill(inputs, model):
            return placed.body  # a hot loop: the same request as last time, on new values
        self._placed = None
        arrays = {name: _wire_array(value) for name, value in inputs.items()}
        large = {name: a for name, a in arrays.items() if a.nbytes >= self.shared_memory_min_bytes}
        if not large:
            return encode_predict(arrays, model)
        region = self._region_on(sock, _region_bytes(large))
        if region is None:
            return encode_predict(arrays, model)
        body = encode_predict(arrays, model, region.place(large))
        if len(large) == len(arrays):  # all in the region: the next call may reuse this body
            self._placed = _Placed(region, model, arrays, body)
        return body

    def _region_on(self, sock: socket.socket, size: int) -> _Region | None:
        """A region of at least `size` bytes registered on `sock`; None when the agent refuses shared
        memory (shared_memory_off says why; the bytes then go in the frames)."""
        region = self._region
        if region is not None and region.size >= size and region.sock is sock:
            return region
        if region is not None and region.size < size:  # grown inputs: a larger region replaces it
            if region.sock is sock:
                request = inference_pb2.UnregisterRegionRequest(region_id=region.region_id)
                self._exchange(sock, Method.UNREGISTER_REGION, [request.SerializeToString()])
            region.close()
            region = self._region = None
        if region is None:
            region = self._region = _Region(size)
        body = inference_pb2.RegisterRegionRequest(name="inputs").SerializeToString()
        try:
            reply = self._exchange(sock, Method.REGISTER_REGION, [body], fd=region.fd)
        except InferenceError as exc:
            if exc.status not in (Status.UNIMPLEMENTED, Status.INVALID_ARGUMENT):
                raise
            self.shared_memory_off = f"the agent refused shared memory: {exc}"
            region.close()
            self._region = None
            return None
        region.region_id = inference_pb2.RegisterRegionResponse.FromString(reply).region_id
        region.sock = sock
        return region

    # -- gRPC ---------------------------------------------------------------------------------

    def _unary(self, method: int, name: str, request: Any, response_type: Any) -> Any:
        return self._call(method, name, lambda sock: [request.SerializeToString()], lambda: request, response_type)

    def _grpc(self, name: str, request: Any) -> Any:
        import grpc  # only when the fast socket is not there: an app on the fast path never loads gRPC

        if self._stub is None:
            from edgefleet.v1 import inference_pb2_grpc

            self._channel = grpc.insecure_channel(f"unix:{self.socket_path}")
            self._stub = inference_pb2_grpc.InferenceStub(self._channel)
        try:
            return getattr(self._stub, name)(request, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            code = exc.code() if callable(getattr(exc, "code", None)) else grpc.StatusCode.UNKNOWN
            details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
            raise InferenceError(code.value[0], details or code.name) from None


def _tensor(name: str, value: Any) -> inference_pb2.Tensor:
    array = _wire_array(value)
    return inference_pb2.Tensor(name=name, shape=array.shape, dtype=array.dtype.name, data=array.tobytes())


def _send(sock: socket.socket, buffers: Sequence[bytes | memoryview], total: int) -> None:
    """One gather send (the tensors are not copied into a frame first); the kernel may take less of a
    large frame at once, then the rest follows."""
    sent = sock.sendmsg(buffers)
    if sent < total:
        sock.sendall(b"".join(buffers)[sent:])


def _spin_receive(sock: socket.socket, view: memoryview, seconds: float) -> int:
    """Poll for the reply's first bytes for up to `seconds`; how many arrived (0: none yet, sleep on it)."""
    deadline = time.perf_counter() + seconds
    while True:
        try:
            n = sock.recv_into(view, 0, socket.MSG_DONTWAIT)
        except BlockingIOError:
            if time.perf_counter() >= deadline:
                return 0
            continue
        if n == 0:
            raise _Closed()
        return n


def _recv_exact(sock: socket.socket, view: memoryview) -> None:
    got, total = 0, len(view)
    while got < total:
        n = sock.recv_into(view[got:], total - got, socket.MSG_WAITALL)
        if n == 0:
            raise _Closed()
        got += n


__all__ = ["FRAME", "InferenceError", "LocalClient", "Method", "Status", "array_of", "encode_predict", "fast_socket_path",
           "outputs_of"]
