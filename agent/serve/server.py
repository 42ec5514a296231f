"""The gRPC server on a unix socket that local apps call.

The socket file is created with mode 0660 (owner and group: put the apps' user in the agent's group,
or pass `group`), in a directory created 0750 when missing. A socket file left by a previous agent that
died is removed at start; a live one (another agent answers on it) or a path that is not a socket is
an error naming the path.
"""

from __future__ import annotations

import errno
import grp
import logging
import os
import socket
import stat
from concurrent import futures
from pathlib import Path
from typing import Callable, Sequence

import grpc

from agent.serve.admission import Admission
from agent.serve.host import ModelHost
from agent.serve.recent import DEFAULT_SIZE, RecentPredictions
from agent.serve.servicer import InferenceObserver, InferenceServicer
from edgefleet.v1 import device_pb2, inference_pb2_grpc

log = logging.getLogger(__name__)

DEFAULT_MAX_WAITING = 8
DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024   # a batch of 16 float 224×224×3 images fits
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
SOCKET_MODE = 0o660
# sockaddr_un.sun_path is 108 bytes on Linux, with the terminating NUL.
MAX_SOCKET_PATH = 107
# Threads beyond the admitted Predicts, so Health/Describe/Feedback answer while the model is busy.
SPARE_THREADS = 3


class SocketInUse(RuntimeError):
    """Another process serves on the socket path, or the path is not a socket."""


def prepare_socket_path(path: Path) -> None:
    """Create the parent directory (0750) and remove a stale socket; raise SocketInUse otherwise."""
    if len(os.fsencode(str(path))) > MAX_SOCKET_PATH:
        raise ValueError(f"unix socket path {path} is longer than {MAX_SOCKET_PATH} bytes: choose a shorter one")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise SocketInUse(f"{path} exists and is not a socket: remove it or choose another inference socket path")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            log.info("removing stale inference socket %s", path)
            path.unlink(missing_ok=True)
            return
        raise SocketInUse(f"cannot check inference socket {path}: {exc}") from None
    finally:
        probe.close()
    raise SocketInUse(f"another process is serving on {path}: stop it or choose another inference socket path")


class InferenceServer:
    def __init__(
        self,
        socket_path: Path | str,
        host: ModelHost,
        *,
        observer: InferenceObserver | None = None,
        max_waiting: int = DEFAULT_MAX_WAITING,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        recent_size: int = DEFAULT_SIZE,
        group: str | None = None,
        installed: Callable[[], Sequence[device_pb2.ActiveModel]] | None = None,
        degraded: Callable[[], str] | None = None,
    ) -> None:
        if max_request_bytes < 1024:
            raise ValueError(f"max_request_bytes must be at least 1024, got {max_request_bytes}")
        self.socket_path = Path(socket_path)
        self.host = host
        self.max_request_bytes = max_request_bytes
        self.group = group
        self.admission = Admission(max_waiting)
        self.servicer = InferenceServicer(host, observer=observer, admission=self.admission,
                                          recent=RecentPredictions(recent_size), installed=installed, degraded=degraded)
        workers = self.admission.capacity + SPARE_THREADS
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inference"),
            options=[
                ("grpc.max_receive_message_length", max_request_bytes),
                ("grpc.max_send_message_length", max_response_bytes),
                ("grpc.so_reuseport", 0),
            ],
            # Backstop: gRPC itself answers RESOURCE_EXHAUSTED beyond what the threads can hold.
            maximum_concurrent_rpcs=workers * 2,
        )
        inference_pb2_grpc.add_InferenceServicer_to_server(self.servicer, self._server)
        self._started = False

    @property
    def address(self) -> str:
        return f"unix:{self.socket_path}"

    def start(self) -> None:
        prepare_socket_path(self.socket_path)
        if self._server.add_insecure_port(self.address) == 0:
            raise SocketInUse(f"cannot listen on {self.socket_path}")
        self._server.start()
        self._started = True
        os.chmod(self.socket_path, SOCKET_MODE)
        if self.group:
            try:
                os.chown(self.socket_path, -1, grp.getgrnam(self.group).gr_gid)
            except (KeyError, PermissionError) as exc:
                log.warning("cannot give inference socket %s to group %s: %s", self.socket_path, self.group, exc)
        log.info("inference API on %s (mode %o, at most %d waiting, requests up to %d bytes)",
                 self.socket_path, SOCKET_MODE, self.admission.max_waiting, self.max_request_bytes)

    def stop(self, grace_s: float = 2.0) -> None:
        """Finish running calls for up to `grace_s`, then remove the socket file (only one this server made)."""
        if not self._started:
            return
        self._server.stop(grace_s).wait(grace_s + 1)
        self._started = False
        try:
            if stat.S_ISSOCK(self.socket_path.lstat().st_mode):
                self.socket_path.unlink()
        except FileNotFoundError:
            pass
