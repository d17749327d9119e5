"""Who is calling and under which request id. The interceptor authenticates each call,
checks the caller's role against the method, and sets the context servicers read: the
authenticated principal is the actor recorded on every event."""

from __future__ import annotations

import contextvars
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from infra.grpc_api.limits import RateLimiter
from infra.security.tokens import Authenticator, AuthError, is_open

log = logging.getLogger("trunkplane.rpc")


@dataclass(frozen=True)
class CallContext:
    actor: str
    request_id: str
    role: str = ""


_current: contextvars.ContextVar[CallContext] = contextvars.ContextVar(
    "call", default=CallContext("anonymous", "")
)


def current() -> CallContext:
    return _current.get()


def _call_metadata(context: grpc.ServicerContext) -> dict[str, str]:
    return {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}


def _new_request_id() -> str:
    return uuid.uuid4().hex


def _certificate_name(context: grpc.ServicerContext) -> str:
    found: Any = context.auth_context().get("x509_common_name") or []
    names: list[bytes] = list(found)
    return names[0].decode() if names else ""


class CallContextInterceptor(grpc.ServerInterceptor):
    """Authenticates and authorises each call, takes x-request-id (generated when absent),
    logs one line per call with its outcome and duration, and reports both to `observe`."""

    def __init__(self, authenticator: Authenticator,
                 observe: Callable[[str, str, float], None] = lambda *_: None,
                 limiter: RateLimiter | None = None) -> None:
        self._authenticator = authenticator
        self._observe = observe
        self._limiter = limiter
        self._wrapped: dict[str, Any] = {}

    def intercept_service(self, continuation: Callable[[Any], Any],
                          details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        method = details.method
        if handler is None or is_open(method):
            return handler
        wrapped = self._wrapped.get(method)
        if wrapped is None:  # one wrapper per method (a server has one handler each)
            wrapped = self._wrapped[method] = self._wrap(handler, method)
        return wrapped

    def _wrap(self, handler: Any, method: str) -> Any:
        """Every call shape is wrapped: a shape left out would be open to anyone."""
        behaviour, make = _shape(handler)
        codecs = {"request_deserializer": handler.request_deserializer,
                  "response_serializer": handler.response_serializer}
        if handler.response_streaming:
            def answers(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                started, token = self._enter(_call_metadata(context), context, method)
                try:
                    yield from behaviour(request, context)
                finally:
                    self._leave(context, method, started, token)

            return make(answers, **codecs)

        def answer(request: Any, context: grpc.ServicerContext) -> Any:
            started, token = self._enter(_call_metadata(context), context, method)
            try:
                return behaviour(request, context)
            finally:
                self._leave(context, method, started, token)

        return make(answer, **codecs)

    def _enter(self, metadata: dict[str, str], context: grpc.ServicerContext,
               method: str) -> tuple[float, Any]:
        started = time.perf_counter()
        request_id = metadata.get("x-request-id", "")[:128] or _new_request_id()
        token = _current.set(CallContext("anonymous", request_id))
        try:
            _current.set(self._admit(metadata, context, method, request_id))
        except BaseException:
            self._leave(context, method, started, token)
            raise
        return started, token

    def _leave(self, context: grpc.ServicerContext, method: str, started: float,
               token: Any) -> None:
        seconds = time.perf_counter() - started
        code = _code_name(context)
        log.info("%s actor=%s code=%s %.1fms", method, _current.get().actor, code,
                 seconds * 1000)
        self._observe(method, code, seconds)
        _current.reset(token)

    def _admit(self, metadata: dict[str, str], context: grpc.ServicerContext, method: str,
               request_id: str) -> CallContext:
        try:
            record = self._authenticator.identify(metadata.get("authorization", ""),
                                                  lambda: _certificate_name(context), method)
        except AuthError as error:
            context.abort(getattr(grpc.StatusCode, error.code), str(error))
        wait = self._limiter.wait_needed(record.principal) if self._limiter else 0.0
        if wait:
            assert self._limiter is not None
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"{record.principal} is over its limit of {self._limiter.rate:g} "
                          f"requests/s; retry in {wait:.2f} s")
        return CallContext(record.principal, request_id, record.role)


def _shape(handler: Any) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The handler's behaviour and the constructor of a handler of the same shape."""
    if handler.request_streaming:
        if handler.response_streaming:
            return handler.stream_stream, grpc.stream_stream_rpc_method_handler
        return handler.stream_unary, grpc.stream_unary_rpc_method_handler
    if handler.response_streaming:
        return handler.unary_stream, grpc.unary_stream_rpc_method_handler
    return handler.unary_unary, grpc.unary_unary_rpc_method_handler


def _code_name(context: grpc.ServicerContext) -> str:
    code = getattr(context, "code", lambda: None)()
    return "OK" if code is None else getattr(code, "name", str(code))
