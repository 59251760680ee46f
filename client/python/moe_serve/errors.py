"""Errors of the moe-serve client: every failed call raises MoeServeError with the gRPC code and
the router's message (which names the layer, expert or worker involved; see docs/API.md)."""
from __future__ import annotations

import grpc


class MoeServeError(Exception):
    """A call to the router failed. `code` is the grpc.StatusCode, `message` the router's text."""

    def __init__(self, code: grpc.StatusCode, message: str, method: str = "") -> None:
        self.code = code
        self.message = message
        self.method = method
        super().__init__(f"{method + ': ' if method else ''}{code.name}: {message}")

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError, method: str) -> "MoeServeError":
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        details = error.details() if hasattr(error, "details") else str(error)
        return cls(code or grpc.StatusCode.UNKNOWN, details or "", method)
