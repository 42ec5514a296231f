"""The gRPC side of edgectl: one channel to the coordinator's Admin service, the admin token on every call,
and every grpc.RpcError turned into a one-line CliError.

Imported only by commands that talk to the coordinator (through context.admin_client), so that
`edgectl --help` never loads grpc.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc

from coordinator.cli.errors import CliError
from coordinator.cli.settings import ADMIN_TOKEN_HINT, DEFAULT_CONFIG_PATH, ENV_TOKEN, ClientSettings
from edgefleet.v1 import admin_pb2_grpc

_DEFAULT = object()


class AdminClient:
    """Calls on the Admin service. `call` serves unary and client-streaming methods, `stream` server-streaming ones."""

    def __init__(self, settings: ClientSettings):
        if not settings.token:
            raise CliError(missing_token_message(settings))
        self.settings = settings
        self._channel = grpc.insecure_channel(settings.address)
        self._stub = admin_pb2_grpc.AdminStub(self._channel)
        self._metadata = (("authorization", f"Bearer {settings.token}"),)

    def call(self, method: str, request: Any, *, timeout_s: float | None | object = _DEFAULT) -> Any:
        """Call Admin.<method> and return its response; a failure raises CliError with a readable message."""
        rpc = getattr(self._stub, method)
        try:
            return rpc(request, metadata=self._metadata, timeout=self._timeout(timeout_s))
        except grpc.RpcError as exc:
            raise CliError(describe_rpc_error(exc, method, self.settings)) from None

    def stream(self, method: str, request: Any, *, timeout_s: float | None | object = None) -> Iterator[Any]:
        """Iterate a server-streaming Admin.<method>; no deadline by default (watching may take long)."""
        rpc = getattr(self._stub, method)
        try:
            yield from rpc(request, metadata=self._metadata, timeout=self._timeout(timeout_s))
        except grpc.RpcError as exc:
            raise CliError(describe_rpc_error(exc, method, self.settings)) from None

    def _timeout(self, timeout_s: float | None | object) -> float | None:
        return self.settings.timeout_s if timeout_s is _DEFAULT else timeout_s  # type: ignore[return-value]

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _where_to_set_token(settings: ClientSettings) -> str:
    config = settings.config_path or DEFAULT_CONFIG_PATH
    return f"pass --token, set {ENV_TOKEN}, or set token_file in {config}"


def missing_token_message(settings: ClientSettings) -> str:
    return (
        f"no admin token for the coordinator at {settings.address}: {_where_to_set_token(settings)}; "
        f"the coordinator writes its token to {ADMIN_TOKEN_HINT} on first start"
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())


def describe_rpc_error(exc: grpc.RpcError, method: str, settings: ClientSettings) -> str:
    """One line that says what went wrong and, where the user can fix it, how."""
    code = exc.code() if hasattr(exc, "code") else None
    details = _one_line((exc.details() if hasattr(exc, "details") else "") or "")
    address = settings.address
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        where = "" if "admin.token" in details else f"; the coordinator keeps it in {ADMIN_TOKEN_HINT}"
        return (
            f"the coordinator at {address} refused the admin token from {settings.token_source}:"
            f" {details or code.name.lower()}{where}; {_where_to_set_token(settings)}"
        )
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"cannot reach the coordinator at {address} ({details or 'unavailable'})"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return (
            f"cannot reach the coordinator at {address} (no answer to {method} within {settings.timeout_s:g} s;"
            " --timeout SECONDS waits longer)"
        )
    if code == grpc.StatusCode.UNIMPLEMENTED:
        # Also what an HTTP server that is not a coordinator gives ("Received http2 header with status: 404").
        return (
            f"the server at {address} does not implement {method} ({details or 'unimplemented'}):"
            " is this the coordinator's admin address, and is the coordinator as new as edgectl?"
        )
    if code in (
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    ):
        return details or f"{method}: {code.name.lower()}"
    name = code.name if code is not None else "UNKNOWN"
    return f"{method} failed on the coordinator at {address}: {name}: {details or 'no details'}"
