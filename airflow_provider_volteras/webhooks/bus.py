"""The webhook bus: from the API server's receiver to every wait, on Redis.

Layout (one Redis, shared by every Volteras connection that names it in ``webhook_redis_conn_id``):

* ``volteras:<conn_id>:execution:<execution_id>``: the last status a verified ``command.updated`` webhook
  announced for that execution (JSON ``{"status", "vehicleId", "at"}``), kept ``STATUS_TTL`` seconds. A
  terminal status is never overwritten by a ``PENDING`` that arrives after it (reordered deliveries).
* ``volteras:<conn_id>:last-webhook``: when the receiver last accepted a webhook (epoch seconds), kept
  ``FLOW_WINDOW`` seconds: whether webhooks "flow" for that connection.
* ``volteras:<conn_id>:last-missed``: when a wait last found an execution ended without its webhook (set
  by the waits, shared by every triggerer and worker): webhooks do not flow until one is accepted after it.
* ``volteras:<conn_id>:svix-id:<message id>``: the Svix message ids already accepted (replays are refused).
* the channel ``volteras:command.updated``: ``{"conn", "id", "status"}`` of every accepted webhook.

The receiver stores and announces in one Lua script (:func:`publish`): atomic, one round trip.

A wait never believes the bus: an announcement only wakes it, and the wait then reads the execution from
the API (``lifecycle/watch.py``). Everything here can be lost (Redis restarted, a webhook lost, a message
missed while reconnecting): that costs latency, never correctness.

Each event loop (a triggerer's, or the in-worker wait's) has one :class:`Bus` per Redis, shared by all its
waits like the HTTP session in ``hooks/_async.py``: **one** Redis connection, in RESP3, subscribed to the
channel and reading the status keys on the same connection (RESP3 allows commands while subscribed).
It dispatches announcements by ``(conn_id, execution_id)``, and reconnects with a growing backoff; while
it is disconnected the waits poll on their normal schedule. The connection names itself
``volteras-bus:<host>:<pid>`` (``CLIENT LIST`` shows which process holds which connection).

Imported only at run time by waits whose connection has webhooks on, and by the API server's receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import socket
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

CHANNEL = "volteras:command.updated"
#: Seconds an execution's announced status is kept (the platform fails a command after 5 minutes).
STATUS_TTL = 3600
#: Webhooks "flow" for a connection while one was accepted within this many seconds.
FLOW_WINDOW = 600.0
#: Seconds a Svix message id is remembered (Svix's timestamp tolerance is 5 minutes either way).
REPLAY_TTL = 900
#: Reconnection backoff: first pause and longest pause, in seconds.
RECONNECT_FIRST, RECONNECT_MAX = 0.5, 30.0
#: A ping on the bus's connection this often; no answer within ``PING_TIMEOUT`` means a dead connection.
PING_EVERY, PING_TIMEOUT = 15.0, 10.0
#: How long a wait waits for its loop's bus to connect the first time before it starts (polling if not).
FIRST_CONNECT_WAIT = 3.0
#: Keys read per ``MGET`` when many waits (re)start at once.
MGET_CHUNK = 500

TERMINAL = frozenset({"EXECUTED", "FAILED"})


def status_key(conn_id: str, execution_id: str) -> str:
    return f"volteras:{conn_id}:execution:{execution_id}"


def seen_key(conn_id: str) -> str:
    return f"volteras:{conn_id}:last-webhook"


def missed_key(conn_id: str) -> str:
    return f"volteras:{conn_id}:last-missed"


def replay_key(conn_id: str, message_id: str) -> str:
    return f"volteras:{conn_id}:svix-id:{message_id}"


# ---------------------------------------------------------------------------------------------
# The Redis connection: from an Airflow ``redis`` connection
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RedisSettings:
    """Where the bus is: read from an Airflow connection of type ``redis`` (as Airflow's redis provider)."""

    host: str
    port: int
    db: int
    username: str | None
    password: str | None
    ssl: bool
    ssl_ca_certs: str | None

    @classmethod
    def from_connection(cls, conn: Any) -> RedisSettings:
        extra = conn.extra_dejson or {}
        return cls(
            host=(conn.host or "localhost").strip(),
            port=int(conn.port or 6379),
            db=int(extra.get("db", 0) or 0),
            username=conn.login or None,
            password=conn.password or None,
            ssl=str(extra.get("ssl", "")).lower() in ("1", "true", "yes", "on"),
            ssl_ca_certs=extra.get("ssl_ca_certs") or None,
        )

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.host, self.port, self.db, self.username, self.password, self.ssl, self.ssl_ca_certs)

    def kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "db": self.db,
            "username": self.username,
            "password": self.password,
            "socket_connect_timeout": 5.0,
            "socket_keepalive": True,
        }
        if self.ssl:
            kwargs["ssl_ca_certs"] = self.ssl_ca_certs
        return kwargs

    def client(self) -> aredis.Redis:
        """A command client (the receiver's): a small pool of connections."""
        return aredis.Redis(**self.kwargs(), ssl=self.ssl, socket_timeout=5.0, max_connections=16)

    def sync_client(self) -> Any:
        """A synchronous client (the connection test's)."""
        import redis

        return redis.Redis(**self.kwargs(), ssl=self.ssl, socket_timeout=5.0)


