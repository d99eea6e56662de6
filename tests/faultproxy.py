"""A fault-injecting TCP proxy for tests: put it between a client and a real server.

``async with open_fault_proxy(host, port) as proxy:`` listens on ``proxy.port`` (on
127.0.0.1) and forwards every connection to ``host:port``. Faults are switched from the
test, synchronously:

- ``proxy.cut()``: every proxied connection is dropped at once and new connections are
  closed as soon as they are accepted (a server or network that is gone);
- ``proxy.hold()``: connections are accepted but no byte moves in either direction
  (a network that silently stalls, a server that hangs);
- ``proxy.restore()``: normal forwarding again; held bytes flow on.

With ``proxy.linger = True`` a connection the server ends stays open toward the client
(what the server sent last is delivered, its close is not): a client that has read a
server's last words but not yet its close, e.g. a backend's FATAL on an idle connection.
``proxy.server_ended`` is set once the server side of a connection ended.

Written on trio alone, so system tests can put it in front of PostgreSQL (or any TCP
service) without stopping the shared server.
"""

from __future__ import annotations

import enum
import functools
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import attrs
import trio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class Mode(enum.Enum):
    FORWARD = "forward"
    CUT = "cut"
    HOLD = "hold"


@attrs.define(eq=False)
class FaultProxy:
    """A running proxy; see the module docstring."""

    target_host: str
    target_port: int
    port: int = 0
    mode: Mode = Mode.FORWARD
    accepted: int = 0  # connections accepted so far, for assertions
    linger: bool = False  # keep the client side open after the server ended
    server_ended: trio.Event = attrs.field(factory=trio.Event)  # a server side ended
    _flowing: trio.Event = attrs.field(factory=trio.Event)
    _scopes: set[trio.CancelScope] = attrs.field(factory=set)

    def __attrs_post_init__(self) -> None:
        self._flowing.set()

    @property
    def url_host(self) -> str:
        """``127.0.0.1:<port>``: what to put into a URL instead of the real server."""
        return f"127.0.0.1:{self.port}"

    @property
    def open_connections(self) -> int:
        """Connections currently proxied."""
        return len(self._scopes)

    def cut(self) -> None:
        """Drop every connection now and refuse new ones until `restore`."""
        self.mode = Mode.CUT
        for scope in list(self._scopes):
            scope.cancel()
        self._flowing.set()

    def hold(self) -> None:
        """Stall all traffic (connections stay open) until `restore`."""
        self.mode = Mode.HOLD
        if self._flowing.is_set():
            self._flowing = trio.Event()

    def restore(self) -> None:
        """Forward normally again."""
        self.mode = Mode.FORWARD
        self._flowing.set()

    async def _wait_flowing(self) -> None:
        while not self._flowing.is_set():
            await self._flowing.wait()

    async def handle(self, client: trio.SocketStream) -> None:
        """Serve one accepted connection (called by `trio.serve_listeners`)."""
        self.accepted += 1
        if self.mode is Mode.CUT:
            await client.aclose()
            return
        with trio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                await self._proxy(client, scope)
            finally:
                self._scopes.discard(scope)
        with trio.CancelScope(shield=True):
            await client.aclose()

    async def _proxy(self, client: trio.SocketStream, scope: trio.CancelScope) -> None:
        await self._wait_flowing()
        try:
            server = await trio.open_tcp_stream(self.target_host, self.target_port)
        except OSError:
            return
        async with server, trio.open_nursery() as nursery:
            nursery.start_soon(self._pump, client, server, scope)
            nursery.start_soon(functools.partial(self._pump, server, client, scope, upstream=True))

    async def _pump(
        self,
        source: trio.SocketStream,
        sink: trio.SocketStream,
        scope: trio.CancelScope,
        *,
        upstream: bool = False,
    ) -> None:
        try:
            while True:
                data = await source.receive_some(65536)
                await self._wait_flowing()
                if not data or self.mode is Mode.CUT:
                    break
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        if upstream:
            self.server_ended.set()
            if self.linger and self.mode is not Mode.CUT:
                return  # the client end stays open until the client closes it (or a cut)
        scope.cancel()  # one side ended: end the whole connection


@asynccontextmanager
async def open_fault_proxy(target_host: str, target_port: int) -> AsyncIterator[FaultProxy]:
    """Run a `FaultProxy` to ``target_host:target_port`` for the block."""
    proxy = FaultProxy(target_host, target_port)
    async with trio.open_nursery() as nursery:
        serve = functools.partial(trio.serve_tcp, proxy.handle, 0, host="127.0.0.1")
        listeners = await nursery.start(serve)
        proxy.port = listeners[0].socket.getsockname()[1]
        try:
            yield proxy
        finally:
            nursery.cancel_scope.cancel()
