"""Which proxy the API is reached through: decided here, once, for both transports.

The connection's ``proxy`` extra wins; otherwise ``HTTPS_PROXY`` (``https_proxy`` first, as curl and
``requests`` read it) unless ``NO_PROXY`` names the API's host. Only ``https`` goes through a proxy:
plain ``http`` (loopback, or ``allow_insecure_http``) always goes direct, since a proxy would see the
client secret in clear. The transports pass the choice on (``proxies=`` for ``requests``, ``proxy=`` and
``proxy_auth=`` for ``aiohttp``) and read no proxy from the environment themselves.

A proxy's credentials are secrets: never in a repr, a message or a log line. Messages show a proxy as
``http://host:port``.
"""

from __future__ import annotations

import base64
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

from airflow_provider_volteras.exceptions import VolterasConfigurationError, VolterasTransportError

if TYPE_CHECKING:
    from airflow_provider_volteras._core.settings import ClientSettings
    from airflow_provider_volteras._core.wire import ApiRequest

#: Where a proxy given by the connection comes from (as messages name it).
FROM_EXTRA = "the connection's proxy extra"


@dataclass(frozen=True)
class Proxy:
    """An ``http://`` proxy that tunnels ``https`` with ``CONNECT``; ``url`` holds no credentials."""

    url: str
    """``http://host:port``: what messages show and ``aiohttp`` is given."""
    source: str
    """Where it was configured: :data:`FROM_EXTRA` or the environment variable's name."""
    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)
    given: str = field(default="", repr=False)
    """The text it was read from, as written (it may hold the credentials)."""

    @property
    def has_credentials(self) -> bool:
        return bool(self.username or self.password)

    @property
    def with_credentials(self) -> str:
        """The URL with the credentials percent-encoded in it (what ``requests`` is given)."""
        if not self.has_credentials:
            return self.url
        scheme, rest = self.url.split("://", 1)
        return f"{scheme}://{quote(self.username, safe='')}:{quote(self.password, safe='')}@{rest}"

    @property
    def authorization(self) -> str | None:
        """The ``Proxy-Authorization`` header value (Basic), or ``None`` without credentials."""
        if not self.has_credentials:
            return None
        pair = f"{self.username}:{self.password}"
        try:
            raw = pair.encode("latin-1")  # as requests encodes it
        except UnicodeEncodeError:
            raw = pair.encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every form of the credentials a log line could carry: each is masked like the client secret."""
        if self.authorization is None:
            return ()
        basic = self.authorization.removeprefix("Basic ")
        forms = (self.given.strip(), self.with_credentials, self.password, quote(self.password, safe=""), basic)
        return tuple(dict.fromkeys(s for s in forms if s))

    def redact(self, text: str) -> str:
        """``text`` with every form of the credentials replaced by ``***``."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text


def parse_proxy(value: str, source: str) -> Proxy:
    """Read a proxy URL (``http://[user:password@]host[:port]``; ``host:port`` alone means ``http://``).

    Raises ``VolterasConfigurationError``; its message never repeats the value (it may hold a password).
    """
    text = value.strip()
    if not text:
        raise VolterasConfigurationError(f"{_capital(source)} is empty.")
    if "://" not in text:
        text = f"http://{text}"
    try:
        parts = urlsplit(text)
        port = parts.port or 80
    except ValueError:
        raise VolterasConfigurationError(
            f"{_capital(source)} is not a valid URL; write it as http://host:port or http://user:password@host:port "
            "(the value is not shown: it may hold a password)."
        ) from None
    hostname = parts.hostname or ""
    if parts.scheme != "http":
        raise VolterasConfigurationError(
            f"{_capital(source)} has the scheme {parts.scheme[:20]!r}; only http:// proxies are supported (they "
            "tunnel https with CONNECT). SOCKS and https:// proxies are not."
        )
    if not hostname or not hostname.isascii() or any(c.isspace() or not c.isprintable() for c in hostname):
        raise VolterasConfigurationError(f"{_capital(source)} has no valid host; write it as http://host:port.")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise VolterasConfigurationError(
            f"{_capital(source)} must be scheme, host and port only (http://host:port), without a path or query."
        )
    host = f"[{hostname}]" if ":" in hostname else hostname
    return Proxy(
        url=f"http://{host}:{port}",
        source=source,
        username=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        given=value,
    )


