"""Command line: ``python -m airflow_provider_volteras.simulator --port 8765``."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from .state import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_ORGANIZATION_ID,
    MAGIC_VEHICLE_IDS,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_volteras.simulator",
        description="Serve a local Volteras Connect API simulator. Its /_simulator control "
        "paths are unauthenticated: keep it on loopback.",
        epilog=MAGIC_VEHICLE_IDS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--port", type=int, default=8765, help="TCP port; 0 picks a free one (default 8765)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    parser.add_argument("--organization-id", default=DEFAULT_ORGANIZATION_ID)
    parser.add_argument("--token-ttl", type=float, default=3600.0, metavar="SECONDS", help="access token lifetime")
    parser.add_argument(
        "--command-timeout", type=float, default=300.0, metavar="SECONDS", help="platform command timeout"
    )
    parser.add_argument(
        "--default-delay", type=float, default=1.0, metavar="SECONDS", help="delay before a command leaves PENDING"
    )
    parser.add_argument(
        "--no-commands-scope", action="store_true", help="issue tokens without the vehicle:commands scope"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .server import SimulatorServer

    if not SimulatorServer.is_loopback(args.host):
        print(
            f"WARNING: binding to {args.host}: the simulator's control paths are unauthenticated.",
            file=sys.stderr,
            flush=True,
        )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = SimulatorServer(
        args.port,
        host=args.host,
        client_id=args.client_id,
        client_secret=args.client_secret,
        organization_id=args.organization_id,
        token_ttl=args.token_ttl,
        command_timeout=args.command_timeout,
        default_delay=args.default_delay,
        grant_commands_scope=not args.no_commands_scope,
    )
    try:
        server.start()
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"error: cannot start the simulator: {exc}", file=sys.stderr, flush=True)
        return 1
    print(f"Volteras simulator listening on {server.base_url}", flush=True)
    try:
        while not stop.wait(0.5):
            if not server.running:
                print("error: the simulator stopped unexpectedly", file=sys.stderr, flush=True)
                return 1
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
