"""Exceptions raised by the Volteras provider.

Two families:

* ``VolterasApiError`` and its subclasses describe one failed API call: the error code from the
  API's envelope, the HTTP status, the message and the ``requestId`` to quote to Volteras support.
* ``VolterasCommandError`` and its subclasses are what a task fails with when a command did not
  execute. ``VolterasFatalCommandError`` is an ``AirflowFailException``: the task fails at once
  without using its retries. ``VolterasRetryableCommandError`` lets Airflow retry the task.

No exception message ever contains a client secret or a token.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_volteras._compat import AirflowException, AirflowFailException


class VolterasError(AirflowException):
    """Base class of every exception this provider raises."""


class VolterasInvalidInputError(VolterasError, ValueError):
    """An argument was refused before any request was sent (bad id, unknown command, out-of-range value)."""


class VolterasConfigurationError(VolterasError):
    """The Airflow connection is unusable as configured (missing credentials, unsafe base URL, bad extra)."""


class VolterasTransportError(VolterasError):
    """The request did not get an HTTP answer (connection refused or reset, timeout).

    ``maybe_sent`` is ``False`` only when the request certainly never reached the server (the
    connection could not be opened); for a create this decides whether re-sending could duplicate it.
    """

    def __init__(self, message: str, *, maybe_sent: bool) -> None:
        super().__init__(message)
        self.maybe_sent = maybe_sent


class VolterasApiError(VolterasError):
    """The API answered with an error."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status_code: int | None = None,
        request_id: str | None = None,
        data: Any = None,
        method: str | None = None,
        path: str | None = None,
        execution_id: str | None = None,
        create_applied: bool = False,
    ) -> None:
        self.code = code
        #: The execution the answer was about, when the API issued one (e.g. an unreadable create answer).
        self.execution_id = execution_id
        #: True when this error answered a create that the API probably applied: never send it again.
        self.create_applied = create_applied
        self.status_code = status_code  # type: ignore[assignment]  # AirflowException's is an HTTPStatus
        self.api_message = message
        self.request_id = request_id
        self.data = data
        self.method = method
        self.path = path
        super().__init__(self._render())

    def _render(self) -> str:
        where = f"{self.method} {self.path}: " if self.method and self.path else ""
        parts = [f"{where}{self.api_message}"]
        detail = ", ".join(
            f"{k}={v}"
            for k, v in (("code", self.code), ("HTTP status", self.status_code), ("requestId", self.request_id))
            if v is not None
        )
        if detail:
            parts.append(f"({detail})")
        return " ".join(parts)


class VolterasNotTheApiError(VolterasApiError, VolterasConfigurationError):
    """The connection's host does not lead to the API: a redirect (never followed) or a bare 405.
    Nothing was applied; fix the connection."""


class VolterasAuthenticationError(VolterasApiError):
    """Credentials were refused, the token was not accepted twice, or the account lacks a needed scope."""


class VolterasPermissionError(VolterasApiError):
    """The action is not permitted for this organization (``NOT_PERMITTED``)."""


class VolterasNotFoundError(VolterasApiError):
    """The vehicle or execution does not exist for this organization (``RESOURCE_NOT_FOUND``)."""


class VolterasValidationError(VolterasApiError):
    """The API refused the request's content (``REQUEST_VALIDATION_ERROR`` and pagination errors)."""


class VolterasCommandInProgressError(VolterasApiError):
    """A command of the same type is already pending on the vehicle (``COMMAND_ALREADY_IN_PROGRESS``)."""

    #: Set by the create when an earlier attempt of the same call may have been applied: the pending
    #: command is then probably this call's own, not another sender's.
    maybe_ours: bool = False


class VolterasRateLimitError(VolterasApiError):
    """The API answered 429; ``retry_after`` holds its ``Retry-After`` in seconds when it sent one."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class VolterasServerError(VolterasApiError):
    """The API failed on its side (5xx or ``SERVER_ERROR``)."""


class VolterasUnexpectedResponseError(VolterasApiError):
    """The answer could not be understood: not JSON, JSON of the wrong shape, or an unknown status code."""


#: Errors worth repeating the same request for, after a wait.
TRANSIENT_ERRORS: tuple[type[VolterasError], ...] = (
    VolterasTransportError,
    VolterasServerError,
    VolterasRateLimitError,
)


class VolterasCommandError(VolterasError):
    """A command did not execute (or could not be confirmed). Carries everything a person needs to act."""

    retryable: bool = True

    def __init__(
        self,
        message: str,
        *,
        vehicle_id: str,
        command: str,
        execution_id: str | None = None,
        reason: str | None = None,
        delay_kind: str | None = None,
        rate_limit_window_seconds: int | None = None,
    ) -> None:
        super().__init__(message)
        self.vehicle_id = vehicle_id
        self.command = command
        self.execution_id = execution_id
        self.reason = reason
        self.delay_kind = delay_kind
        self.rate_limit_window_seconds = rate_limit_window_seconds


class VolterasRetryableCommandError(VolterasCommandError):
    """The command failed for a reason that may pass: Airflow retries the task (and sends it again)."""

    retryable = True


class VolterasFatalCommandError(VolterasCommandError, AirflowFailException):
    """The command failed for a reason a person must fix: the task fails now, retries are not used."""

    retryable = False
