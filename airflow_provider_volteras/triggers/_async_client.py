"""The async Volteras client used by triggers (``httpx`` transport).

It is a thin shell around :mod:`airflow_provider_volteras._protocol`: the same requests, parsing,
errors, token cache and retry policy as ``VolterasHook``. Triggers of one connection running in one
event loop share a single ``httpx.AsyncClient`` (one connection pool) and one token-renewal lock, so
a thousand waiting triggers make one token request, not a thousand.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import tenacity

from airflow_provider_volteras import _protocol as p
from airflow_provider_volteras.exceptions import VolterasConfigurationError, VolterasTransportError

T = TypeVar("T")


#: Requests in flight at once per shared client. More only queue inside httpx's pool, whose
#: bookkeeping grows with the queue; a short queue here keeps CPU per poll flat as triggers multiply.
MAX_IN_FLIGHT = 16
#: How long a connection's settings read with ``aget_connection`` are reused by new triggers.
SETTINGS_TTL = 60.0


@dataclass
class _Shared:
    http: httpx.AsyncClient
    retry: dict[str, Any]
    renew_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    in_flight: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_IN_FLIGHT))
    users: int = 0


_POOL: dict[tuple[int, str, float, float, str], _Shared] = {}
#: Per event loop (weakly held, so a closed loop's entries go with it): conn_id -> (settings, expiry).
_SETTINGS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, tuple[p.ClientSettings, float]]] = (
    weakref.WeakKeyDictionary()
)


async def _mask(secret: str | None) -> None:
    if secret:
        from airflow.sdk.log import amask_secret

        await amask_secret(secret)


async def adrive(gen: Generator[Any, Any, T], step: Callable[[Any], Awaitable[Any]]) -> T:
    """Run a protocol generator to its end, answering each thing it yields with ``await step(thing)``."""
    answer: Any = None
    while True:
        try:
            request = gen.send(answer)
        except StopIteration as stop:
            return stop.value
        answer = await step(request)


class AsyncVolterasClient:
    """Read command executions asynchronously. Get one with ``async with AsyncVolterasClient.open(conn_id)``."""

    def __init__(self, settings: p.ClientSettings, shared: _Shared, log: logging.Logger | Any) -> None:
        self.settings = settings
        self._shared = shared
        self._cache = p.TOKEN_CACHE
        self.log = log

    def __repr__(self) -> str:
        return f"<AsyncVolterasClient conn_id={self.settings.conn_id!r}>"

    @classmethod
    @asynccontextmanager
    async def open(cls, conn_id: str, log: logging.Logger | Any = None) -> AsyncIterator[AsyncVolterasClient]:
        """Look the connection up with ``aget_connection`` and lend the loop's shared client for it."""
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException

        known = _SETTINGS.setdefault(asyncio.get_running_loop(), {})
        cached = known.get(conn_id)
        if cached is not None and cached[1] > time.monotonic():
            settings = cached[0]
        else:
            try:
                conn = await BaseHook.aget_connection(conn_id)
            except AirflowNotFoundException:
                raise VolterasConfigurationError(p.missing_connection_message(conn_id)) from None
            settings = p.ClientSettings.from_connection(conn)
            await _mask(settings.client_secret)
            known[conn_id] = (settings, time.monotonic() + SETTINGS_TTL)
        async with cls.lend(settings, log) as client:
            yield client

    @classmethod
    @asynccontextmanager
    async def lend(
        cls, settings: p.ClientSettings, log: logging.Logger | Any = None
    ) -> AsyncIterator[AsyncVolterasClient]:
        loop = asyncio.get_running_loop()
        key = (id(loop), settings.cache_key, settings.timeout, settings.connect_timeout, str(settings.verify))
        shared = _POOL.get(key)
        if shared is None:
            shared = _Shared(
                http=httpx.AsyncClient(
                    base_url=settings.base_url,
                    timeout=httpx.Timeout(
                        settings.timeout, connect=settings.connect_timeout, pool=settings.timeout * 4
                    ),
                    limits=httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT),
                    verify=settings.verify,
                    follow_redirects=False,
                ),
                retry=p.retry_kwargs(settings, log or logging.getLogger(__name__)),
            )
            _POOL[key] = shared
        shared.users += 1
        try:
            yield cls(settings, shared, log or logging.getLogger(__name__))
        finally:
            shared.users -= 1
            if shared.users == 0 and _POOL.get(key) is shared:
                del _POOL[key]
                await shared.http.aclose()

    # -- transport ----------------------------------------------------------------------------

    async def _send(self, request: p.ApiRequest) -> p.RawResponse:
        settings = self.settings
        auth = httpx.BasicAuth(settings.client_id, settings.client_secret) if request.auth == "basic" else None
        try:
            async with self._shared.in_flight:
                resp = await self._shared.http.request(
                    request.method,
                    request.path,
                    params=request.params,
                    json=request.json_body,
                    data=request.form,
                    headers=request.headers(settings),
                    auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT,
                )
        except httpx.HTTPError as err:
            never_sent = isinstance(err, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
            kind = "timed out" if isinstance(err, httpx.TimeoutException) else "failed"
            raise VolterasTransportError(
                f"{request.describe()} {kind}: {type(err).__name__}: {str(err)[:300]}", maybe_sent=not never_sent
            ) from None
        return p.RawResponse(resp.status_code, {k.lower(): v for k, v in resp.headers.items()}, resp.content)

    async def _step(self, step: Any) -> Any:
        if step is p.RENEW_TOKEN:
            return await self._renew_token()
        return await self._send(step)

    async def _renew_token(self) -> str:
        async with self._shared.renew_lock:
            cached = self._cache.valid(self.settings)
            if cached is not None:
                return cached
            token, refresh = await adrive(p.renew_flow(self.settings, self._cache), self._send)
            await _mask(token)
            await _mask(refresh)
        return token

    async def _request(self, request: p.ApiRequest, parse: Callable[[p.RawResponse, p.ApiRequest], T]) -> T:
        async for attempt in tenacity.AsyncRetrying(**self._shared.retry):
            with attempt:
                resp = await adrive(p.call_flow(self.settings, self._cache, request), self._step)
                return parse(resp, request)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- API ----------------------------------------------------------------------------------

    async def get_command_execution(self, vehicle_id: str, command_execution_id: str) -> dict[str, Any]:
        request = p.get_execution_request(vehicle_id, command_execution_id)
        return await self._request(
            request,
            lambda resp, req: p.parse_execution(resp, req, vehicle_id=vehicle_id, execution_id=command_execution_id),
        )
