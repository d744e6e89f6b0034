"""Run the simulator with uvicorn in a background thread."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import socket
import ssl
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

from .app import create_app
from .middleware import SimulatorApp
from .state import SimulatorState

__all__ = ["SimulatorServer"]

_LOOPBACK = ("127.0.0.1", "::1", "localhost")


class SimulatorServer:
    """A Volteras Connect simulator served by uvicorn in a daemon thread.

    ``settings`` are :class:`SimulatorState` keyword arguments (``client_id``,
    ``client_secret``, ``organization_id``, ``token_ttl``, ``command_timeout``,
    ``default_delay``, ``grant_commands_scope``, ``seed_demo_vehicles``, ...); with an
    explicit ``state`` they are applied through ``state.configure``.

    >>> with SimulatorServer(port=0, default_delay=0.2) as sim:   # doctest: +SKIP
    ...     requests.post(f"{sim.base_url}/v1/oauth2/token", ...)

    With ``ssl_certfile`` and ``ssl_keyfile`` (PEM files) it serves https, and ``base_url`` says so.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        state: SimulatorState | None = None,
        timeout_keep_alive: int = 15,
        backlog: int = 4096,
        startup_timeout: float = 15.0,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
        **settings: Any,
    ) -> None:
        if state is None:
            state = SimulatorState(**settings)
        elif settings:
            state.configure(**settings)
        self.state: SimulatorState = state
        self.app: SimulatorApp = create_app(state)
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._timeout_keep_alive = timeout_keep_alive
        self._backlog = backlog
        self._startup_timeout = startup_timeout
        self._ssl_certfile = ssl_certfile
        self._ssl_keyfile = ssl_keyfile
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ properties

    @property
    def port(self) -> int:
        """The bound TCP port (known once started)."""
        if self._port is None:
            raise RuntimeError("the simulator is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (``https://`` when serving TLS; no trailing slash)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self._ssl_certfile else 'http'}://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------ lifecycle

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # A restart keeps the port first chosen for a port-0 server.
            sock.bind((self.host, self._port if self._port is not None else self._requested_port))
            sock.listen(self._backlog)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        return sock

    def start(self) -> SimulatorServer:
        """Bind, start serving and wait until the server answers; return self."""
        with self._lock:
            if self.running:
                return self
            sock = self._bind()
            self._port = sock.getsockname()[1]
            config = uvicorn.Config(
                self.app,
                log_level="warning",
                log_config=None,
                access_log=False,
                lifespan="off",
                proxy_headers=False,
                server_header=False,
                timeout_keep_alive=self._timeout_keep_alive,
                timeout_graceful_shutdown=1,
                backlog=self._backlog,
                ssl_certfile=self._ssl_certfile,
                ssl_keyfile=self._ssl_keyfile,
            )
            server = uvicorn.Server(config)
            self.app.closing = False
            thread = threading.Thread(
                target=self._serve, args=(server, sock), name=f"volteras-simulator-{self._port}", daemon=True
            )
            self._server, self._thread = server, thread
            thread.start()
            deadline = time.monotonic() + self._startup_timeout
            while not server.started:
                if not thread.is_alive():
                    sock.close()
                    raise RuntimeError("the simulator server thread died during startup")
                if time.monotonic() > deadline:
                    self._stop_locked(2.0)
                    raise RuntimeError("the simulator did not start in time")
                time.sleep(0.01)
            self._wait_answering(deadline)
            return self

    def _serve(self, server: uvicorn.Server, sock: socket.socket) -> None:
        """Thread body: run uvicorn on its preferred loop (uvloop when installed)."""

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            await server.serve(sockets=[sock])

        try:
            with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
                runner.run(main())
        finally:
            self._loop = None
            sock.close()

    @staticmethod
    def _abort_connections(server: uvicorn.Server) -> None:
        """Cut every open client connection (runs on the server loop)."""
        for connection in list(server.server_state.connections):
            cycle = getattr(connection, "cycle", None)
            if cycle is not None:
                cycle.disconnected = True
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()

    def _wait_answering(self, deadline: float) -> None:
        while True:
            conn = self._probe_connection()
            try:
                conn.request("GET", "/_simulator/health")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
            finally:
                conn.close()

    def _probe_connection(self) -> http.client.HTTPConnection:
        """A connection that asks the server itself whether it answers (its own certificate is not checked)."""
        if not self._ssl_certfile:
            return http.client.HTTPConnection(self.host, self.port, timeout=1.0)
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return http.client.HTTPSConnection(self.host, self.port, timeout=1.0, context=context)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving (open connections are cut) and free the port. Idempotent."""
        with self._lock:
            self._stop_locked(timeout)

    def _stop_locked(self, timeout: float) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self.app.closing = True
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop may just have closed
                loop.call_soon_threadsafe(self._abort_connections, server)
        server.should_exit = True
        server.force_exit = True
        thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError("the simulator thread did not stop in time")
        self._server = self._thread = None

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.base_url if self._port is not None else "not started"
        return f"<SimulatorServer {where} running={self.running}>"

    @staticmethod
    def is_loopback(host: str) -> bool:
        """Whether ``host`` only listens on the local machine."""
        return host in _LOOPBACK or host.startswith("127.")
