"""Who is calling and under which request id. The interceptor authenticates each call,
checks the caller's role against the method, and sets the context servicers read: the
authenticated principal is the actor recorded on every event. It also applies the limits
of `guards`: per client address before authentication, per principal and in total after,
and the count of open streams; a stream whose token is revoked ends."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent import futures
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import grpc
from grpc import aio

from domain.errors import ForbiddenError, ValidationError
from domain.values import parse_tenant
from infra.grpc_api.aio import Aborted, ThreadContext, in_thread, send_abort
from infra.grpc_api.guards import Guards, RevocableContext, peer_address
from infra.grpc_api.limits import RateLimiter
from infra.security.tokens import Authenticator, AuthError, TokenRecord, is_open

log = logging.getLogger("trunkplane.rpc")
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class CallContext:
    actor: str
    request_id: str
    role: str = ""
    tenants: tuple[str, ...] = ()  # empty: every tenant

    def may_use(self, tenant: str) -> bool:
        return not self.tenants or tenant in self.tenants


_current: contextvars.ContextVar[CallContext] = contextvars.ContextVar(
    "call", default=CallContext(ANONYMOUS, "")
)


def current() -> CallContext:
    return _current.get()


def check_tenant(tenant: str) -> None:
    """A valid tenant id that the caller's token may act in, or ValidationError /
    ForbiddenError (PERMISSION_DENIED) naming the problem."""
    try:
        parse_tenant(tenant)
    except ValueError as error:
        raise ValidationError.single("tenant", str(error)) from None
    call = current()
    if not call.may_use(tenant):
        raise ForbiddenError(f"{call.actor} may act only in the tenants "
                             f"{', '.join(call.tenants)}, not in '{tenant}'")


def _call_metadata(context: grpc.ServicerContext) -> dict[str, str]:
    return {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}


_REQUEST_PREFIX = uuid.uuid4().hex[:16]  # this process's; a counter makes the rest
_request_numbers = itertools.count(1)


def _new_request_id() -> str:
    """32 hex digits, unique across processes and restarts (a random prefix per process):
    a uuid4 per call cost a read of the system's random source each time."""
    return f"{_REQUEST_PREFIX}{next(_request_numbers):016x}"


def _certificate_name(context: grpc.ServicerContext) -> str:
    found: Any = context.auth_context().get("x509_common_name") or []
    names: list[bytes] = list(found)
    return names[0].decode() if names else ""


@dataclass
class _Admitted:
    call: CallContext
    record: TokenRecord | None  # None: an open method (health)
    stream_key: str = ""  # set while the call holds a place among the open streams


# (principal, role, method, request id) of a call refused for want of a role
Refusals = Callable[[str, str, str, str], None]


def _wrapper(cache: dict[str, Any], handler: Any, method: str,
             wrap: Callable[[Any, str], Any]) -> Any:
    """The interceptors' handler for `method`: one wrapper per method, made once (a server
    has one handler each); a method nobody serves (None) stays None."""
    if handler is None:
        return None
    wrapped = cache.get(method)
    if wrapped is None:
        wrapped = cache[method] = wrap(handler, method)
    return wrapped


