"""The async Volteras client used by triggers (``aiohttp`` transport).

A thin shell around :mod:`airflow_provider_volteras._core`: the same requests, parsing, errors,
token cache and retry policy as ``VolterasHook``. Triggers of one connection running in one event
loop share a single ``aiohttp.ClientSession`` (one connection pool), one token-renewal lock and a cap
on requests in flight, so a thousand waiting triggers make one token request, not a thousand.

Imported only by triggers at run time (never when a DAG file is parsed).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import tenacity
from yarl import URL

from airflow_provider_volteras._core.answers import parse_execution
from airflow_provider_volteras._core.proxy import Proxy, choose_proxy, proxy_failure
from airflow_provider_volteras._core.retry import retry_kwargs
from airflow_provider_volteras._core.settings import ClientSettings, missing_connection_message
from airflow_provider_volteras._core.tokens import TOKEN_CACHE, RenewToken, Step, call_flow, renew_flow
from airflow_provider_volteras._core.wire import (
    READ_CHUNK,
    AnswerReader,
    ApiRequest,
    RawResponse,
    adrive,
    get_execution_request,
    transport_error,
)
from airflow_provider_volteras.exceptions import VolterasConfigurationError, VolterasTransportError

T = TypeVar("T")

#: Requests in flight at once per shared session; more wait their turn here, in order.
MAX_IN_FLIGHT = 16
#: How long a connection's settings read with ``aget_connection`` are reused by new triggers.
SETTINGS_TTL = 60.0


def ssl_context(settings: ClientSettings) -> ssl.SSLContext | bool:
    """What aiohttp's ``ssl=`` takes for the connection's ``verify_ssl`` / ``ca_bundle``."""
    if settings.verify is False:
        return False
    if settings.verify is True:
        return True
    try:
        return ssl.create_default_context(cafile=settings.verify)
    except (OSError, ssl.SSLError) as err:
        raise VolterasConfigurationError(
            f"Connection '{settings.conn_id}': the ca_bundle {settings.verify!r} cannot be read ({err})."
        ) from None


@dataclass
class _Shared:
    """What the triggers of one connection share in one event loop."""

    session: aiohttp.ClientSession
    renew_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    in_flight: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_IN_FLIGHT))
    users: int = 0


_POOL: dict[tuple[int, str, float, float, str], _Shared] = {}
#: Per event loop (weakly held, so a closed loop's entries go with it): conn_id -> (settings, expiry).
_SETTINGS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, tuple[ClientSettings, float]]] = (
    weakref.WeakKeyDictionary()
)


async def _mask(secret: str | None) -> None:
    if secret:
        from airflow_provider_volteras._compat import amask_secret

        await amask_secret(secret)


class AsyncVolterasClient:
    """Read command executions asynchronously. Get one with ``async with AsyncVolterasClient.open(conn_id)``.

    Each client has its own retry settings (those of its connection); only the HTTP session, the
    renewal lock and the in-flight cap are shared.
    """

    def __init__(
        self, settings: ClientSettings, shared: _Shared, log: logging.Logger | Any, proxy: Proxy | None = None
    ) -> None:
        self.settings = settings
        #: Given with each request (the shared session reads no proxy from the environment).
        self.proxy = proxy
        self._proxy_url = URL(proxy.url) if proxy is not None else None
        authorization = proxy.authorization if proxy is not None else None
        self._proxy_headers = {"Proxy-Authorization": authorization} if authorization else None
        self._shared = shared
        self._cache = TOKEN_CACHE
        self.log = log
        self._retry_kwargs: dict[str, Any] | None = None  # built on the first failed attempt (see _request)

    def __repr__(self) -> str:
        return f"<AsyncVolterasClient conn_id={self.settings.conn_id!r}>"

    @classmethod
    @asynccontextmanager
    async def open(cls, conn_id: str, log: logging.Logger | Any = None) -> AsyncIterator[AsyncVolterasClient]:
        """Look the connection up with ``aget_connection`` and lend the loop's shared session for it."""
        from airflow.sdk import BaseHook

        from airflow_provider_volteras._compat import AirflowNotFoundException

        known = _SETTINGS.setdefault(asyncio.get_running_loop(), {})
        cached = known.get(conn_id)
        if cached is not None and cached[1] > time.monotonic():
            settings = cached[0]
        else:
            try:
                conn = await BaseHook.aget_connection(conn_id)
            except AirflowNotFoundException:
                raise VolterasConfigurationError(missing_connection_message(conn_id)) from None
            settings = ClientSettings.from_connection(conn)
            for secret in settings.secrets:
                await _mask(secret)
            known[conn_id] = (settings, time.monotonic() + SETTINGS_TTL)
        async with cls.lend(settings, log) as client:
            yield client

    @classmethod
    @asynccontextmanager
    async def lend(
        cls, settings: ClientSettings, log: logging.Logger | Any = None
    ) -> AsyncIterator[AsyncVolterasClient]:
        loop = asyncio.get_running_loop()
        proxy = choose_proxy(settings)  # the connection's proxy extra, else HTTPS_PROXY / NO_PROXY (https only)
        for secret in proxy.secrets if proxy is not None else ():
            await _mask(secret)
        key = (id(loop), settings.cache_key, settings.timeout, settings.connect_timeout, str(settings.verify))
        shared = _POOL.get(key)
        if shared is None:
            connector = aiohttp.TCPConnector(limit=MAX_IN_FLIGHT, ssl=ssl_context(settings))
            shared = _Shared(
                session=aiohttp.ClientSession(
                    connector=connector,
                    timeout=aiohttp.ClientTimeout(
                        total=settings.timeout, sock_connect=settings.connect_timeout, sock_read=settings.timeout
                    ),
                    # No proxy from the environment here: each request is given the one the core chose
                    # (never one for plain http, which would show the Basic secret to the proxy).
                    trust_env=False,
                    # Bodies are decoded by the core (``AnswerReader``), whose decoded size is bounded.
                    auto_decompress=False,
                )
            )
            _POOL[key] = shared
        shared.users += 1
        try:
            yield cls(settings, shared, log or logging.getLogger(__name__), proxy)
        finally:
            shared.users -= 1
            if shared.users == 0 and _POOL.get(key) is shared:
                del _POOL[key]
                await shared.session.close()

    # -- transport ----------------------------------------------------------------------------

    async def _send(self, request: ApiRequest) -> RawResponse:
        settings = self.settings
        failure: VolterasTransportError
        try:
            async with self._shared.in_flight:
                async with self._shared.session.request(
                    request.method,
                    URL(request.url(settings), encoded=True),
                    data=request.body(),
                    headers=request.headers(settings),
                    allow_redirects=False,
                    proxy=self._proxy_url,
                    proxy_headers=self._proxy_headers,
                ) as resp:
                    # The session does not decompress: the core decodes with a bound on the decoded size.
                    headers = {k.lower(): v for k, v in resp.headers.items()}
                    reader = AnswerReader(request, resp.status, headers)
                    async for chunk in resp.content.iter_chunked(READ_CHUNK):
                        reader.feed(chunk)
                    return RawResponse(resp.status, headers, reader.finish())
        except aiohttp.ClientHttpProxyError as err:  # the proxy answered CONNECT with an error
            failure = self._proxy_failure(request, err, reached=True, status=err.status)
        except aiohttp.ClientProxyConnectionError as err:
            failure = self._proxy_failure(request, err, reached=False)
        except (TimeoutError, aiohttp.ClientError) as err:
            never_sent = isinstance(err, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError))
            failure = transport_error(request, err, timed_out=isinstance(err, TimeoutError), never_sent=never_sent)
        # Raised here, outside the ``except`` block: aiohttp's error, whose repr can show the request's
        # headers (the Authorization one included), is neither its cause nor its context.
        raise failure

    def _proxy_failure(
        self, request: ApiRequest, err: aiohttp.ClientError, *, reached: bool, status: int | None = None
    ) -> VolterasTransportError:
        if self.proxy is None:  # not through our proxy (cannot happen: the session reads no proxy from the env)
            return transport_error(request, err, timed_out=False, never_sent=not reached)
        return proxy_failure(request, self.settings, self.proxy, err, reached=reached, status=status)

    async def _step(self, step: Step) -> Any:
        if isinstance(step, RenewToken):
            return await self._renew_token()
        return await self._send(step)

    async def _renew_token(self) -> str:
        async with self._shared.renew_lock:
            cached = self._cache.valid(self.settings)
            if cached is not None:
                return cached
            token, refresh = await adrive(renew_flow(self.settings, self._cache), self._send)
            await _mask(token)
            await _mask(refresh)
        return token

    async def _request(self, request: ApiRequest, parse: Callable[[RawResponse, ApiRequest], T]) -> T:
        # The first attempt runs outside tenacity: nearly every poll succeeds at once, and building and
        # iterating an ``AsyncRetrying`` per request cost about a tenth of a poll's CPU (benchmarks/).
        # A failed first attempt becomes tenacity's attempt 1, with the same start time, so the retry
        # policy (which errors, how many attempts, waits, total time, log lines) is unchanged.
        started = time.monotonic()
        try:
            resp = await adrive(call_flow(self.settings, self._cache, request), self._step)
            return parse(resp, request)
        except Exception as err:  # noqa: BLE001 - tenacity decides below, as for any attempt
            first: BaseException | None = err
        if self._retry_kwargs is None:
            self._retry_kwargs = retry_kwargs(self.settings, self.log)
        async for attempt in tenacity.AsyncRetrying(**self._retry_kwargs):
            with attempt:
                if first is not None:
                    attempt.retry_state.start_time = started
                    failed, first = first, None
                    raise failed
                resp = await adrive(call_flow(self.settings, self._cache, request), self._step)
                return parse(resp, request)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- API ----------------------------------------------------------------------------------

    async def get_command_execution(
        self, vehicle_id: str, command_execution_id: str, *, command: str | None = None
    ) -> dict[str, Any]:
        """The execution, believed only when it is about this vehicle, id and (when given) command."""
        request = get_execution_request(vehicle_id, command_execution_id)
        return await self._request(
            request,
            lambda resp, req: parse_execution(
                resp, req, vehicle_id=vehicle_id, execution_id=command_execution_id, command=command
            ),
        )
