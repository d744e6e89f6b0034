"""The connection extras: one table, read by the settings check and by the connection form.

It imports nothing, because Airflow reads the connection form (``get_provider_info``) while it is
still configuring itself.
"""

from __future__ import annotations

#: Connection extras: name -> (default, minimum, maximum, description). Numbers only.
NUMERIC_EXTRAS: dict[str, tuple[float, float, float, str]] = {
    "timeout": (30.0, 0.1, 600.0, "Seconds to wait for each HTTP answer (read timeout)."),
    "connect_timeout": (10.0, 0.1, 120.0, "Seconds to wait for a TCP/TLS connection."),
    "max_retries": (5, 0, 20, "Retries of one request on connection errors, timeouts, 5xx and 429."),
    "retry_max_wait": (60.0, 0.0, 3600.0, "Longest backoff between two retries, in seconds (Retry-After wins)."),
    "retry_total_seconds": (300.0, 1.0, 7200.0, "Give up retrying one request after this many seconds in all."),
    "refresh_lead": (60.0, 0.0, 3600.0, "Renew the access token this many seconds before it expires."),
    "webhook_safety_poll": (
        60.0,
        5.0,
        600.0,
        "With webhooks on: seconds between the safety polls of a wait while webhooks flow.",
    ),
}
BOOLEAN_EXTRAS: dict[str, tuple[bool, str]] = {
    "allow_insecure_http": (False, "Allow a plain http:// base URL to a non-loopback host (never for production)."),
    "verify_ssl": (True, "Verify the server's TLS certificate (use ca_bundle for a private CA instead of false)."),
    "shared_cache": (
        True,
        "Share access tokens between the task processes of one machine and user, in an encrypted file.",
    ),
}
#: Text extras: name -> description, which says what an empty value means where that is not plain.
STRING_EXTRAS: dict[str, str] = {
    "ca_bundle": "Path to a CA bundle file used to verify TLS (for a TLS-inspecting proxy). "
    "Empty: the default CA certificates.",
    "shared_cache_dir": "Directory of the shared token cache. "
    "Empty: $XDG_CACHE_HOME/airflow-provider-volteras, or ~/.cache/airflow-provider-volteras without it.",
    "webhook_signing_secret": (
        "Svix signing secret (whsec_...) of the command.updated webhook endpoint (see docs/webhooks.md)."
    ),
    "webhook_redis_conn_id": "Airflow redis connection of the webhook bus; with the signing secret, turns webhooks on.",
    "proxy": "Proxy for https requests, http://[user:password@]host:port (hook and triggers; see "
    "docs/connection-proxy.md). Empty: HTTPS_PROXY and NO_PROXY of the environment.",
}
#: String extras that are secrets: masked in logs (their names hold "secret") and a password field in the form.
SECRET_EXTRAS: frozenset[str] = frozenset({"webhook_signing_secret", "proxy"})

#: Former names, still read. Airflow masks the value of any extra whose name contains "token" (its
#: secrets masker), so the connection form showed and saved "***" for these: they were renamed.
RENAMED_EXTRAS: dict[str, str] = {
    "token_refresh_lead": "refresh_lead",
    "token_cache": "shared_cache",
    "token_cache_dir": "shared_cache_dir",
}