class CallContextInterceptor(grpc.ServerInterceptor):
    """Authenticates and authorises each call, takes x-request-id (generated when absent),
    logs one line per call with its outcome and duration, and reports both to `observe`."""

    def __init__(self, authenticator: Authenticator,
                 observe: Callable[[str, str, float], None] = lambda *_: None,
                 limiter: RateLimiter | None = None, guards: Guards | None = None,
                 refused: Refusals | None = None) -> None:
        self._authenticator = authenticator
        self._observe = observe
        self._limiter = limiter
        self._guards = guards or Guards()
        self._refused = refused
        self._wrapped: dict[str, Any] = {}

    def intercept_service(self, continuation: Callable[[Any], Any],
                          details: grpc.HandlerCallDetails) -> Any:
        return _wrapper(self._wrapped, continuation(details), details.method, self._wrap)

    def _wrap(self, handler: Any, method: str) -> Any:
        behaviour, make = _shape(handler)
        return make(self.guarded(behaviour, method, handler.request_streaming,
                                 handler.response_streaming),
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer)

    def guarded(self, behaviour: Callable[..., Any], method: str, request_streaming: bool,
                response_streaming: bool) -> Callable[..., Any]:
        """A synchronous behaviour behind the checks. Every call shape is wrapped: a shape
        left out would be open to anyone. Open methods (health) skip authentication, not
        the limits."""
        if response_streaming:
            def answers(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                started, token, admitted = self._enter(context, method, stream=True)
                try:
                    yield from self._stream(behaviour, request, context, admitted)
                finally:
                    self._leave(context, method, started, token, admitted)

            return answers

        def answer(request: Any, context: grpc.ServicerContext) -> Any:
            started, token, admitted = self._enter(context, method, stream=request_streaming)
            try:
                return behaviour(request, context)
            finally:
                self._leave(context, method, started, token, admitted)

        return answer

    def _stream(self, behaviour: Callable[..., Iterator[Any]], request: Any,
                context: grpc.ServicerContext, admitted: _Admitted) -> Iterator[Any]:
        """The servicer's stream, ended with UNAUTHENTICATED once the token is revoked or
        expires (the servicer sees an inactive context and returns)."""
        if admitted.record is None:
            yield from behaviour(request, context)
            return
        revocable = self._revocable(context, admitted.record)
        for item in behaviour(request, revocable):
            revocable.is_active()  # asked between messages too: a servicer may never ask
            if revocable.revoked:
                break
            yield item
        if revocable.revoked:
            context.abort(grpc.StatusCode.UNAUTHENTICATED,
                          "the token was revoked or expired while the stream was open")

    def _revocable(self, context: grpc.ServicerContext,
                   record: TokenRecord) -> RevocableContext:
        return RevocableContext(context, lambda: self._authenticator.still_valid(record))

    def _enter(self, context: grpc.ServicerContext, method: str,
               stream: bool) -> tuple[float, Any, _Admitted]:
        started = time.perf_counter()
        metadata = _call_metadata(context)
        request_id = metadata.get("x-request-id", "")[:128] or _new_request_id()
        token = _current.set(CallContext(ANONYMOUS, request_id))
        admitted = _Admitted(CallContext(ANONYMOUS, request_id), None)
        try:
            admitted = self._admit(metadata, context, method, request_id)
            _current.set(admitted.call)
            if stream:
                admitted.stream_key = self._open_stream(context, admitted)
        except BaseException:
            self._leave(context, method, started, token, admitted)
            raise
        return started, token, admitted

    def _open_stream(self, context: grpc.ServicerContext, admitted: _Admitted) -> str:
        key = (admitted.call.actor if admitted.record is not None
               else f"address {peer_address(context)}")
        refusal = self._guards.streams.enter(key)
        if refusal:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refusal)
        return key

    def _leave(self, context: grpc.ServicerContext, method: str, started: float,
               token: Any, admitted: _Admitted) -> None:
        if admitted.stream_key:
            self._guards.streams.leave(admitted.stream_key)
            admitted.stream_key = ""
        seconds = time.perf_counter() - started
        code = _code_name(context)
        actor = _current.get().actor
        # Refusals of callers without credentials are counted, not logged one by one: a
        # flood of them must not become a flood of log lines.
        quiet = actor == ANONYMOUS and code in ("UNAUTHENTICATED", "RESOURCE_EXHAUSTED")
        (log.debug if quiet else log.info)("%s actor=%s code=%s %.1fms", method, actor,
                                           code, seconds * 1000)
        self._observe(method, code, seconds)
        _current.reset(token)

    def _admit(self, metadata: dict[str, str], context: grpc.ServicerContext, method: str,
               request_id: str) -> _Admitted:
        # the peer is asked only when a limit needs it (per address; failures, below)
        address = peer_address(context) if self._guards.per_address.rate > 0 else ""
        wait = self._guards.per_address.take(address)
        if wait:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"{address} is over its limit of {self._guards.per_address.rate:g} "
                          f"requests/s; retry in {wait:.2f} s")
        if is_open(method):
            return _Admitted(CallContext(ANONYMOUS, request_id), None)
        record = self._identify(metadata, context, method, address)
        wait = self._limiter.wait_needed(record.principal) if self._limiter else 0.0
        if wait:
            assert self._limiter is not None
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"{record.principal} is over its limit of {self._limiter.rate:g} "
                          f"requests/s; retry in {wait:.2f} s")
        wait = self._guards.total.take("all")
        if wait:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"the service is over its limit of {self._guards.total.rate:g} "
                          f"requests/s for all callers; retry in {wait:.2f} s")
        call = CallContext(record.principal, request_id, record.role, tuple(record.tenants))
        return _Admitted(call, record)

    def _identify(self, metadata: dict[str, str], context: grpc.ServicerContext, method: str,
                  address: str) -> TokenRecord:
        try:
            return self._authenticator.identify(metadata.get("authorization", ""),
                                                lambda: _certificate_name(context), method)
        except AuthError as error:
            if error.record is not None and self._refused is not None:
                self._refused(error.record.principal, error.record.role, method,
                              _current.get().request_id)
            if error.code == "UNAUTHENTICATED":
                address = address or peer_address(context)
                wait = self._guards.failures.take(address)
                if wait:
                    context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                  f"too many failed authentications from {address}; retry "
                                  f"in {wait:.2f} s")
            context.abort(getattr(grpc.StatusCode, error.code), str(error))


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


