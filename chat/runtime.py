"""Process-level state of the streaming path, kept in one small place on purpose.

asyncio holds only weak references to tasks: a reply task that nothing else references can
be garbage-collected mid-stream. Replies outlive the socket that started them, so this module
keeps the strong references, and lets tests and shutdown code see what is running.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sys
import weakref

logger = logging.getLogger(__name__)

_tasks: set[asyncio.Task] = set()
# The open chat sockets of this process (their consumers), closed with 1012 at shutdown.
_sockets: weakref.WeakSet = weakref.WeakSet()
# Reply id -> an event the first socket of this process to write the reply's first delta sets.
# A fast upstream fills our socket buffer faster than the reply task reads it, so the task
# reads on without pause and the first token would reach the browser with the last; the task
# waits (bounded) for this event before reading on. Process-local, like the task itself.
first_delta_written: dict[str, asyncio.Event] = {}
CLOSE_SERVICE_RESTART = 1012
SHUTDOWN_TIMEOUT = 5.0  # seconds the replies get to save their text as interrupted
CLOSE_GRACE = 0.5  # seconds for the close frames to go out


def spawn(coro, *, name: str) -> asyncio.Task:
    task = asyncio.get_running_loop().create_task(coro, name=name)
    _tasks.add(task)
    task.add_done_callback(_done)
    return task


def _done(task: asyncio.Task) -> None:
    _tasks.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.error("background task %s failed", task.get_name(), exc_info=task.exception())


def running() -> list[asyncio.Task]:
    return [t for t in _tasks if not t.done()]


def socket_opened(consumer) -> None:
    _sockets.add(consumer)


def socket_closed(consumer) -> None:
    _sockets.discard(consumer)


async def shutdown(timeout: float = SHUTDOWN_TIMEOUT, sockets: list | None = None) -> int:
    """End this process's replies and sockets before it exits (SIGTERM: a deploy, a restart).

    Every reply task is cancelled: it saves its text so far as ``interrupted`` (code
    ``server_restart``), so nothing stays ``streaming`` until a sweep and the member can
    regenerate at once. Then every chat socket is closed with 1012 (service restart), which
    browsers answer by reconnecting; the conversation's state then shows the saved text.
    ``sockets``: the consumers to close, taken when shutdown began (the server cancels their
    tasks meanwhile, and the weak registry would lose them). Returns how many replies ended.
    """
    sockets = list(_sockets) if sockets is None else sockets
    pending = running()
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=timeout)
    for consumer in sockets:
        # The consumer's own task may be cancelled by the server by now: speak to the server.
        with contextlib.suppress(Exception):
            await _close_for_restart(consumer)
    if sockets:
        # The close frames are only queued: give the reactor a moment to write them (and to
        # read the browsers' answers) before the process exits.
        await asyncio.sleep(CLOSE_GRACE)
    if pending:
        logger.info("shutdown: %d replies saved as interrupted", len(pending))
    return len(pending)


async def _close_for_restart(consumer) -> None:
    """Close a socket with 1012. ASGI lets an application send only 1000 or 3000-4999 (daphne's
    websocket library refuses the rest), so the frame goes through daphne's protocol object,
    the way daphne itself sends 1011; with another server, a normal 1000 close."""
    send = consumer.base_send
    while hasattr(getattr(send, "__self__", None), "real_send"):  # channels' session wrapper
        send = send.__self__.real_send
    protocol = send.args[0] if isinstance(send, functools.partial) and send.args else None
    if callable(getattr(protocol, "sendCloseFrame", None)) and getattr(protocol, "state", None) == protocol.STATE_OPEN:
        protocol.sendCloseFrame(code=CLOSE_SERVICE_RESTART, isReply=False)
    else:
        await consumer.base_send({"type": "websocket.close", "code": 1000})


def install_shutdown_hook() -> bool:
    """Run :func:`shutdown` when daphne's reactor shuts down. A no-op elsewhere (tests, other
    servers): Twisted's reactor is only looked at when daphne has already installed it."""
    if "twisted.internet.reactor" not in sys.modules:
        return False
    from twisted.internet import defer, reactor

    def before_shutdown():
        return defer.Deferred.fromFuture(asyncio.ensure_future(shutdown(sockets=list(_sockets))))

    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)
    return True