def redis_settings(redis_conn_id: str) -> RedisSettings:
    from airflow.sdk import BaseHook

    return RedisSettings.from_connection(BaseHook.get_connection(redis_conn_id))


async def aredis_settings(redis_conn_id: str) -> RedisSettings:
    from airflow.sdk import BaseHook

    return RedisSettings.from_connection(await BaseHook.aget_connection(redis_conn_id))


# ---------------------------------------------------------------------------------------------
# The receiver's side: store and announce, once per Svix message id
# ---------------------------------------------------------------------------------------------

_PUBLISH = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) == false then return 0 end
local old = redis.call('GET', KEYS[2])
local keep = false
if old and ARGV[4] == 'PENDING' then
  local ok, decoded = pcall(cjson.decode, old)
  keep = ok and type(decoded) == 'table' and (decoded.status == 'EXECUTED' or decoded.status == 'FAILED')
end
if not keep then redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3]) end
redis.call('SET', KEYS[3], ARGV[5], 'EX', ARGV[6])
redis.call('PUBLISH', ARGV[7], ARGV[8])
return 1
"""


async def publish(
    client: aredis.Redis, conn_id: str, message_id: str, execution_id: str, status: str, vehicle_id: str | None
) -> bool:
    """Keep and announce one accepted webhook; ``False`` when its Svix message id was already accepted."""
    now = time.time()
    stored = json.dumps({"status": status, "vehicleId": vehicle_id, "at": now})
    announced = json.dumps({"conn": conn_id, "id": execution_id, "status": status})
    done = await client.eval(
        _PUBLISH,
        3,
        replay_key(conn_id, message_id),
        status_key(conn_id, execution_id),
        seen_key(conn_id),
        REPLAY_TTL,
        stored,
        STATUS_TTL,
        status,
        repr(now),
        int(FLOW_WINDOW),
        CHANNEL,
        announced,
    )
    return bool(done)


def claimed_status(raw: Any) -> str | None:
    """The status in a stored key's value; ``None`` for none or an unreadable one."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return None
    status = value.get("status") if isinstance(value, dict) else None
    return status if isinstance(status, str) else None


# ---------------------------------------------------------------------------------------------
# The waits' side: one subscription per event loop and Redis
# ---------------------------------------------------------------------------------------------


class Waiter:
    """One wait's registration: woken by an announcement about its execution, or nudged by a mode change."""

    def __init__(self, bus: Bus, conn_id: str, execution_id: str) -> None:
        self.bus = bus
        self.conn_id = conn_id
        self.execution_id = execution_id
        self.event = asyncio.Event()
        #: Set when an announcement (or the stored key) is about this execution; cleared by the wait.
        self.announced = False
        #: The last status announced for this execution (a claim, never believed).
        self.claim: str | None = None

    def wake(self, status: str | None) -> None:
        self.claim = status
        self.announced = True
        self.event.set()

    def nudge(self) -> None:
        self.event.set()