def choose_proxy(settings: ClientSettings, environ: Mapping[str, str] | None = None) -> Proxy | None:
    """The proxy for the connection's API, or ``None`` to go direct (``environ``: ``os.environ`` by default)."""
    parts = urlsplit(settings.base_url)
    if parts.scheme != "https":
        return None  # plain http is never handed to a proxy (it would see the Basic secret in clear)
    if settings.proxy is not None:
        return settings.proxy
    env = os.environ if environ is None else environ
    name, value = _variable(env, "https_proxy")
    if not value:
        return None
    _, no_proxy = _variable(env, "no_proxy")
    if no_proxy and bypassed(parts.hostname or "", parts.port or 443, no_proxy):
        return None
    return parse_proxy(value, f"the {name} environment variable")


def _variable(env: Mapping[str, str], lower: str) -> tuple[str, str]:
    """The lower-case variable wins when set, even empty (then it unsets), as for curl and ``urllib``."""
    if lower in env:
        return lower, env[lower].strip()
    upper = lower.upper()
    return upper, env.get(upper, "").strip()


def bypassed(hostname: str, port: int, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` names the host, as curl and ``requests`` read it: ``*``; a host or a domain
    (``example.com`` and ``.example.com`` both match its subdomains), optionally with ``:port``; or, for an
    IP address, the address or an IP network (``10.0.0.0/8``)."""
    host = hostname.lower().strip("[]")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if entry == "*":
            return True
        if "/" in entry:
            try:
                if address is not None and address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name, wanted = entry, ""
        if entry.startswith("["):  # [IPv6]:port
            name, _, rest = entry[1:].partition("]")
            wanted = rest.removeprefix(":")
        elif entry.count(":") == 1:  # host:port (an IPv6 address without brackets has several colons)
            name, wanted = entry.split(":")
        name = name.lstrip("*").lstrip(".")
        if not name or (wanted and wanted != str(port)):
            continue
        if host == name or (address is None and host.endswith(f".{name}")):
            return True
    return False


def tunnel_target(settings: ClientSettings) -> str:
    """``host:port`` of the API, as a ``CONNECT`` names it."""
    parts = urlsplit(settings.base_url)
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
    return f"{host}:{parts.port or 443}"


def proxy_failure(
    request: ApiRequest,
    settings: ClientSettings,
    proxy: Proxy,
    err: BaseException,
    *,
    reached: bool,
    status: int | None = None,
) -> VolterasTransportError:
    """The error for a request stopped at the proxy, from either transport: the proxy could not be reached
    (``reached=False``) or it refused the tunnel (``status``: its answer to ``CONNECT``, when the transport
    knows it). The request never reached the API, so it is not ``maybe_sent``: sending it again is safe.
    """
    detail = proxy.redact(f"{type(err).__name__}: {str(err) or type(err).__name__}")
    if len(detail) > 300:
        detail = detail[:300] + "..."
    target = tunnel_target(settings)
    credentials = f"the user and password in {proxy.source}"
    if not reached:
        what = (
            f"could not reach the proxy {proxy.url} (from {proxy.source}): {detail}. Check the proxy's address "
            "and that it is running"
        )
    elif status == 407:
        what = f"the proxy {proxy.url} (from {proxy.source}) refused the tunnel to {target} with HTTP 407: " + (
            f"it refused the credentials. Check {credentials}"
            if proxy.has_credentials
            else f"it asks for credentials. Put them in {proxy.source} (http://user:password@host:port)"
        )
    else:
        answered = f" with HTTP {status}" if status is not None else ""
        what = (
            f"the proxy {proxy.url} (from {proxy.source}) refused the tunnel to {target}{answered} ({detail}). "
            f"Check that the proxy allows CONNECT to {target}"
        )
        if status is None:
            what += f", and {credentials} if it answered 407 (credentials refused)"
    return VolterasTransportError(
        f"{request.describe()} failed: {what}. Nothing reached the API: sending the request again is safe.",
        maybe_sent=False,
    )


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]
