"""The gRPC server on one asyncio event loop (issue 16).

The synchronous server gives each open stream a thread for as long as it is open: with
1,000 `WatchTrunkStatus` watchers, each change woke 1,000 threads that fought for the
interpreter lock with the threads answering call admission. Here the server is
`grpc.aio`, run by one thread of its own: streams are coroutines on its loop (one change to
1,000 watchers is 1,000 steps of one thread), while the servicers' synchronous methods
still run, unchanged, on a pool of `workers` threads (the loop's default executor).

`ThreadContext` is the `grpc.ServicerContext` those methods are given: `abort` raises
`Aborted`, which the coroutine that ran the method turns into the asyncio context's
`abort` (the one gRPC gives synchronous methods lacks `abort_with_status` and `code`).
`in_thread` runs such a method from a coroutine, with the caller's context variables."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable, Coroutine, Iterable
from concurrent import futures
from typing import Any, NoReturn, TypeVar

import grpc
from grpc import aio

T = TypeVar("T")


F = TypeVar("F", bound=Callable[..., Any])


def on_loop(method: F) -> F:
    """Marks a synchronous unary method that never blocks (memory and short locks only,
    as call admission): the asyncio server runs it on its loop, saving the two thread
    switches a call on the pool costs."""
    method.on_loop = True  # type: ignore[attr-defined]
    return method


class Aborted(Exception):  # noqa: N818 - what grpc's synchronous abort raises is plain too
    """A synchronous method's `context.abort`: the coroutine that ran it sends the status."""

    def __init__(self, code: grpc.StatusCode, details: str,
                 trailing: tuple[tuple[str, str | bytes], ...] = ()) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details
        self.trailing = trailing


class ThreadContext:
    """A `grpc.ServicerContext` over an asyncio servicer context, for synchronous code on
    any thread (the pool's, or the feed's asking `is_active`)."""

    def __init__(self, context: aio.ServicerContext[Any, Any], watched: bool = True) -> None:
        """`watched` False: for a call answered on the loop in one step, which no other
        thread asks about (a done callback per call is not free)."""
        self.aio = context
        self.ended = False  # the call is over (answered, failed or cancelled)
        self._code: grpc.StatusCode | None = None
        if watched:
            context.add_done_callback(self._end)  # type: ignore[arg-type]

    def _end(self, _: object) -> None:
        self.ended = True

    def abort(self, code: grpc.StatusCode, details: str = "") -> NoReturn:
        self._code = code
        raise Aborted(code, details)

    def abort_with_status(self, status: grpc.Status) -> NoReturn:
        self._code = status.code
        raise Aborted(status.code, status.details, tuple(status.trailing_metadata or ()))

    def code(self) -> grpc.StatusCode | None:
        return self._code or self.aio.code()

    def is_active(self) -> bool:
        return not self.ended and not self.aio.done()

    def add_callback(self, callback: Callable[[], None]) -> bool:
        self.aio.add_done_callback(lambda _: callback())  # type: ignore[arg-type]
        return True

    def set_trailing_metadata(self, metadata: Any) -> None:
        self.aio.set_trailing_metadata(tuple(metadata))

    def invocation_metadata(self) -> Any:
        return self.aio.invocation_metadata()

    def peer(self) -> str:
        return str(self.aio.peer())

    def auth_context(self) -> Any:
        return self.aio.auth_context()

    def time_remaining(self) -> float | None:
        remaining: float | None = self.aio.time_remaining()
        return remaining

    def set_code(self, code: grpc.StatusCode) -> None:
        self.aio.set_code(code)

    def set_details(self, details: str) -> None:
        self.aio.set_details(details)


def threaded(context: Any) -> Any:
    """A context synchronous code can use: itself when it is one, else a `ThreadContext`."""
    return context if hasattr(context, "aio") else ThreadContext(context)


async def send_abort(context: Any, aborted: Aborted) -> NoReturn:
    """Sends the status a synchronous method aborted with (raises grpc's AbortError)."""
    aio_context = context.aio if hasattr(context, "aio") else context
    await aio_context.abort(aborted.code, aborted.details, aborted.trailing)
    raise AssertionError("abort returned")  # pragma: no cover


async def in_thread(context: Any, function: Callable[..., T], *args: Any) -> T:
    """`function(*args)` on the pool, seeing the caller's context variables (who is
    calling); a `context.abort` in it becomes this call's status."""
    run = contextvars.copy_context().run
    try:
        return await asyncio.get_running_loop().run_in_executor(None, run, function, *args)
    except Aborted as aborted:
        await send_abort(context, aborted)


class AioServer:
    """`grpc.aio.server` on an event loop in a thread of its own, driven from synchronous
    code (the processes' life cycle): the same calls as a `grpc.Server`."""

    def __init__(self, workers: int, interceptors: Callable[[futures.ThreadPoolExecutor],
                                                             Iterable[aio.ServerInterceptor]]
                 = lambda _: (), options: Iterable[tuple[str, Any]] = ()) -> None:
        self.pool = futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc")
        self.loop = asyncio.new_event_loop()
        self.loop.set_default_executor(self.pool)
        self._thread = threading.Thread(target=self.loop.run_forever, name="grpc-aio",
                                        daemon=True)
        self._thread.start()
        chosen = tuple(options)

        async def make() -> aio.Server:
            return aio.server(migration_thread_pool=self.pool,
                              interceptors=tuple(interceptors(self.pool)), options=chosen)

        self.server: aio.Server = self.run(make())
        self._stopped = False
        self._generic: set[str] = set()  # services served by generic handlers

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Runs a coroutine on the server's loop and waits for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        handlers = tuple(handlers)
        self._generic.update(getattr(h, "service_name", lambda: "")() for h in handlers)
        self.server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service: str, handlers: Any) -> None:
        """Served as generic handlers (the generated code adds those first): the asyncio
        server waits for the next call of each registered method apart, an `asyncio.wait`
        over one future per method (about 60 here) for every call it accepts, where the
        generic path waits on one."""
        if service not in self._generic:
            self.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(service, handlers),))

    def add_insecure_port(self, address: str) -> int:
        async def add() -> int:
            return self.server.add_insecure_port(address)
        return self.run(add())

    def add_secure_port(self, address: str, credentials: grpc.ServerCredentials) -> int:
        async def add() -> int:
            return self.server.add_secure_port(address, credentials)
        return self.run(add())

    def start(self) -> None:
        self.run(self.server.start())

    def stop(self, grace: float | None) -> None:
        """Refuses new calls, lets those in flight finish for `grace` seconds, cancels the
        rest, then ends the loop and the pool."""
        if self._stopped:
            return
        self._stopped = True
        self.run(self.server.stop(grace))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self.loop.is_running():
            self.loop.close()
        self.pool.shutdown(wait=False)