class Bus:
    """The loop's one connection to one Redis: subscribed to ``CHANNEL``, reading keys on the same connection."""

    def __init__(self, settings: RedisSettings) -> None:
        self.settings = settings
        self.users = 0
        self.connected = False
        #: Connections opened so far (the benchmark reports it: one while Redis stays up).
        self.connections_opened = 0
        self._waiters: dict[tuple[str, str], set[Waiter]] = {}
        self._last_seen: dict[str, float] = {}
        self._last_missed: dict[str, float] = {}
        self._synced: set[str] = set()
        self._replies: deque[asyncio.Future[Any]] = deque()
        self._write = asyncio.Lock()
        self._conn: Any = None
        self._outage_logged = False
        #: Set once the first connection attempt ended (connected or not): a new wait starts in the right mode.
        self.ready = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="volteras-webhook-bus")

    # -- what the waits ask -------------------------------------------------------------------

    def flowing(self, conn_id: str) -> bool:
        """Connected, a webhook was seen for this connection within ``FLOW_WINDOW``, and none missed since."""
        seen = self._last_seen.get(conn_id)
        if not self.connected or seen is None or time.time() - seen > FLOW_WINDOW:
            return False
        return seen >= self._last_missed.get(conn_id, 0.0)

    async def note_missed(self, conn_id: str) -> None:
        """A wait found its execution ended without any announcement: webhooks do not flow (for now)."""
        was = self.flowing(conn_id)
        now = time.time()
        self._last_missed[conn_id] = now
        if was:
            log.info("Volteras webhooks (%s): a status change came without its webhook; polling normally", conn_id)
            self._nudge(conn_id)
        if self.connected:  # shared with the other triggerers and workers (best effort)
            await self._quietly("SET", missed_key(conn_id), repr(now), "EX", int(FLOW_WINDOW))

    async def _quietly(self, *args: Any) -> None:
        with contextlib.suppress(Exception):
            await self._command(*args)

    async def register(self, waiter: Waiter) -> None:
        """Subscribe ``waiter``, then read its key: an announcement made before it registered is not lost."""
        self._waiters.setdefault((waiter.conn_id, waiter.execution_id), set()).add(waiter)
        if not self.connected:
            return  # the key is read when the connection is back (``_resync``)
        with contextlib.suppress(RedisError, OSError, asyncio.TimeoutError):
            keys = [status_key(waiter.conn_id, waiter.execution_id)]
            if waiter.conn_id not in self._synced:
                keys += [seen_key(waiter.conn_id), missed_key(waiter.conn_id)]
            values = await self._command("MGET", *keys)
            self._claim(waiter, values[0])
            if len(values) > 1:
                self._seen_from(waiter.conn_id, values[1], values[2])

    def unregister(self, waiter: Waiter) -> None:
        key = (waiter.conn_id, waiter.execution_id)
        group = self._waiters.get(key)
        if group is not None:
            group.discard(waiter)
            if not group:
                del self._waiters[key]

    # -- internals ------------------------------------------------------------------------------

    def _claim(self, waiter: Waiter, raw: Any) -> None:
        status = claimed_status(raw)
        if status in TERMINAL:
            waiter.wake(status)

    def _seen_from(self, conn_id: str, seen_raw: Any, missed_raw: Any) -> None:
        self._synced.add(conn_id)
        was = self.flowing(conn_id)
        for raw, known in ((seen_raw, self._last_seen), (missed_raw, self._last_missed)):
            try:
                when = float(raw) if raw is not None else None
            except (TypeError, ValueError):
                when = None
            if when is not None and when > known.get(conn_id, 0.0):
                known[conn_id] = when
        if self.flowing(conn_id) != was:
            self._nudge(conn_id)

    def _nudge(self, conn_id: str | None = None) -> None:
        for (cid, _), group in list(self._waiters.items()):
            if conn_id is None or cid == conn_id:
                for waiter in group:
                    waiter.nudge()

    async def _on_push(self, response: Any) -> object:
        try:
            kind = response[0].decode() if isinstance(response[0], bytes) else str(response[0])
            if kind == "message" and len(response) >= 3:
                self._dispatch(response[2])
        except Exception:  # noqa: BLE001 - a malformed announcement is dropped; the safety poll covers it
            log.debug("Volteras webhook bus: unreadable announcement dropped")
        return _PUSH

    def _dispatch(self, data: Any) -> None:
        message = json.loads(data)
        conn_id, execution_id = str(message["conn"]), str(message["id"])
        status = message.get("status")
        was = self.flowing(conn_id)
        self._last_seen[conn_id] = time.time()
        for waiter in list(self._waiters.get((conn_id, execution_id), ())):
            waiter.wake(status if isinstance(status, str) else None)
        if not was and self.flowing(conn_id):
            log.info("Volteras webhooks (%s): webhooks flow; waits stretch their safety polls", conn_id)
            self._nudge(conn_id)

    async def _command(self, *args: Any) -> Any:
        """Send one command on the bus's connection and await its reply (read by ``_read``, in order)."""
        if self._conn is None:
            raise RedisError("the webhook bus is not connected")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        async with self._write:
            self._replies.append(future)
            await self._conn.send_command(*args)
        async with asyncio.timeout(PING_TIMEOUT):
            return await future

    async def _read(self, conn: Any) -> None:
        while True:
            reply = await conn.read_response(timeout=math.inf, push_request=True)
            if reply is _PUSH:
                continue
            if self._replies:
                future = self._replies.popleft()
                if not future.done():
                    future.set_result(reply)

    async def _ping(self) -> None:
        while True:
            await asyncio.sleep(PING_EVERY)
            await self._command("PING")

    async def _resync(self) -> None:
        """After (re)connecting: read the key of every registered wait and the last-webhook times."""
        self._synced.clear()
        pairs = list(self._waiters)
        for start in range(0, len(pairs), MGET_CHUNK):
            chunk = pairs[start : start + MGET_CHUNK]
            values = await self._command("MGET", *(status_key(c, e) for c, e in chunk))
            for (conn_id, execution_id), raw in zip(chunk, values, strict=True):
                for waiter in list(self._waiters.get((conn_id, execution_id), ())):
                    self._claim(waiter, raw)
        conns = sorted({c for c, _ in pairs})
        if conns:
            values = await self._command("MGET", *(k for c in conns for k in (seen_key(c), missed_key(c))))
            for index, conn_id in enumerate(conns):
                self._seen_from(conn_id, values[2 * index], values[2 * index + 1])

    async def _connect(self) -> Any:
        kwargs = {**self.settings.kwargs(), "client_name": connection_name()}
        if self.settings.ssl:
            conn: Any = aredis.SSLConnection(**kwargs, protocol=3)
        else:
            conn = aredis.Connection(**kwargs, protocol=3)
        await conn.connect()
        # RESP3: announcements arrive as push messages, handled here while replies are read in order. (The
        # parser's push handler is what redis-py's own PubSub sets on its connection.)
        conn._parser.set_pubsub_push_handler(self._on_push)
        return conn

    async def _run(self) -> None:
        pause = RECONNECT_FIRST
        while True:
            reader: asyncio.Task[None] | None = None
            pinger: asyncio.Task[None] | None = None
            try:
                conn = await self._connect()
                self._conn = conn
                self.connections_opened += 1
                await conn.send_command("SUBSCRIBE", CHANNEL)
                reader = asyncio.create_task(self._read(conn))
                # The subscription is confirmed by a push; a PING answered after it proves it is active.
                self.connected = True
                await self._command("PING")
                await self._resync()
                if self._outage_logged:
                    log.warning("Volteras webhook bus: reconnected to Redis %s", self.settings.host)
                self._outage_logged = False
                pause = RECONNECT_FIRST
                self.ready.set()
                self._nudge()
                pinger = asyncio.create_task(self._ping())
                done, _ = await asyncio.wait({reader, pinger}, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()  # raises what ended it
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - any failure: reconnect after a pause
                if not self._outage_logged:
                    log.warning(
                        "Volteras webhook bus: Redis %s:%s unreachable (%s); waits poll normally, reconnecting",
                        self.settings.host,
                        self.settings.port,
                        type(err).__name__,
                    )
                    self._outage_logged = True
            finally:
                self.ready.set()
                was = self.connected
                self.connected = False
                for task in [t for t in (reader, pinger) if t is not None]:
                    task.cancel()
                self._fail_replies()
                conn, self._conn = self._conn, None
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.disconnect(nowait=True)
                if was:
                    self._nudge()
            await asyncio.sleep(pause)
            pause = min(pause * 2, RECONNECT_MAX)

    def _fail_replies(self) -> None:
        while self._replies:
            future = self._replies.popleft()
            if not future.done():
                future.set_exception(RedisError("the webhook bus lost its connection"))
                future.exception()  # its waiter may be gone already: not an unretrieved error

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task


_PUSH = object()

#: The prefix of the name each bus connection gives itself in Redis (``CLIENT SETNAME``).
CONNECTION_NAME = "volteras-bus"


def connection_name() -> str:
    """``volteras-bus:<host>:<pid>``: one per process and loop, so ``CLIENT LIST`` tells who holds which."""
    host = "".join(c if c.isalnum() or c in ".-_" else "_" for c in socket.gethostname())[:64]
    return f"{CONNECTION_NAME}:{host}:{os.getpid()}"


_BUSES: dict[tuple[int, tuple[Any, ...]], Bus] = {}
#: Per event loop: redis conn id -> (settings, expiry), as the HTTP client caches connection settings.
_SETTINGS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, tuple[RedisSettings, float]]] = (
    weakref.WeakKeyDictionary()
)
SETTINGS_TTL = 60.0


