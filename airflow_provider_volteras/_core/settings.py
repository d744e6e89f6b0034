"""Connection settings: the extras table, their validation, and the base URL rules."""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_volteras._core.extras import (
    BOOLEAN_EXTRAS,
    NUMERIC_EXTRAS,
    RENAMED_EXTRAS,
    SECRET_EXTRAS,
    STRING_EXTRAS,
)
from airflow_provider_volteras._core.proxy import FROM_EXTRA, Proxy, parse_proxy
from airflow_provider_volteras.exceptions import (
    VolterasConfigurationError,
)

PRODUCTION_URL = "https://api.volteras.com"

# ---------------------------------------------------------------------------------------------
# Connection settings
# ---------------------------------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _renamed(conn_id: str, extra: dict[str, Any]) -> dict[str, Any]:
    """Extras under their former names (see ``RENAMED_EXTRAS``) read as the new ones, with a warning."""
    old = [name for name in extra if name in RENAMED_EXTRAS]
    if not old:
        return extra
    extra = dict(extra)
    for name in old:
        new = RENAMED_EXTRAS[name]
        value = extra.pop(name)
        if new in extra and extra[new] != value:
            raise VolterasConfigurationError(
                f"Connection '{conn_id}': extras {name} and {new} disagree; keep {new} only "
                f"({name} is its former name)."
            )
        extra[new] = value
    warnings.warn(
        f"Connection '{conn_id}': the extra(s) {', '.join(sorted(old))} are now called "
        f"{', '.join(RENAMED_EXTRAS[n] for n in sorted(old))}; Airflow masks any extra whose name contains "
        "'token', so the connection form could not show or save them. The former names still work.",
        FutureWarning,
        stacklevel=4,
    )
    return extra


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise VolterasConfigurationError(f"Connection extra '{name}' must be true or false, got {value!r}.")


