"""Access tokens: the process-wide cache and the renewal and 401-renew flows both transports drive."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_volteras._core.answers import error_from_response, is_auth_rejection, parse_token
from airflow_provider_volteras._core.settings import ClientSettings
from airflow_provider_volteras._core.wire import ApiRequest, RawResponse, token_request
from airflow_provider_volteras.exceptions import (
    VolterasApiError,
    VolterasAuthenticationError,
    VolterasError,
)

# ---------------------------------------------------------------------------------------------
# Tokens
# ---------------------------------------------------------------------------------------------


@dataclass
class _Token:
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: float
    lifetime: float = math.inf


def refresh_lead(settings: ClientSettings, lifetime: float) -> float:
    """Seconds before expiry to renew: the connection's lead, but never more than half the token's
    lifetime (a lead longer than the lifetime would request a token on every call)."""
    return min(settings.token_refresh_lead, lifetime / 2)


class TokenCache:
    """Access tokens per credentials (see ``ClientSettings.cache_key``), shared by every client in the process.

    Only dictionary operations happen under its lock, so async code may use it too. Renewal itself is
    serialised by the transports (a thread lock or an asyncio lock per key), so concurrent callers
    make one token request.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, _Token] = {}
        self.clock = clock

    def valid(self, settings: ClientSettings) -> str | None:
        with self._lock:
            tok = self._tokens.get(settings.cache_key)
        if tok and self.clock() < tok.expires_at - refresh_lead(settings, tok.lifetime):
            return tok.access_token
        return None

    def refresh_token(self, settings: ClientSettings) -> str | None:
        with self._lock:
            tok = self._tokens.get(settings.cache_key)
        return tok.refresh_token if tok else None

    def store(
        self,
        settings: ClientSettings,
        access: str,
        refresh: str | None,
        expires_in: float,
        lifetime: float | None = None,
    ) -> None:
        """Keep a token valid for ``expires_in`` more seconds (``lifetime``: its whole life, if longer)."""
        with self._lock:
            self._tokens[settings.cache_key] = _Token(
                access, refresh, self.clock() + expires_in, expires_in if lifetime is None else lifetime
            )

    def held(self, settings: ClientSettings) -> str | None:
        """The access token held for these credentials, even one that expired or was refused."""
        with self._lock:
            tok = self._tokens.get(settings.cache_key)
        return tok.access_token if tok else None

    def lifetime(self, settings: ClientSettings) -> float | None:
        with self._lock:
            tok = self._tokens.get(settings.cache_key)
        return tok.lifetime if tok else None

    def invalidate(self, settings: ClientSettings, access_token: str | None = None) -> None:
        """Forget the access token (only if it is still ``access_token``), keeping the refresh token."""
        with self._lock:
            tok = self._tokens.get(settings.cache_key)
            if tok and (access_token is None or tok.access_token == access_token):
                tok.expires_at = -math.inf

    def drop_refresh(self, settings: ClientSettings) -> None:
        with self._lock:
            tok = self._tokens.get(settings.cache_key)
            if tok:
                tok.refresh_token = None

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()


TOKEN_CACHE = TokenCache()


def _auth_error(err: VolterasApiError, message: str) -> VolterasAuthenticationError:
    """An authentication error that says what to check, keeping the API's code, status and requestId."""
    return VolterasAuthenticationError(
        message,
        code=err.code,
        status_code=err.status_code,
        request_id=err.request_id,
        method=err.method,
        path=err.path,
    )


class RenewToken:
    """What :func:`call_flow` yields when it needs a fresh access token from the transport."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "RENEW_TOKEN"


RENEW_TOKEN = RenewToken()

#: What a call flow yields: a request to send (answered with its ``RawResponse``) or ``RENEW_TOKEN``
#: (answered with an access token).
Step = ApiRequest | RenewToken


def renew_flow(
    settings: ClientSettings, cache: TokenCache
) -> Generator[ApiRequest, RawResponse, tuple[str, str | None]]:
    """Get a new access token: the refresh grant when a refresh token is held, else client credentials.

    Returns ``(access_token, refresh_token)`` and stores them in ``cache``. Whatever goes wrong with
    the refresh grant (refused, a server error, no answer, an unreadable answer), the refresh token is
    dropped and client credentials are used instead: a broken refresh grant never sticks.
    """
    refresh = cache.refresh_token(settings)
    if refresh:
        request = token_request(settings, refresh)
        try:
            resp = yield request
            if 200 <= resp.status < 300:
                access, new_refresh, expires_in = parse_token(resp, request)
                cache.store(settings, access, new_refresh or refresh, expires_in)
                return access, new_refresh
        except VolterasError:
            pass  # the transport's error for this request, or an unreadable answer: fall back below
        cache.drop_refresh(settings)
    request = token_request(settings)
    resp = yield request
    try:
        access, new_refresh, expires_in = parse_token(resp, request)
    except VolterasAuthenticationError as err:
        raise _auth_error(
            err, f"the client id or secret of connection '{settings.conn_id}' was refused ({err.api_message})"
        ) from None
    cache.store(settings, access, new_refresh or refresh, expires_in)
    return access, new_refresh


def call_flow(settings: ClientSettings, cache: TokenCache, request: ApiRequest) -> Generator[Step, Any, RawResponse]:
    """Send ``request`` with a bearer token; on a 401 renew the token once and resend.

    Yields ``RENEW_TOKEN`` (the transport answers with an access token) or an ``ApiRequest`` (the
    transport answers with its ``RawResponse``). Returns the final ``RawResponse``; a second 401
    raises ``VolterasAuthenticationError``.
    """
    token = cache.valid(settings)
    if token is None:
        token = yield RENEW_TOKEN
    resp: RawResponse = yield request.with_token(token)
    if not is_auth_rejection(resp):
        return resp
    cache.invalidate(settings, token)
    token = yield RENEW_TOKEN
    resp = yield request.with_token(token)
    if is_auth_rejection(resp):
        err = error_from_response(resp, request)
        raise _auth_error(
            err,
            f"the API refused a freshly issued token ({err.api_message}); check that the client of connection "
            f"'{settings.conn_id}' has the scope this endpoint needs (vehicle:commands for commands)",
        )
    return resp