@contextlib.asynccontextmanager
async def lend_bus(settings: RedisSettings) -> AsyncIterator[Bus]:
    """The running loop's bus for this Redis (made on first use, closed when its last user leaves)."""
    key = (id(asyncio.get_running_loop()), settings.key)
    bus = _BUSES.get(key)
    if bus is None:
        bus = _BUSES[key] = Bus(settings)
    bus.users += 1
    try:
        yield bus
    finally:
        bus.users -= 1
        if bus.users == 0 and _BUSES.get(key) is bus:
            del _BUSES[key]
            await bus.close()


async def settings_for(redis_conn_id: str) -> RedisSettings:
    known = _SETTINGS.setdefault(asyncio.get_running_loop(), {})
    cached = known.get(redis_conn_id)
    if cached is not None and cached[1] > time.monotonic():
        return cached[0]
    settings = await aredis_settings(redis_conn_id)
    known[redis_conn_id] = (settings, time.monotonic() + SETTINGS_TTL)
    return settings


def bus_status(settings: Any) -> tuple[bool, str]:
    """What the connection test says of the webhooks: is the bus reachable, and when was a webhook last accepted."""
    try:
        redis_conf = redis_settings(settings.webhook_redis_conn_id)
        client = redis_conf.sync_client()
        try:
            client.ping()
            raw = client.get(seen_key(settings.conn_id))
        finally:
            client.close()
    except Exception as err:  # noqa: BLE001 - the form shows the cause, whatever it is
        return False, (
            f"Webhooks: the bus (redis connection {settings.webhook_redis_conn_id!r}) is unreachable "
            f"({type(err).__name__}); waits poll on the normal schedule."
        )
    where = f"the receiver is {URL_PATH.format(conn_id=settings.conn_id)} on the API server"
    if raw is None:
        return True, (
            f"Webhooks: the bus is reachable; no command.updated webhook accepted in the last {FLOW_WINDOW / 60:.0f} "
            f"minutes ({where}: check the endpoint in Volteras)."
        )
    ago = max(0.0, time.time() - float(raw))
    return True, f"Webhooks: the bus is reachable; the last command.updated webhook was accepted {ago:.0f} s ago."


