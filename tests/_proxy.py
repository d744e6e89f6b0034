"""A real CONNECT proxy on 127.0.0.1 and a self-signed certificate, for the proxy tests.

``ConnectProxy`` tunnels ``CONNECT 127.0.0.1:<port>`` to that port and counts what it saw. It can ask for
Basic credentials (``Proxy-Authorization``; 407 without the right ones) or refuse every tunnel. It opens
tunnels to loopback only, and answers any other request (a plain-http request forwarded to it) with 502.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import selectors
import socket
import socketserver
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

#: How long the proxy waits for a request head or for a tunnel's next bytes before it gives up on it.
IDLE_SECONDS = 30.0


@dataclass
class ProxyLog:
    """What the proxy saw, in order. Read it under ``ConnectProxy.lock``, or once the proxy is idle."""

    connects: list[str] = field(default_factory=list)
    """The ``host:port`` of every CONNECT."""
    authorizations: list[str | None] = field(default_factory=list)
    """The ``Proxy-Authorization`` of every CONNECT (``None`` when absent)."""
    opened: int = 0
    """Tunnels opened (CONNECT answered 200 and the target reached)."""
    refused: int = 0
    """CONNECTs answered with an error (refused, wrong or missing credentials, not loopback)."""
    forwarded: list[str] = field(default_factory=list)
    """Request lines that were not CONNECT (plain-http requests sent to the proxy)."""


class ConnectProxy:
    """``with ConnectProxy(credentials=("user", "pw")) as proxy: ... proxy.url ... proxy.log.opened``.

    ``refuse``: answer every CONNECT with this status (e.g. 403) instead of opening the tunnel.
    """

    def __init__(self, *, credentials: tuple[str, str] | None = None, refuse: int | None = None) -> None:
        self.credentials = credentials
        self.refuse = refuse
        self.log = ProxyLog()
        self.lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._server: socketserver.ThreadingTCPServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The port it listens on (kept once stopped, for messages that name it)."""
        assert self._port is not None, "the proxy was never started"
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, without credentials."""
        return f"http://127.0.0.1:{self.port}"

    def url_with(self, user: str, password: str) -> str:
        from urllib.parse import quote

        return f"http://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{self.port}"

    def start(self) -> ConnectProxy:
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._handle(self.request)

        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler, bind_and_activate=True)
        server.daemon_threads = True
        self._server = server
        self._port = int(server.server_address[1])
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        with self.lock:
            for sock in list(self._sockets):
                _close(sock)
        if self._thread is not None:
            self._thread.join(5)
        self._server = None

    def __enter__(self) -> ConnectProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- one client connection -------------------------------------------------------------------

    def _handle(self, client: socket.socket) -> None:
        with self.lock:
            self._sockets.add(client)
        upstream: socket.socket | None = None
        try:
            client.settimeout(IDLE_SECONDS)
            head = _read_head(client)
            if head is None:
                return
            request_line, headers = head
            method, _, rest = request_line.partition(" ")
            target = rest.partition(" ")[0]
            if method.upper() != "CONNECT":
                with self.lock:
                    self.log.forwarded.append(request_line)
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            authorization = headers.get("proxy-authorization")
            with self.lock:
                self.log.connects.append(target)
                self.log.authorizations.append(authorization)
            status = self._refusal(target, authorization)
            if status is None:
                host, _, port = target.rpartition(":")
                try:
                    upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=5)
                except (OSError, ValueError):
                    status = "502 Bad Gateway"
            if status is not None:
                with self.lock:
                    self.log.refused += 1
                extra = 'Proxy-Authenticate: Basic realm="tests"\r\n' if status.startswith("407") else ""
                client.sendall(f"HTTP/1.1 {status}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n".encode())
                return
            assert upstream is not None
            with self.lock:
                self._sockets.add(upstream)
                self.log.opened += 1
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            _relay(client, upstream)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    with self.lock:
                        self._sockets.discard(sock)
                    _close(sock)

    def _refusal(self, target: str, authorization: str | None) -> str | None:
        """The status line of the refusal, or ``None`` to open the tunnel."""
        if self.refuse is not None:
            return f"{self.refuse} Refused By The Test Proxy"
        host = target.rpartition(":")[0].strip("[]")
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            return "403 Only Loopback Targets"  # tests never send traffic anywhere else
        if self.credentials is not None:
            expected = "Basic " + base64.b64encode(":".join(self.credentials).encode()).decode()
            if authorization != expected:
                return "407 Proxy Authentication Required"
        return None


def _read_head(sock: socket.socket) -> tuple[str, dict[str, str]] | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk or len(data) > 65536:
            return None
        data += chunk
    # Bytes after the head (none for CONNECT: the client waits for the answer) are not expected.
    lines = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes (or nothing moves for ``IDLE_SECONDS``)."""
    with selectors.DefaultSelector() as selector:
        selector.register(a, selectors.EVENT_READ, b)
        selector.register(b, selectors.EVENT_READ, a)
        while True:
            ready = selector.select(IDLE_SECONDS)
            if not ready:
                return
            for key, _ in ready:
                source = key.fileobj
                assert isinstance(source, socket.socket)
                chunk = source.recv(65536)
                if not chunk:
                    return
                key.data.sendall(chunk)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key: ``(cert.pem, key.pem)``.

    The certificate is its own CA, so giving it as ``ca_bundle`` makes clients trust this server only.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "volteras simulator (tests)")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path
