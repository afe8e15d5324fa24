"""A gRPC call's error as a stub raises it (a status code and details), for tests that make a bare
call fail without a server."""
from __future__ import annotations

import grpc


class RpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode):
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "simulated"

    def trailing_metadata(self) -> tuple:
        return ()