#: The receiver's path on the API server (``webhooks/receiver.py``).
URL_PATH = "/volteras/webhooks/{conn_id}"


def buses() -> Mapping[tuple[int, tuple[Any, ...]], Bus]:
    """The live buses (for the benchmark and tests)."""
    return dict(_BUSES)


# ---------------------------------------------------------------------------------------------
# What one wait (one trigger, or one in-worker wait) listens to: ``WebhookWake``
# ---------------------------------------------------------------------------------------------

#: After a webhook claimed an end that the API's answer did not confirm, the wait polls on its normal
#: schedule for this many seconds (the API may lag behind its own webhook; or the claim was wrong).
CONFIRM_WINDOW = 30.0


class WebhookWake:
    """The bus of one Volteras connection as one wait sees it: a wake per execution, and the poll's stretch.

    While webhooks flow (:meth:`Bus.flowing`) a wait polls only every ``safety_poll`` seconds (or its own
    longer pause) and reads the execution when its webhook wakes it; otherwise it polls on its normal schedule.
    The mode is logged once per change (per wait, not per execution).
    """

    def __init__(self, bus: Bus, conn_id: str, safety_poll: float, log: Any) -> None:
        self.bus = bus
        self.conn_id = conn_id
        self.safety_poll = safety_poll
        self.log = log
        self._logged: str | None = None

    def mode(self) -> str:
        return "webhooks" if self.bus.flowing(self.conn_id) else "polling"

    def log_mode(self, mode: str) -> None:
        if mode == self._logged:
            return
        self._logged = mode
        if mode == "webhooks":
            self.log.info(
                "Waiting on command.updated webhooks (connection %s): safety poll every %.0f s",
                self.conn_id,
                self.safety_poll,
            )
        else:
            self.log.info(
                "Polling on the normal schedule: %s (connection %s)",
                "the webhook bus is not connected"
                if not self.bus.connected
                else "no command.updated webhook seen lately, or one was missed",
                self.conn_id,
            )

    @contextlib.asynccontextmanager
    async def watch(self, execution_id: str, what: str) -> AsyncIterator[Listener]:
        """Subscribe to ``execution_id`` (then read its key) for the length of the block."""
        waiter = Waiter(self.bus, self.conn_id, execution_id)
        await self.bus.register(waiter)
        try:
            yield Listener(self, waiter, what)
        finally:
            self.bus.unregister(waiter)


