"""``VolterasHook``: the synchronous client of the Volteras Connect API (``requests`` transport)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import cached_property
from typing import Any, TypeVar, cast

import requests
import tenacity
from airflow.sdk import BaseHook

from airflow_provider_volteras._compat import AirflowNotFoundException
from airflow_provider_volteras._core.answers import (
    execution_problem,
    parse_api_access,
    parse_execution,
    parse_json_answer,
    parse_page,
    parse_rate_limits,
)
from airflow_provider_volteras._core.basics import DEFAULT_POLL_INTERVAL, STATUS_PENDING
from airflow_provider_volteras._core.custom import IDEMPOTENT_METHODS, custom_request, parse_any_answer, resend_safe
from airflow_provider_volteras._core.intent import arguments_match, describe_arguments, issued_id
from airflow_provider_volteras._core.proxy import Proxy, choose_proxy, proxy_failure
from airflow_provider_volteras._core.retry import retry_kwargs
from airflow_provider_volteras._core.settings import ClientSettings, missing_connection_message
from airflow_provider_volteras._core.tokens import TOKEN_CACHE, RenewToken, call_flow, renew_flow
from airflow_provider_volteras._core.vehicles import (
    Tag,
    Vehicle,
    VehicleSelection,
    check_selected,
    describe_selected,
    list_vehicles_request,
    parse_tags,
    parse_vehicle_page,
    read_pages,
    vehicle_tags_request,
)
from airflow_provider_volteras._core.waiting import final_read_grace
from airflow_provider_volteras._core.wire import (
    MAX_LISTING_PAGES,
    MAX_PAGE_SIZE,
    READ_CHUNK,
    RECENT_WINDOW,
    AnswerReader,
    ApiRequest,
    Pager,
    RawResponse,
    command_filter,
    connection_test_request,
    create_command_request,
    drive,
    get_execution_request,
    id_filter,
    list_executions_request,
    rate_limits_request,
    transport_error,
)
from airflow_provider_volteras.catalogue import VehicleCommand, get_command_spec
from airflow_provider_volteras.exceptions import (
    VolterasCommandInProgressError,
    VolterasConfigurationError,
    VolterasError,
    VolterasServerError,
    VolterasTransportError,
    VolterasUnexpectedResponseError,
    VolterasValidationError,
)

T = TypeVar("T")

_RENEW_LOCKS: dict[str, threading.Lock] = {}
#: Set once the API refused a ``createdAt`` listing filter (logged once per process).
_WINDOW_REFUSED = threading.Event()
_RENEW_LOCKS_GUARD = threading.Lock()


def _renew_lock(key: str) -> threading.Lock:
    with _RENEW_LOCKS_GUARD:
        return _RENEW_LOCKS.setdefault(key, threading.Lock())


def _mask(secret: str | None) -> None:
    if secret:
        from airflow_provider_volteras._compat import mask_secret

        mask_secret(secret)


class VolterasHook(BaseHook):
    """Talk to the Volteras Connect API with OAuth 2.0 client credentials.

    The connection's login is the client id, its password the client secret and its host the API
    base URL (``https://api.volteras.com`` when empty; the sandbox is
    ``https://api.sandbox.volteras.com``). Access tokens are cached per credentials in the process
    and renewed shortly before they expire. Requests share one ``requests.Session``, each has a
    timeout, and transient failures (connection errors, timeouts, 5xx, 429) are retried with
    exponential backoff that honours ``Retry-After``.

    :param volteras_conn_id: The Airflow connection to use.
    """

    conn_name_attr = "volteras_conn_id"
    default_conn_name = "volteras_default"
    conn_type = "volteras"
    hook_name = "Volteras"

    def __init__(self, volteras_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.volteras_conn_id = volteras_conn_id
        self._token_cache = TOKEN_CACHE
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"<VolterasHook conn_id={self.volteras_conn_id!r}>"

    # -- connection ---------------------------------------------------------------------------

    @cached_property
    def settings(self) -> ClientSettings:
        try:
            conn = self.get_connection(self.volteras_conn_id)
        except AirflowNotFoundException:
            raise VolterasConfigurationError(missing_connection_message(self.volteras_conn_id)) from None
        settings = ClientSettings.from_connection(conn)
        for secret in settings.secrets:
            _mask(secret)
        return settings

    @cached_property
    def session(self) -> requests.Session:
        settings = self.settings
        if isinstance(settings.verify, str) and not os.path.isfile(settings.verify):
            raise VolterasConfigurationError(
                f"Connection '{settings.conn_id}': the ca_bundle file {settings.verify[:200]!r} does not exist."
            )
        session = requests.Session()
        session.verify = settings.verify
        # The proxy is chosen by the core (``choose_proxy``: the proxy extra, else HTTPS_PROXY/NO_PROXY, and
        # never one for plain http) and given with each request: requests reads nothing from the environment.
        session.trust_env = False
        return session

    @cached_property
    def proxy(self) -> Proxy | None:
        """The proxy this hook's requests go through (``None``: direct); its credentials are masked."""
        proxy = choose_proxy(self.settings)
        for secret in proxy.secrets if proxy is not None else ():
            _mask(secret)
        return proxy

    @cached_property
    def _proxies(self) -> dict[str, str]:
        return {"https": self.proxy.with_credentials} if self.proxy is not None else {}

    def get_conn(self) -> requests.Session:
        return self.session

    def close(self) -> None:
        if "session" in self.__dict__:
            self.session.close()
            del self.__dict__["session"]

    # -- transport ----------------------------------------------------------------------------

    @contextmanager
    def deadline(self, until: float | None) -> Iterator[None]:
        """Within this block, in this thread, every call (its retries and ``Retry-After`` pauses included)
        ends by ``until`` (epoch seconds)."""
        previous = getattr(self._local, "deadline", None)
        self._local.deadline = until if previous is None or until is None else min(until, previous)
        try:
            yield
        finally:
            self._local.deadline = previous

    def _deadline(self) -> float | None:
        """The wall-clock time (epoch seconds) the current wait must end by, in this thread; ``None`` outside one."""
        return getattr(self._local, "deadline", None)

    def _send(self, request: ApiRequest) -> RawResponse:
        """One HTTP exchange, whole answer included, within ``timeout`` seconds of wall-clock time (and
        within the current wait's deadline): a body that trickles in byte by byte cannot hold it longer."""
        settings = self.settings
        limit = time.time() + settings.timeout
        deadline = self._deadline()
        if deadline is not None:
            limit = min(limit, deadline)
        read_timeout = max(0.05, min(settings.timeout, limit - time.time()))
        failure: VolterasTransportError
        try:
            resp = self.session.request(
                request.method,
                request.url(settings),
                data=request.body(),
                headers=request.headers(settings),
                timeout=(settings.connect_timeout, read_timeout),
                allow_redirects=False,
                stream=True,
                proxies=self._proxies,
            )
            try:
                headers = {k.lower(): v for k, v in resp.headers.items()}
                # Raw bytes, decoded by the core with a bound on the decoded size (urllib3's own decoding
                # may return far more than asked for): a compressed bomb never sits in memory whole.
                reader = AnswerReader(request, resp.status_code, headers)
                while chunk := resp.raw.read1(READ_CHUNK, decode_content=False):
                    reader.feed(chunk)
                    if time.time() > limit:
                        raise requests.exceptions.ReadTimeout(
                            f"the answer was not complete after {settings.timeout:g} s (or the wait's deadline)"
                        )
                return RawResponse(resp.status_code, headers, reader.finish())
            finally:
                resp.close()
        except requests.exceptions.ProxyError as err:
            failure = _proxy_error(request, settings, self.proxy, err)
        except requests.exceptions.RequestException as err:
            failure = _transport_error(request, err)
        except urllib3_errors() as err:
            failure = transport_error(request, err, timed_out=isinstance(err, TimeoutError), never_sent=False)
        # Raised here, outside the ``except`` blocks: the library's error (whose repr may show the request's
        # headers, the Authorization one included) is neither its cause nor its context.
        raise failure

    def _step(self, step: Any) -> Any:
        if isinstance(step, RenewToken):
            return self._renew_token()
        return self._send(step)

    def _renew_token(self) -> str:
        settings = self.settings
        with _renew_lock(settings.cache_key):
            cached = self._token_cache.valid(settings)
            if cached is not None:
                return cached
            if settings.token_cache:
                shared = self._renew_through_file()
                if shared is not None:
                    return shared
            return self._renew_here()

    def _renew_here(self) -> str:
        token, refresh = drive(renew_flow(self.settings, self._token_cache), self._send)
        _mask(token)
        _mask(refresh)
        return token

    def _renew_through_file(self) -> str | None:
        """A token shared with the machine's other processes (renewed once for all of them, under the
        file's lock); ``None`` when the file cannot be used (then this process renews on its own)."""
        from airflow_provider_volteras.hooks._token_file import FileToken, TokenFile, remaining, warn_once

        settings, cache = self.settings, self._token_cache
        store = TokenFile(settings, self.log)
        # The lock is waited for no longer than a request may take (nor past the current wait's deadline).
        until = time.time() + settings.timeout
        deadline = self._deadline()
        if deadline is not None:
            until = min(until, deadline)
        try:
            with store.locked(until):
                stored = store.read()
                # The token this process holds was refused or has expired: the file's copy of the very
                # same token is no better (another process may have stored a newer one, though).
                if stored is not None and stored.access_token != cache.held(settings):
                    left = remaining(stored)
                    cache.store(settings, stored.access_token, stored.refresh_token, left, stored.lifetime)
                    _mask(stored.access_token)
                    _mask(stored.refresh_token)
                    token = cache.valid(settings)
                    if token is not None:
                        return token
                token = self._renew_here()
                lifetime = cache.lifetime(settings) or 0.0
                try:
                    store.write(FileToken(token, cache.refresh_token(settings), time.time() + lifetime, lifetime))
                except OSError as err:
                    # The token is good; only sharing it failed: never ask for a second one.
                    warn_once(store.directory, f"{type(err).__name__}: {err}", self.log)
                return token
        except OSError as err:
            warn_once(store.directory, f"{type(err).__name__}: {err}", self.log)
            return None

    def _retrying(self) -> tenacity.Retrying:
        return tenacity.Retrying(**retry_kwargs(self.settings, self.log, deadline=self._deadline()))

    def _call(self, request: ApiRequest) -> RawResponse:
        """One authorised round trip (renewing the token on a 401), without retries."""
        return drive(call_flow(self.settings, self._token_cache, request), self._step)

    def _request(self, request: ApiRequest, parse: Callable[[RawResponse, ApiRequest], T]) -> T:
        """An idempotent call with retries on transient failures."""
        for attempt in self._retrying():
            with attempt:
                return parse(self._call(request), request)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- public API ---------------------------------------------------------------------------

    def get_access_token(self) -> str:
        """A valid access token, from the cache or freshly requested."""
        token = self._token_cache.valid(self.settings)
        if token is not None:
            return token
        for attempt in self._retrying():
            with attempt:
                return self._renew_token()
        raise AssertionError("unreachable")  # pragma: no cover

    def test_connection(self) -> tuple[bool, str]:
        """Check the credentials with ``/v1/oauth2/test-token`` (the connection form's Test button)."""
        # The UI tests a copy of the connection under a random id: name "this connection" instead.
        this = f"connection '{self.volteras_conn_id}'"
        try:
            access = self._request(connection_test_request(), parse_api_access)
        except VolterasError as err:
            return False, f"Volteras connection failed: {str(err).replace(this, 'this connection')}"
        except Exception as err:  # noqa: BLE001 - the form shows the cause, whatever it is
            return (
                False,
                f"Volteras connection failed: {type(err).__name__}: {str(err).replace(this, 'this connection')}",
            )
        message = (
            f"Connected to Volteras organization {access['organizationId']} as client {access.get('clientId', '?')}."
        )
        if not self.settings.webhooks:
            return True, message
        from airflow_provider_volteras.webhooks.bus import bus_status

        reachable, said = bus_status(self.settings)
        return reachable, f"{message} {said}"

    def get_command_execution(
        self, vehicle_id: str, command_execution_id: str, *, command: str | VehicleCommand | None = None
    ) -> dict[str, Any]:
        """The command execution, as the API returns it (camelCase keys).

        The answer must be about what was asked: this vehicle, this id and, when ``command`` is given,
        this command; anything else raises ``VolterasUnexpectedResponseError``.
        """
        request = get_execution_request(vehicle_id, command_execution_id)
        expected = get_command_spec(command, creatable=False).command.value if command is not None else None
        return self._request(
            request,
            lambda resp, req: parse_execution(
                resp, req, vehicle_id=vehicle_id, execution_id=command_execution_id, command=expected
            ),
        )

    def list_command_executions(
        self,
        vehicle_id: str,
        *,
        filter: Any = None,  # noqa: A002 - the API's name
        max_page_size: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Executions of the vehicle, following ``nextPageToken`` lazily (in the API's order, not relied on).

        At most ``MAX_LISTING_PAGES`` pages are read, and a page token seen before ends the listing
        with ``VolterasUnexpectedResponseError``: a misbehaving server cannot hold a worker forever.

        ``filter`` is the API's JSON listing filter: a ``{field, operator, value}`` term, a list of
        terms, or the JSON text of one. Arguments are checked now; pages are fetched as you iterate.
        """
        first = list_executions_request(vehicle_id, filter=filter, max_page_size=max_page_size)

        def pages() -> Iterator[dict[str, Any]]:
            pager = Pager()
            request: ApiRequest | None = first
            while request is not None:
                results, token = self._request(request, parse_page)
                yield from results
                token = pager.next_token(token, request)
                request = (
                    list_executions_request(vehicle_id, filter=filter, max_page_size=max_page_size, page_token=token)
                    if token
                    else None
                )

        return pages()

    def get_rate_limits(self, vehicle_id: str) -> list[dict[str, Any]]:
        """The vehicle's live rate limits (``remainingRequests``, ``maxRequests``, ``windowSizeSeconds``, ...)."""
        return self._request(rate_limits_request(vehicle_id), parse_rate_limits)

    def _executions_of(
        self, vehicle_id: str, command: str, status: str | None = None, since: float | None = None
    ) -> Iterator[dict[str, Any]]:
        """Listed executions of ``command`` on the vehicle that read as such (created at or after ``since``,
        epoch seconds, when given); the listing's order is not relied on."""
        for execution in self._listing(vehicle_id, command, status, since):
            # The filter narrows the listing; the check below is what decides.
            if execution_problem(execution, vehicle_id=vehicle_id, command=command) is None:
                if status is None or execution.get("status") == status:
                    yield execution

    def find_pending_execution(self, vehicle_id: str, command: str | VehicleCommand) -> dict[str, Any] | None:
        """The ``PENDING`` execution of ``command`` on the vehicle (the API allows one at a time), or ``None``."""
        cmd = get_command_spec(command, creatable=False).command.value
        return next(self._executions_of(vehicle_id, cmd, STATUS_PENDING), None)

    def find_listed_execution(
        self, vehicle_id: str, execution_id: str, command: str | VehicleCommand | None = None
    ) -> dict[str, Any] | None:
        """The execution ``execution_id`` as the vehicle's listing shows it (to confirm a 404), or ``None``.

        The listing is filtered by the id, so this costs one request whatever the vehicle's history.
        """
        cmd = get_command_spec(command, creatable=False).command.value if command is not None else None
        listing = self.list_command_executions(
            vehicle_id, filter=id_filter(execution_id, cmd), max_page_size=MAX_PAGE_SIZE
        )
        for execution in listing:
            if execution.get("id") == execution_id:
                problem = execution_problem(execution, vehicle_id=vehicle_id, execution_id=execution_id, command=cmd)
                return execution if problem is None else None
        return None

    def recent_execution_ids(self, vehicle_id: str, command: str | VehicleCommand) -> set[str]:
        """Ids of the command's executions on the vehicle created within ``RECENT_WINDOW`` seconds, whatever
        their status or shape (noted before a create: what a lost create may be confused with).

        Only recent executions are listed: the cost of a create does not grow with the vehicle's history.
        """
        cmd = get_command_spec(command, creatable=False).command.value
        listing = self._listing(vehicle_id, cmd, None, time.time() - RECENT_WINDOW)
        return {eid for execution in listing if isinstance(execution, dict) and (eid := issued_id(execution.get("id")))}

    def _listing(
        self, vehicle_id: str, command: str, status: str | None, since: float | None
    ) -> Iterator[dict[str, Any]]:
        """The command's listed executions, narrowed to those created since ``since`` when the API takes a
        ``createdAt`` filter; an API that refuses that filter gets the unwindowed listing (said once)."""
        try:
            yield from self.list_command_executions(
                vehicle_id, filter=command_filter(command, status, since=since), max_page_size=MAX_PAGE_SIZE
            )
            return
        except VolterasValidationError:
            if since is None:
                raise
        if not _WINDOW_REFUSED.is_set():
            _WINDOW_REFUSED.set()
            self.log.warning(
                "The API refused a createdAt filter on the command-executions listing; listing every execution of "
                "%s instead (the cost of a create then grows with the vehicle's history).",
                command,
            )
        yield from self.list_command_executions(
            vehicle_id, filter=command_filter(command, status), max_page_size=MAX_PAGE_SIZE
        )

    def command_execution_ids(self, vehicle_id: str, command: str | VehicleCommand) -> set[str]:
        """Ids of the command's recent executions on the vehicle (see :meth:`recent_execution_ids`)."""
        return self.recent_execution_ids(vehicle_id, command)

    def find_new_execution(
        self,
        vehicle_id: str,
        command: str | VehicleCommand,
        arguments: Mapping[str, Any] | None,
        seen: Callable[[str], bool],
        since: float | None = None,
    ) -> dict[str, Any] | None:
        """A listed execution of ``command`` with these ``arguments`` whose id was not ``seen`` before a create
        (that create started at ``since``, epoch seconds; only executions from ``RECENT_WINDOW`` before it are
        listed)."""
        cmd = get_command_spec(command, creatable=False).command.value
        start = (time.time() if since is None else since) - RECENT_WINDOW
        for execution in self._executions_of(vehicle_id, cmd, since=start):
            if not seen(execution["id"]) and arguments_match(arguments, execution.get("commandArguments")):
                return execution
        return None

    def create_command_execution(
        self,
        vehicle_id: str,
        command: str | VehicleCommand,
        arguments: Mapping[str, Any] | None = None,
        *,
        before: Iterable[str] | None = None,
        on_issued: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """Create a command execution (send the command to the vehicle) and return it.

        Arguments are validated before anything is sent. The API has no idempotency key, so the ids
        of the command's recent executions on the vehicle are noted first (or taken from ``before``).
        When an attempt gets no answer although it may have reached the server (a read timeout, a
        connection reset after sending), the listing is checked for a few seconds and an execution of
        this command with these arguments that appeared since is adopted; if none appears the command
        is NOT sent again: ``VolterasTransportError`` (``maybe_sent``) is raised, and the caller looks
        for it later. After a 5xx or an unreadable 2xx the same adoption is tried; a 5xx with nothing
        listed is sent again.

        ``on_issued`` is called with the execution id as soon as the API has issued one, even when
        the rest of its answer cannot be believed (then ``VolterasUnexpectedResponseError`` is raised
        with that ``execution_id``): the caller records it and re-attaches, never sending again.
        ``COMMAND_ALREADY_IN_PROGRESS`` raises ``VolterasCommandInProgressError`` unless it is the echo
        of our own earlier attempt.
        """
        request = create_command_request(vehicle_id, command, arguments)
        cmd = get_command_spec(command).command
        payload = request.json_body
        known = set(before) if before is not None else self.recent_execution_ids(vehicle_id, cmd)
        started = time.time()

        def issued(execution_id: str) -> None:
            if on_issued is not None:
                on_issued(execution_id)

        def adopt() -> dict[str, Any] | None:
            execution = self.find_new_execution(vehicle_id, cmd, payload, known.__contains__, since=started)
            if execution is None:
                return None
            issued(execution["id"])
            self.log.warning(
                "An earlier attempt to send %s to vehicle %s got no clear answer but created execution %s (%s); "
                "adopting it instead of sending the command again.",
                cmd.value,
                vehicle_id,
                execution["id"],
                execution["status"],
            )
            return execution

        def settle() -> dict[str, Any] | None:
            """After an attempt that may have been applied: look for it while the listing catches up."""
            for pause in LOST_ANSWER_LOOKS:
                if pause:
                    limit = self._deadline()
                    if limit is not None and time.time() + pause > limit:
                        break
                    time.sleep(pause)
                if (adopted := adopt()) is not None:
                    return adopted
            return None

        try:
            return self._create_attempts(request, vehicle_id, cmd.value, issued, adopt, settle)
        except _CreateMayBeApplied as stop:
            raise stop.error from None

    def _create_attempts(
        self,
        request: ApiRequest,
        vehicle_id: str,
        command: str,
        issued: Callable[[str], None],
        adopt: Callable[[], dict[str, Any] | None],
        settle: Callable[[], dict[str, Any] | None],
    ) -> dict[str, Any]:
        maybe_sent = False
        for attempt in self._retrying():
            with attempt:
                if maybe_sent and (adopted := adopt()) is not None:
                    return adopted
                try:
                    body = parse_json_answer(self._call(request), request)
                except VolterasCommandInProgressError as err:
                    if maybe_sent and (adopted := adopt()) is not None:
                        return adopted
                    # After an attempt that may have been applied, the pending command is probably ours
                    # (the listing may lag its writes): the caller must not take it for someone else's.
                    err.maybe_ours = maybe_sent
                    raise
                except VolterasTransportError as err:
                    if not err.maybe_sent:
                        raise  # the request never left: sending it again is safe
                    # No answer to a request that may have been applied: it is never sent again in this
                    # call. Adopt it once listed; otherwise the caller records "maybe applied" and a later
                    # try looks for it before anything is sent.
                    if (adopted := settle()) is not None:
                        return adopted
                    raise _CreateMayBeApplied(err) from None
                except VolterasServerError:
                    maybe_sent = True
                    raise
                except VolterasUnexpectedResponseError as err:
                    # A 2xx that is not JSON: the command was applied, but its id is unknown.
                    if (adopted := adopt()) is not None:
                        return adopted
                    err.create_applied = True
                    raise
                return self._created(body, request, vehicle_id, command, issued, adopt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _created(
        self,
        body: Any,
        request: ApiRequest,
        vehicle_id: str,
        command: str,
        issued: Callable[[str], None],
        adopt: Callable[[], dict[str, Any] | None],
    ) -> dict[str, Any]:
        """The execution a 2xx create answer describes; its id is handed to ``issued`` before any check can fail."""
        payload = request.json_body
        execution_id = issued_id(body.get("id")) if isinstance(body, dict) else None
        if execution_id is not None:
            issued(execution_id)
        problem = execution_problem(body, vehicle_id=vehicle_id, command=command)
        if problem is None and "commandArguments" in body and not arguments_match(payload, body["commandArguments"]):
            problem = (
                f"execution {execution_id} has arguments ({describe_arguments(body['commandArguments'])}), "
                f"not the ones sent ({describe_arguments(payload)})"
            )
        if problem is None:
            return cast(dict[str, Any], body)
        if execution_id is None and (adopted := adopt()) is not None:
            return adopted
        if execution_id is not None:
            # The API issued an id: its own status read may be believable where the create answer was not.
            try:
                execution = self.get_command_execution(vehicle_id, execution_id, command=command)
            except VolterasError as err:
                problem = f"{problem}; reading execution {execution_id} gave: {err}"
            else:
                if (
                    arguments_match(payload, execution.get("commandArguments"))
                    or execution.get("commandArguments") is None
                ):
                    return execution
                shown = describe_arguments(execution["commandArguments"])
                problem = f"execution {execution_id} has other arguments ({shown})"
        raise VolterasUnexpectedResponseError(
            f"the create answer cannot be believed ({problem}); the command was probably applied, so it is not "
            "sent again",
            method=request.method,
            path=request.path,
            execution_id=execution_id,
            create_applied=True,
        )

    def wait_for_command_execution(
        self,
        vehicle_id: str,
        command_execution_id: str,
        *,
        deadline: float,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        command: str | VehicleCommand | None = None,
        hand_over: bool = False,
    ) -> dict[str, Any] | None:
        """Poll until the execution is ``EXECUTED`` or ``FAILED``; ``None`` if still pending at ``deadline``.

        ``deadline`` is an absolute UTC epoch time. Polls start about a second apart and slow down
        up to ``poll_interval`` seconds; polls that get no answer are logged and retried. ``hand_over``: a
        trigger waits on after ``deadline``, so while webhooks flow there is no last read at the deadline.
        """
        import asyncio

        from airflow_provider_volteras.lifecycle.watch import thread_reader, watch_one, webhook_wake

        async def wait() -> dict[str, Any] | None:
            async with webhook_wake(self.settings, self.log) as wake:
                final, _ = await watch_one(
                    thread_reader(self, command.value if isinstance(command, VehicleCommand) else command, 1),
                    vehicle_id,
                    command_execution_id,
                    deadline=deadline,
                    poll_interval=poll_interval,
                    log=self.log,
                    what=f"{vehicle_id}/{command_execution_id}",
                    poll_now=False,
                    final_grace=final_read_grace(self.settings),
                    wake=wake,
                    hand_over=hand_over,
                )
            return final

        return asyncio.run(wait())

    # -- vehicles, tags, vehicle selections, and any other endpoint ---------------------------------

    def list_vehicles(
        self,
        *,
        filter: Any = None,  # noqa: A002 - the API's name
        tag: Any = None,
        max_page_size: int = MAX_PAGE_SIZE,
        max_pages: int = MAX_LISTING_PAGES,
    ) -> Iterator[Vehicle]:
        """The organization's vehicles (``GET /v1/vehicles``), following ``nextPageToken`` lazily.

        ``tag``: only vehicles with this tag, ``"key=value"`` (or ``{"key": ..., "value": ...}``).
        ``filter``: the API's JSON listing filter on vehicle fields, e.g.
        ``{"field": "model", "operator": "==", "value": "i4"}``. At most ``max_pages`` pages are read and a
        repeated page token ends the listing (``VolterasUnexpectedResponseError``), as for executions.
        Arguments are checked now; pages are fetched as you iterate.
        """
        first = list_vehicles_request(filter=filter, tag=tag, max_page_size=max_page_size)

        def fetch(request: ApiRequest) -> tuple[list[Vehicle], str | None]:
            page = self._request(request, parse_vehicle_page)
            return page.results, page.next_token

        def follow(token: str) -> ApiRequest:
            return list_vehicles_request(filter=filter, tag=tag, max_page_size=max_page_size, page_token=token)

        return read_pages(first, fetch, follow, max_pages)

    def get_vehicle_tags(self, vehicle_id: str) -> list[Tag]:
        """The vehicle's tags (``GET /v1/tags/DEVICE/{vehicle_id}``), each ``{"key": ..., "value": ...}``."""
        return self._request(vehicle_tags_request(vehicle_id), parse_tags)

    def select_vehicles(
        self,
        *,
        vehicle_ids: Any = None,
        tag: Any = None,
        vehicle_filter: Any = None,
        max_vehicles: int | None = None,
        verify_tags: bool = True,
    ) -> list[str]:
        """The vehicle ids of a selection, resolved now: exactly one of ``vehicle_ids`` (checked, not looked
        up), ``tag`` or ``vehicle_filter`` (listed from ``GET /v1/vehicles``). Sends no command: this is how
        to preview what a fleet task would act on. See :meth:`resolve_selection`."""
        selection = VehicleSelection.of(vehicle_ids=vehicle_ids, tag=tag, vehicle_filter=vehicle_filter)
        return self.resolve_selection(selection, max_vehicles=max_vehicles, verify_tags=verify_tags)

    def resolve_selection(
        self, selection: VehicleSelection, *, max_vehicles: int | None = None, verify_tags: bool = True
    ) -> list[str]:
        """The ids of ``selection`` in the API's order, duplicates dropped.

        An empty selection, or one above ``max_vehicles`` (default: 1,000 for a tag or a filter, no cap for
        given ids), raises ``VolterasInvalidInputError`` naming the count and the cap; a listing stops being
        read once it is too big (its ``totalResults`` says so, or the vehicles read so far). With
        ``verify_tags``, every vehicle a tag listing returned is checked to carry that tag
        (``GET /v1/tags/DEVICE/{id}``, 8 at a time): an answer that is not about the tag asked for raises
        ``VolterasUnexpectedResponseError`` rather than reach vehicles outside it.
        """
        cap = selection.cap(max_vehicles)
        at_least = False
        if not selection.listed:
            ids = list(selection.value)
            count = len(ids)
        else:
            total: list[int | None] = []

            def fetch(request: ApiRequest) -> tuple[list[Vehicle], str | None]:
                page = self._request(request, parse_vehicle_page)
                total.append(page.total)
                return page.results, page.next_token

            pages = max(MAX_LISTING_PAGES, (cap or 0) // MAX_PAGE_SIZE + 2)
            seen: dict[str, None] = {}
            for vehicle in read_pages(selection.request(), fetch, lambda t: selection.request(page_token=t), pages):
                seen[vehicle["id"]] = None  # a page boundary may repeat a vehicle: counted once
                if cap is not None and ((total[0] or 0) > cap or len(seen) > cap):
                    break
            ids = list(seen)
            count = len(ids)
            if cap is not None and (total[0] or 0) > max(cap, count):
                count = cast(int, total[0])
            elif cap is not None and count > cap:
                at_least = True
        check_selected(selection, count, cap, at_least=at_least)
        if selection.kind == "tag" and verify_tags:
            self._verify_tagged(ids, selection.value)
        self.log.info("%s", describe_selected(selection, ids))
        return ids

    def _verify_tagged(self, ids: list[str], tag: Tag) -> None:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(8, len(ids)), thread_name_prefix="volteras-tags") as pool:
            for vid, tags in zip(ids, pool.map(self.get_vehicle_tags, ids), strict=True):
                if tag not in tags:
                    shown = ", ".join(f"{t['key']}={t['value']}" for t in tags[:10]) or "none"
                    raise VolterasUnexpectedResponseError(
                        f"the vehicle listing for tag {tag['key']}={tag['value']} returned vehicle {vid}, whose "
                        f"tags ({shown[:300]}) do not include it; the selection is refused and nothing was sent",
                        method="GET",
                        path="/v1/vehicles",
                    )

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        """Call any endpoint of the API with this connection: ``hook.request("GET", "/v1/vehicles/<id>/telemetry")``.

        ``path`` is below the connection's base URL (ids percent-encoded, e.g. with ``urllib.parse.quote``);
        ``params`` is the query, ``json`` the JSON body. The same bearer token (renewed on a 401), timeouts and
        error mapping as every other call: the answer's JSON (``None`` for an empty body), or a typed
        ``VolterasApiError`` (by the API's error code first, the HTTP status second), ``VolterasTransportError``.
        GET, HEAD, OPTIONS, PUT and DELETE are retried on transient failures (connection errors, timeouts,
        5xx, 429 with ``Retry-After``); POST and PATCH are retried only when the attempt certainly was not
        applied (no connection was made, or a 429), never after a timeout or a 5xx. Commands are not sent
        through this method (``VolterasInvalidInputError``): use the command operators or
        :meth:`create_command_execution`.
        """
        call = custom_request(method, path, params=params, json_body=json)
        if call.method in IDEMPOTENT_METHODS:
            return self._request(call, parse_any_answer)
        policy = retry_kwargs(self.settings, self.log, deadline=self._deadline())
        for attempt in tenacity.Retrying(**{**policy, "retry": tenacity.retry_if_exception(resend_safe)}):
            with attempt:
                return parse_any_answer(self._call(call), call)
        raise AssertionError("unreachable")  # pragma: no cover


class _CreateMayBeApplied(Exception):  # a control-flow signal, never seen by users
    """Ends a create's attempts: its request may have been applied, so it is not sent again."""

    def __init__(self, error: VolterasTransportError) -> None:
        super().__init__(str(error))
        self.error = error


#: Pauses (seconds) between the looks at the listing for a create whose answer was lost.
LOST_ANSWER_LOOKS = (0.0, 1.0, 2.0)


def urllib3_errors() -> tuple[type[Exception], ...]:
    """Errors urllib3 raises while a streamed body is read (requests wraps them only for its own reads)."""
    from urllib3.exceptions import HTTPError

    return (HTTPError, OSError)


def _proxy_error(
    request: ApiRequest, settings: ClientSettings, proxy: Proxy | None, err: requests.exceptions.ProxyError
) -> VolterasTransportError:
    """urllib3 raises ``ProxyError`` only while it connects to the proxy, before the tunnel is open: the request
    never reached the API. Its cause tells a proxy that could not be reached from one that refused the tunnel
    (whose answer http.client gives as text only, so the status is not known here)."""
    from urllib3.exceptions import ConnectTimeoutError

    if proxy is None:  # not through our proxy (cannot happen: requests reads no proxy from the environment)
        return _transport_error(request, err)
    inner = err.args[0] if err.args else None  # urllib3's MaxRetryError (or its ProxyError itself)
    reason = getattr(inner, "reason", inner)
    cause = getattr(reason, "original_error", None) or reason or err
    # NewConnectionError (refused, unknown host) is a ConnectTimeoutError too.
    return proxy_failure(request, settings, proxy, cause, reached=not isinstance(cause, ConnectTimeoutError))


def _transport_error(request: ApiRequest, err: requests.exceptions.RequestException) -> VolterasTransportError:
    from urllib3.exceptions import NewConnectionError

    reason = getattr(err.args[0], "reason", None) if err.args else None
    never_sent = isinstance(err, requests.exceptions.ConnectTimeout) or isinstance(reason, NewConnectionError)
    return transport_error(request, err, timed_out=isinstance(err, requests.exceptions.Timeout), never_sent=never_sent)