def _as_number(name: str, value: Any, *, minimum: float, maximum: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise VolterasConfigurationError(f"Connection extra '{name}' must be a number, got {value!r}.") from None
    if isinstance(value, bool) or not math.isfinite(number) or not minimum <= number <= maximum:
        raise VolterasConfigurationError(
            f"Connection extra '{name}' must be a number from {minimum:g} to {maximum:g}, got {value!r}."
        )
    return number


_FORM_PREFIX = "extra__volteras__"
#: What Airflow shows (and the connection form saves back, untouched) for a secret extra: never a secret.
MASKED_PLACEHOLDER = "***"


@dataclass(frozen=True)
class ClientSettings:
    """What a client needs to talk to one Volteras organization. Built from an Airflow connection."""

    base_url: str
    client_id: str
    client_secret: str = field(repr=False)
    timeout: float = 30.0
    connect_timeout: float = 10.0
    max_retries: int = 5
    retry_max_wait: float = 60.0
    retry_total_seconds: float = 300.0
    token_refresh_lead: float = 60.0
    verify: bool | str = True
    conn_id: str = "volteras_default"
    token_cache: bool = True
    token_cache_dir: str = ""
    proxy: Proxy | None = field(default=None, repr=False)
    """The ``proxy`` extra (``_core.proxy.choose_proxy`` decides what a request goes through)."""
    #: Webhooks (docs/webhooks.md): on when both the signing secret and the bus's redis connection are set.
    webhook_signing_secret: str = field(default="", repr=False)
    webhook_redis_conn_id: str = ""
    webhook_safety_poll: float = 60.0

    @classmethod
    def from_connection(cls, conn: Any) -> ClientSettings:
        """Build settings from an Airflow ``Connection`` (login, password, host, extras)."""
        conn_id = getattr(conn, "conn_id", None) or "volteras_default"
        client_id = (conn.login or "").strip()
        client_secret = conn.password or ""
        if not client_id or not client_secret:
            raise VolterasConfigurationError(
                f"Connection '{conn_id}' needs the client id as login and the client secret as password."
            )
        try:
            extra = conn.extra_dejson or {}
        except Exception:  # noqa: BLE001 - extra that is not JSON
            raise VolterasConfigurationError(f"Connection '{conn_id}': extra is not valid JSON.") from None
        if not isinstance(extra, dict):
            raise VolterasConfigurationError(
                f"Connection '{conn_id}': extra must be a JSON object of settings, got a JSON {type(extra).__name__}."
            )
        # The connection form may store its fields as ``extra__volteras__<name>``; empty ones mean "unset".
        extra = {
            (k[len(_FORM_PREFIX) :] if k.startswith(_FORM_PREFIX) else k): v
            for k, v in extra.items()
            if v is not None and v != ""
        }
        extra = _renamed(conn_id, extra)
        known = set(NUMERIC_EXTRAS) | set(BOOLEAN_EXTRAS) | set(STRING_EXTRAS) | set(SECRET_EXTRAS)
        unknown = sorted(set(extra) - known)
        if unknown:
            raise VolterasConfigurationError(
                f"Connection '{conn_id}': unknown extra field(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}."
            )
        numbers = {
            name: _as_number(name, extra.get(name, default), minimum=lo, maximum=hi)
            for name, (default, lo, hi, _) in NUMERIC_EXTRAS.items()
        }
        flags = {name: _as_bool(name, extra.get(name, default)) for name, (default, _) in BOOLEAN_EXTRAS.items()}
        verify: bool | str = flags["verify_ssl"]
        if extra.get("ca_bundle"):
            verify = str(extra["ca_bundle"])
        base_url = validate_base_url(_host_to_url(conn), allow_insecure_http=flags["allow_insecure_http"])
        proxy = _connection_proxy(conn_id, extra.get("proxy"))
        signing_secret = str(extra.get("webhook_signing_secret") or "").strip()
        if signing_secret == MASKED_PLACEHOLDER:  # the form's placeholder for an empty secret field, saved as is
            signing_secret = ""
        redis_conn_id = str(extra.get("webhook_redis_conn_id") or "").strip()
        if bool(signing_secret) != bool(redis_conn_id):
            raise VolterasConfigurationError(
                f"Connection '{conn_id}': webhooks need both extras webhook_signing_secret and "
                "webhook_redis_conn_id (set both to turn webhooks on, or neither)."
            )
        return cls(
            base_url=base_url,
            client_id=client_id,
            client_secret=client_secret,
            timeout=numbers["timeout"],
            connect_timeout=numbers["connect_timeout"],
            max_retries=int(numbers["max_retries"]),
            retry_max_wait=numbers["retry_max_wait"],
            retry_total_seconds=numbers["retry_total_seconds"],
            token_refresh_lead=numbers["refresh_lead"],
            verify=verify,
            conn_id=conn_id,
            token_cache=flags["shared_cache"],
            token_cache_dir=os.path.expanduser(str(extra.get("shared_cache_dir") or "")),
            proxy=proxy,
            webhook_signing_secret=signing_secret,
            webhook_redis_conn_id=redis_conn_id,
            webhook_safety_poll=numbers["webhook_safety_poll"],
        )

    @property
    def cache_key(self) -> str:
        """Identifies the credentials without holding them: tokens are shared per key."""
        import hashlib

        digest = hashlib.sha256(f"{self.base_url}\0{self.client_id}\0{self.client_secret}".encode()).hexdigest()
        return digest[:32]

    @property
    def secrets(self) -> tuple[str, ...]:
        proxy = self.proxy.secrets if self.proxy is not None else ()
        return tuple(s for s in (self.client_secret, self.webhook_signing_secret, *proxy) if s)

    @property
    def webhooks(self) -> bool:
        """Whether waits listen to the ``command.updated`` webhook (through the bus) besides polling."""
        return bool(self.webhook_redis_conn_id and self.webhook_signing_secret)


def _connection_proxy(conn_id: str, value: Any) -> Proxy | None:
    """The ``proxy`` extra, checked now (before any request); unset when empty or the form's "***"."""
    if value is None or (isinstance(value, str) and value.strip() in ("", MASKED_PLACEHOLDER)):
        return None
    if not isinstance(value, str):
        raise VolterasConfigurationError(
            f"Connection '{conn_id}': extra proxy must be text (http://host:port), got {type(value).__name__}."
        )
    try:
        return parse_proxy(value, FROM_EXTRA)
    except VolterasConfigurationError as err:
        text = str(err)
        raise VolterasConfigurationError(f"Connection '{conn_id}': {text[:1].lower()}{text[1:]}") from None


def missing_connection_message(conn_id: str) -> str:
    return (
        f"The Airflow connection '{conn_id}' is not defined. Create it with conn type 'volteras' (login = client "
        f"id, password = client secret), e.g. the env var AIRFLOW_CONN_{conn_id.upper()}."
    )


def _host_to_url(conn: Any) -> str:
    host = (conn.host or "").strip()
    if not host:
        return PRODUCTION_URL
    if "://" not in host:
        scheme = (getattr(conn, "schema", None) or "https").strip() or "https"
        host = f"{scheme}://{host}"
    if getattr(conn, "port", None) and urlsplit(host).port is None:
        host = f"{host.rstrip('/')}:{conn.port}"
    return host


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        import ipaddress

        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def validate_base_url(url: str, *, allow_insecure_http: bool = False) -> str:
    """Return the normalised base URL, refusing anything unsafe or ambiguous."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as err:
        raise VolterasConfigurationError(f"The API base URL is not a valid URL ({err}).") from None
    if parts.username or parts.password or "@" in parts.netloc:
        raise VolterasConfigurationError(
            "The API base URL must not contain credentials; put the client id in login and the secret in password."
        )
    hostname = parts.hostname or ""
    if not hostname.isascii() or any(c.isspace() or not c.isprintable() for c in hostname):
        raise VolterasConfigurationError(
            f"The API base URL's host {hostname[:60]!r} must be plain ASCII without spaces (use the punycode form)."
        )
    if parts.scheme not in ("https", "http") or not hostname:
        raise VolterasConfigurationError(
            f"The API base URL must look like {PRODUCTION_URL}, got scheme {parts.scheme!r} and host {hostname!r}."
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise VolterasConfigurationError(
            "The API base URL must be scheme and host only (e.g. https://api.volteras.com), without a path, "
            "query or fragment."
        )
    if parts.scheme == "http" and not (_is_loopback(hostname) or allow_insecure_http):
        raise VolterasConfigurationError(
            f"Refusing plain http:// to {hostname}: credentials would travel unencrypted. Use https://, or set "
            "the extra allow_insecure_http=true for a host you control (loopback hosts are always allowed)."
        )
    host = f"[{hostname}]" if ":" in hostname else hostname
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")
