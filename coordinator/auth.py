"""Admin token: created in the data directory on first start, checked on every Admin call."""
from __future__ import annotations

import hmac
import secrets
from pathlib import Path

import grpc

from coordinator.secrets_dir import read_or_create

TOKEN_FILE = "admin.token"
# Methods callable without the admin token: enrollment carries its own one-time token.
PUBLIC_SERVICES = ("/edgefleet.v1.Enrollment/",)


def load_admin_token(data_dir: Path) -> str:
    return read_or_create(data_dir / TOKEN_FILE, lambda: (secrets.token_urlsafe(32) + "\n").encode()).decode().strip()


def _abort_unauthenticated(message: str):
    def handler(request, context):
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    return handler


class AdminTokenInterceptor(grpc.ServerInterceptor):
    def __init__(self, token: str, token_path: Path):
        self._expected = f"Bearer {token}".encode()
        self._token_path = token_path

    def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        if method.startswith(PUBLIC_SERVICES):
            return continuation(handler_call_details)
        md = dict(handler_call_details.invocation_metadata or ())
        got = md.get("authorization", "")
        if not got:
            return self._deny(continuation, handler_call_details, f"missing admin token (the coordinator keeps it in {self._token_path})")
        if not hmac.compare_digest(got.encode(), self._expected):
            return self._deny(continuation, handler_call_details, f"invalid admin token (the coordinator keeps it in {self._token_path})")
        return continuation(handler_call_details)

    @staticmethod
    def _deny(continuation, details, message: str):
        handler = continuation(details)
        if handler is None:
            return None
        deny = _abort_unauthenticated(message)
        # Keep the method's streaming shape so that grpc answers with our status, not INTERNAL.
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(lambda it, ctx: deny(None, ctx))
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(lambda it, ctx: deny(None, ctx))
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(lambda req, ctx: deny(req, ctx))
        return grpc.unary_unary_rpc_method_handler(deny)