class Listener:
    """One execution's wake, used by the watch routine between two reads."""

    def __init__(self, wake: WebhookWake, waiter: Waiter, what: str) -> None:
        self.wake = wake
        self.waiter = waiter
        self.what = what
        self.woken = False
        self._paused_in: str | None = None
        self._confirm_until = 0.0

    def mode(self) -> str:
        return "polling" if time.time() < self._confirm_until else self.wake.mode()

    async def pause(self, pause: float, deadline: float) -> None:
        """Sleep ``pause`` (stretched to the safety poll while webhooks flow, never past ``deadline``), or
        less when the execution's webhook comes; a change of mode re-plans the same pause."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        cap = max(0.0, deadline - time.time())
        self.woken = False
        while True:
            mode = self.mode()
            self._paused_in = mode
            self.wake.log_mode(mode)
            if self.waiter.announced:
                self.waiter.announced = False
                self.woken = True
                return
            limit = min(max(pause, self.wake.safety_poll) if mode == "webhooks" else pause, cap)
            remaining = start + limit - loop.time()
            if remaining <= 0:
                return
            self.waiter.event.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self.waiter.event.wait()
            except TimeoutError:
                return

    async def after_read(self, outcome: Any) -> None:
        """What the read after a pause says about the webhooks (never about the execution: the read decides)."""
        terminal = isinstance(outcome, dict) and outcome.get("status") in TERMINAL
        if self.woken and isinstance(outcome, dict) and not terminal and self.waiter.claim in TERMINAL:
            self.wake.log.info(
                "%s: a webhook said %s but the API says %s; polling on the normal schedule to confirm",
                self.what,
                self.waiter.claim,
                outcome.get("status"),
            )
            self.waiter.claim = None
            self._confirm_until = time.time() + CONFIRM_WINDOW
        elif terminal and not self.woken and self._paused_in == "webhooks" and self.waiter.claim is None:
            await self.wake.bus.note_missed(self.wake.conn_id)


@contextlib.asynccontextmanager
async def webhook_wake(settings: Any, log: Any) -> AsyncIterator[WebhookWake | None]:
    """The wake of a connection with webhooks on (``None`` when they are off or the bus cannot be set up)."""
    if not getattr(settings, "webhooks", False):
        yield None
        return
    try:
        redis_settings = await settings_for(settings.webhook_redis_conn_id)
    except Exception as err:  # noqa: BLE001 - webhooks are an optimisation: the wait polls without them
        log.warning(
            "Webhooks are on for connection %s but its bus connection %r cannot be read (%s); polling only",
            settings.conn_id,
            settings.webhook_redis_conn_id,
            type(err).__name__,
        )
        yield None
        return
    async with lend_bus(redis_settings) as bus:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FIRST_CONNECT_WAIT):
                await bus.ready.wait()
        yield WebhookWake(bus, settings.conn_id, settings.webhook_safety_poll, log)