_DONE = object()  # what a synchronous stream's last step gives back


class AioCallContextInterceptor(aio.ServerInterceptor):
    """The asyncio twin of `CallContextInterceptor`, for the `grpc.aio` server: the same
    authentication, roles, tenants, limits, count of open streams, log line and outcome,
    from the same code. Synchronous behaviours run on the pool with a `ThreadContext`
    (their checks too, so a refusal written to the history does not wait on the loop),
    except the `@on_loop` ones (AgentService: memory and short locks), which run on the
    loop with their checks: there a refused role's access record is written on the loop,
    at most once a minute per principal and method. Asynchronous ones (the watchers'
    streams) run on the loop, their checks on the pool.
    `calls` None: no checks (a loopback server of the process's own, as for replays), only
    the bridge that lets synchronous servicers run on the asyncio server."""

    def __init__(self, calls: CallContextInterceptor | None,
                 pool: futures.ThreadPoolExecutor) -> None:
        self._calls = calls
        self._pool = pool
        self._wrapped: dict[str, Any] = {}

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]],
                                details: grpc.HandlerCallDetails) -> Any:
        return _wrapper(self._wrapped, await continuation(details), details.method,
                        self._wrap)

    def _wrap(self, handler: Any, method: str) -> Any:
        behaviour, make = _shape(handler)
        codecs = {"request_deserializer": handler.request_deserializer,
                  "response_serializer": _bytes_through(handler.response_serializer)
                  if handler.response_streaming else handler.response_serializer}
        asynchronous = (inspect.iscoroutinefunction(behaviour)
                        or inspect.isasyncgenfunction(behaviour))
        if asynchronous:
            if self._calls is None:
                return make(behaviour, **codecs)
            if inspect.isasyncgenfunction(behaviour):
                return make(self._async_stream(behaviour, method), **codecs)
            return make(self._async_unary(behaviour, method, handler.request_streaming
                                          or handler.response_streaming), **codecs)
        sync = behaviour if self._calls is None else self._calls.guarded(
            behaviour, method, handler.request_streaming, handler.response_streaming)
        requests = handler.request_streaming
        if handler.response_streaming:
            async def answers(request: Any, context: Any) -> AsyncIterator[Any]:
                if requests:
                    request = _blocking(request, asyncio.get_running_loop())
                async for item in self._drive(sync, request, ThreadContext(context)):
                    yield item

            return make(answers, **codecs)

        if getattr(behaviour, "on_loop", False) and not requests:
            async def inline(request: Any, context: Any) -> Any:
                threaded_context = ThreadContext(context, watched=False)
                try:
                    return sync(request, threaded_context)
                except Aborted as aborted:
                    await send_abort(threaded_context, aborted)

            return make(inline, **codecs)

        async def answer(request: Any, context: Any) -> Any:
            if requests:
                request = _blocking(request, asyncio.get_running_loop())
            threaded_context = ThreadContext(context)
            return await in_thread(threaded_context, sync, request, threaded_context)

        return make(answer, **codecs)

    async def _drive(self, sync: Callable[..., Iterator[Any]], request: Any,
                     context: Any) -> AsyncIterator[Any]:
        """A synchronous stream, each step on the pool: no thread is held between two
        messages. Once the call ends, the generator is closed (its `finally`, which gives
        the stream's place back) after the step it may be in."""
        run = contextvars.copy_context().run
        answers: Any = run(sync, request, context)
        step: futures.Future[Any] | None = None
        try:
            while True:
                step = self._pool.submit(run, next, answers, _DONE)  # type: ignore[arg-type]
                item = await asyncio.wrap_future(step)
                if item is _DONE:
                    return
                yield item
        except Aborted as aborted:
            await send_abort(context, aborted)
        finally:
            def close(_: object = None) -> None:
                with suppress(RuntimeError):  # the pool is shut: the process is ending
                    self._pool.submit(run, answers.close)

            if step is not None and not step.done():
                step.add_done_callback(close)
            else:
                close()

    def _async_unary(self, behaviour: Callable[..., Awaitable[Any]], method: str,
                     stream: bool) -> Callable[..., Awaitable[Any]]:
        """A coroutine: a unary call, or a stream written with `context.write` (health's
        Watch, an open method; such a stream is not ended when a token is revoked, so
        the servicers' streams are asynchronous generators)."""
        calls = self._calls
        assert calls is not None

        async def answer(request: Any, context: Any) -> Any:
            threaded_context: Any = ThreadContext(context)
            run = contextvars.copy_context().run
            started, token, admitted = await in_thread(
                threaded_context, run, calls._enter, threaded_context, method, stream)
            own = _current.set(admitted.call)
            try:
                return await behaviour(request, context)
            finally:
                run(calls._leave, threaded_context, method, started, token, admitted)
                with suppress(ValueError):  # finished in another context (cancelled)
                    _current.reset(own)

        return answer

    def _async_stream(self, behaviour: Callable[..., AsyncIterator[Any]],
                      method: str) -> Callable[..., AsyncIterator[Any]]:
        """The stream on the loop; ended with UNAUTHENTICATED once the token is revoked or
        expires (its servicer is given a context that turns inactive then)."""
        calls = self._calls
        assert calls is not None

        async def answers(request: Any, context: Any) -> AsyncIterator[Any]:
            threaded_context: Any = ThreadContext(context)
            run = contextvars.copy_context().run
            started, token, admitted = await in_thread(
                threaded_context, run, calls._enter, threaded_context, method, True)
            own = _current.set(admitted.call)
            revocable = (None if admitted.record is None
                         else calls._revocable(threaded_context, admitted.record))
            try:
                async for item in behaviour(request, revocable or threaded_context):
                    if revocable is not None:
                        revocable.is_active()  # asked between messages too
                        if revocable.revoked:
                            break
                    yield item
                if revocable is not None and revocable.revoked:
                    threaded_context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                           "the token was revoked or expired while the "
                                           "stream was open")
            except Aborted as aborted:
                await send_abort(context, aborted)
            finally:
                run(calls._leave, threaded_context, method, started, token, admitted)
                with suppress(ValueError):
                    _current.reset(own)

        return answers


def _bytes_through(serializer: Callable[[Any], bytes] | None) -> Callable[[Any], bytes] | None:
    """A stream's serializer that sends bytes as they are: a message serialised once for
    many streams (the status feed's changes) is not serialised again for each."""
    if serializer is None:
        return None

    def serialize(message: Any) -> bytes:
        return message if isinstance(message, bytes) else serializer(message)

    return serialize


def _blocking(requests: AsyncIterator[Any], loop: asyncio.AbstractEventLoop) -> Iterator[Any]:
    """A client's stream of requests, for a synchronous behaviour on the pool."""
    while True:
        try:
            yield asyncio.run_coroutine_threadsafe(anext(requests), loop).result()  # type: ignore[arg-type]
        except StopAsyncIteration:
            return
