"""A real server with one method of each of gRPC's four call shapes behind the
interceptor, the synchronous server's and the asyncio server's twin: none answers a caller
without credentials."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from infra.grpc_api.aio import AioServer
from infra.grpc_api.context import AioCallContextInterceptor, CallContextInterceptor
from infra.security.tokens import Authenticator, TokenStore

SERVICE = "trunkplane.v1.TrunkService"  # a real service name, so the role table applies
METHOD = "GetTrunk"  # readable by every role that may read trunks
# methods an auditor may call, one per shape ("" unary, a stream of answers, of requests,
# of both), behind which the test's own behaviours answer
READABLE = {"": "GetTrunk", "Stream": "WatchTrunkStatus", "Upload": "ListTrunks",
            "Chat": "GetTrunkHistory"}


def _identity(value: bytes) -> bytes:
    return value


def _server(tokens: TokenStore, kind: str,
            names: dict[str, str] | None = None) -> tuple[Any, int]:
    name = names or {suffix: f"{METHOD}{suffix}" for suffix in READABLE}

    def unary(request: bytes, context: Any) -> bytes:
        return request

    def server_stream(request: bytes, context: Any) -> Iterator[bytes]:
        yield request

    def client_stream(requests: Iterator[bytes], context: Any) -> bytes:
        return b"".join(requests)

    def both(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        yield from requests

    handlers = {
        name[""]: grpc.unary_unary_rpc_method_handler(unary, _identity, _identity),
        name["Stream"]: grpc.unary_stream_rpc_method_handler(server_stream, _identity,
                                                             _identity),
        name["Upload"]: grpc.stream_unary_rpc_method_handler(client_stream, _identity,
                                                             _identity),
        name["Chat"]: grpc.stream_stream_rpc_method_handler(both, _identity, _identity),
    }
    calls = CallContextInterceptor(Authenticator(tokens))
    server: Any = grpc.server(futures.ThreadPoolExecutor(max_workers=4),
                              interceptors=[calls]) if kind == "sync" else AioServer(
        4, lambda pool: [AioCallContextInterceptor(calls, pool)])
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def _caller(channel: grpc.Channel, path: str, suffix: str) -> tuple[Any, bool, bool]:
    """The client call of the shape the method's suffix names, and whether it streams its
    requests and its responses."""
    request_streaming = suffix in ("Upload", "Chat")
    response_streaming = suffix in ("Stream", "Chat")
    call = {
        (False, False): channel.unary_unary,
        (False, True): channel.unary_stream,
        (True, False): channel.stream_unary,
        (True, True): channel.stream_stream,
    }[(request_streaming, response_streaming)](path)
    return call, request_streaming, response_streaming


@pytest.mark.parametrize("kind", ["sync", "aio"])
@pytest.mark.parametrize("suffix", ["", "Stream", "Upload", "Chat"])
def test_no_call_shape_answers_without_credentials(tmp_path: Path, suffix: str,
                                                   kind: str) -> None:
    tokens = TokenStore(tmp_path / "tokens.json")
    server, port = _server(tokens, kind)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            call, request_streaming, response_streaming = _caller(
                channel, f"/{SERVICE}/{METHOD}{suffix}", suffix)
            payload: Any = iter([b"x"]) if request_streaming else b"x"

            def answer() -> Any:
                reply = call(payload, timeout=5)
                return list(reply) if response_streaming else reply

            with pytest.raises(grpc.RpcError) as refused:
                answer()
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        server.stop(0)


@pytest.mark.parametrize("kind", ["sync", "aio"])
@pytest.mark.parametrize("suffix", ["", "Stream", "Upload", "Chat"])
def test_every_call_shape_answers_a_valid_token(tmp_path: Path, suffix: str,
                                                kind: str) -> None:
    """Through the asyncio server, synchronous behaviours of every shape run on the pool
    (a client's stream of requests read from the loop) and answer as on the other."""
    tokens = TokenStore(tmp_path / "tokens.json")
    _, clear = tokens.create("reader@example.com", "auditor")
    server, port = _server(tokens, kind, READABLE)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            call, request_streaming, response_streaming = _caller(
                channel, f"/{SERVICE}/{READABLE[suffix]}", suffix)
            payload: Any = iter([b"x", b"y"]) if request_streaming else b"x"
            reply = call(payload, timeout=5, metadata=(("authorization", f"Bearer {clear}"),))
            got = b"".join(reply) if response_streaming else reply
            assert got == (b"xy" if request_streaming else b"x")
    finally:
        server.stop(0)
