"""Who is calling and under which request id. The interceptor sets it for each call;
servicers read it. Authentication replaces the actor source here and nowhere else."""

from __future__ import annotations

import contextvars
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc

from infra.grpc_api.limits import RateLimiter

log = logging.getLogger("trunkplane.rpc")
MAX_ACTOR = 128


@dataclass(frozen=True)
class CallContext:
    actor: str
    request_id: str


_current: contextvars.ContextVar[CallContext] = contextvars.ContextVar(
    "call", default=CallContext("anonymous", "")
)


def current() -> CallContext:
    return _current.get()


def _metadata(details: grpc.HandlerCallDetails) -> dict[str, str]:
    return {k: v for k, v in (details.invocation_metadata or ()) if isinstance(v, str)}


def _actor(raw: str) -> str:
    actor = raw.strip()[:MAX_ACTOR]
    if not actor or not actor.isprintable():
        return "anonymous"
    return actor


class CallContextInterceptor(grpc.ServerInterceptor):
    """Reads x-actor (default anonymous) and x-request-id (generated when absent), logs
    one line per call with its outcome and duration, and reports both to `observe`."""

    def __init__(self, observe: Callable[[str, str, float], None] = lambda *_: None,
                 limiter: RateLimiter | None = None) -> None:
        self._observe = observe
        self._limiter = limiter

    def intercept_service(self, continuation: Callable[[Any], Any],
                          details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None or (handler.unary_unary is None and handler.unary_stream is None):
            return handler
        metadata = _metadata(details)
        call = CallContext(
            actor=_actor(metadata.get("x-actor", "")),
            request_id=metadata.get("x-request-id", "")[:128] or uuid.uuid4().hex,
        )
        method = details.method

        @contextmanager
        def serving(context: grpc.ServicerContext) -> Iterator[None]:
            token = _current.set(call)
            started = time.perf_counter()
            try:
                self._admit(call, context)
                yield
            finally:
                seconds = time.perf_counter() - started
                code = _code_name(context)
                log.info("%s actor=%s code=%s %.1fms", method, call.actor, code, seconds * 1000)
                self._observe(method, code, seconds)
                _current.reset(token)

        codecs = {"request_deserializer": handler.request_deserializer,
                  "response_serializer": handler.response_serializer}
        if handler.unary_unary is not None:
            unary = handler.unary_unary

            def answer(request: Any, context: grpc.ServicerContext) -> Any:
                with serving(context):
                    return unary(request, context)

            return grpc.unary_unary_rpc_method_handler(answer, **codecs)
        stream = handler.unary_stream

        def answers(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            with serving(context):
                yield from stream(request, context)

        return grpc.unary_stream_rpc_method_handler(answers, **codecs)


    def _admit(self, call: CallContext, context: grpc.ServicerContext) -> None:
        wait = self._limiter.wait_needed(call.actor) if self._limiter else 0.0
        if wait:
            assert self._limiter is not None
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"{call.actor} is over its limit of {self._limiter.rate:g} requests/s; "
                          f"retry in {wait:.2f} s")


def _code_name(context: grpc.ServicerContext) -> str:
    code = getattr(context, "code", lambda: None)()
    return "OK" if code is None else getattr(code, "name", str(code))
