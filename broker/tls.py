"""TLS for the broker's gRPC endpoint and its clients: which credentials, from which files.

Server: a certificate and key (and, for mutual TLS, the CA that signs client certificates),
served through gRPC's dynamic certificate configuration, so a renewed certificate is picked
up at the next handshake after its files change, or after SIGHUP, without a restart.

Clients (CLI, SDK, agents): plaintext only to loopback addresses or with an explicit
`insecure`; otherwise TLS, verified against a CA file or the system's trust store, the
server name checked against the endpoint's host (or `server_name`).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc
from cryptography import x509

from broker.config import FederationConfig
from broker.sdk.settings import TlsFiles
from broker.validation import InvalidInput

log = logging.getLogger("fedbroker.tls")

# gRPC's auth context key for the peer certificate's subject alternative names.
SAN_KEY = "x509_subject_alternative_name"


# ---------------------------------------------------------------------------- shared


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1 (a name other than localhost is not trusted to be local)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_of(endpoint: str) -> str:
    return endpoint.strip().rpartition(":")[0].strip("[]")


def read_pem(path: str | Path, what: str) -> bytes:
    file = Path(path).expanduser()
    try:
        data = file.read_bytes()
    except OSError as error:
        raise InvalidInput(what, [f"{file}: cannot read: {error.strerror}"]) from None
    if b"-----BEGIN" not in data:
        raise InvalidInput(what, [f"{file}: is not a PEM file"])
    return data


def check_certificate(cert_pem: bytes, what: str, source: str) -> x509.Certificate:
    """The first certificate in `cert_pem`; InvalidInput if unreadable, expired or not yet valid."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise InvalidInput(what, [f"{source}: not a PEM certificate"]) from None
    now = datetime.now(UTC)
    if cert.not_valid_after_utc < now:
        raise InvalidInput(
            what, [f"{source}: the certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}"]
        )
    if cert.not_valid_before_utc > now:
        raise InvalidInput(
            what, [f"{source}: the certificate is not valid before {cert.not_valid_before_utc:%Y-%m-%d}"]
        )
    return cert


def check_key_pair(cert_file: str | Path, key_file: str | Path, what: str) -> None:
    """The key belongs to the certificate (the stdlib's check, before gRPC's vaguer handshake error)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_cert_chain(str(Path(cert_file).expanduser()), str(Path(key_file).expanduser()))
    except ssl.SSLError as error:
        problem = f"{key_file}: does not match the certificate {cert_file} ({error.reason})"
        raise InvalidInput(what, [problem]) from None
    except OSError as error:
        raise InvalidInput(what, [f"cannot read {cert_file} or {key_file}: {error.strerror}"]) from None


# ---------------------------------------------------------------------------- clients


def uses_tls(endpoints: Sequence[str], tls: TlsFiles | None) -> bool:
    tls = tls or TlsFiles()
    if tls.insecure:
        return False
    if tls.ca_file or tls.cert_file or tls.key_file or tls.server_name:
        return True
    return not all(is_loopback(host_of(e)) for e in endpoints)


def channel_credentials(tls: TlsFiles | None) -> grpc.ChannelCredentials:
    """TLS credentials from the files; InvalidInput naming the setting for a missing, expired
    or mismatched file (found here, not as gRPC's "Socket closed" after a refused handshake)."""
    tls = tls or TlsFiles()
    if tls.insecure and (tls.ca_file or tls.cert_file or tls.key_file):
        raise InvalidInput(
            "tls", ["insecure (plaintext) cannot be combined with ca_file, cert_file or key_file"]
        )
    if bool(tls.cert_file) != bool(tls.key_file):
        raise InvalidInput("tls", ["cert_file and key_file go together (mutual TLS needs both)"])
    roots = system_roots()
    if tls.ca_file:
        roots = read_pem(tls.ca_file, "ca_file")
        check_certificate(roots, "ca_file", tls.ca_file)
    key = chain = None
    if tls.cert_file and tls.key_file:
        chain = read_pem(tls.cert_file, "cert_file")
        check_certificate(chain, "cert_file", tls.cert_file)
        key = read_pem(tls.key_file, "key_file")
        check_key_pair(tls.cert_file, tls.key_file, "key_file")
    return grpc.ssl_channel_credentials(root_certificates=roots, private_key=key, certificate_chain=chain)


def system_roots() -> bytes | None:
    """The operating system's CA bundle (None: gRPC's own bundled roots)."""
    paths = ssl.get_default_verify_paths()
    for candidate in (os.environ.get("SSL_CERT_FILE"), paths.cafile, paths.openssl_cafile):
        if candidate and Path(candidate).is_file():
            return Path(candidate).read_bytes()
    return None


def channel_options(endpoint: str, tls: TlsFiles | None) -> list[tuple[str, str]]:
    """The name the broker's certificate is checked against: `server_name`, else the endpoint's
    host. Needed whenever gRPC dials an address rather than the name the user gave."""
    name = (tls.server_name if tls else None) or host_of(endpoint)
    return [("grpc.ssl_target_name_override", name), ("grpc.default_authority", name)]


def handshake_hint(details: str, tls_on: bool) -> str:
    """A sentence for a refused TLS handshake, from gRPC's UNAVAILABLE details ("" if none fits)."""
    lowered = details.lower()
    if "certificate_verify_failed" in lowered or "handshake failed" in lowered:
        if "expired" in lowered:
            return "the broker's TLS certificate has expired"
        return (
            "the broker's TLS certificate is not signed by a CA this client trusts "
            "(set ca_file / --ca-file / FEDBROKER_CA_FILE) or does not name this host (server_name)"
        )
    if tls_on and ("socket closed" in lowered or "wrong_version" in lowered or "connection reset" in lowered):
        return (
            "the broker closed the TLS connection: it may require a client certificate "
            "(cert_file/key_file), or it listens in plaintext (--insecure)"
        )
    return ""


# ---------------------------------------------------------------------------- the server


@dataclass(frozen=True, slots=True)
class ServerTls:
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None  # mutual TLS: every caller presents a certificate it signed

    def check(self) -> None:
        """Readable, current and matching files, or InvalidInput naming the flag."""
        check_certificate(read_pem(self.cert_file, "--tls-cert"), "--tls-cert", str(self.cert_file))
        read_pem(self.key_file, "--tls-key")
        check_key_pair(self.cert_file, self.key_file, "--tls-key")
        if self.client_ca_file is not None:
            check_certificate(
                read_pem(self.client_ca_file, "--tls-client-ca"), "--tls-client-ca", str(self.client_ca_file)
            )


class CertificateReloader:
    """gRPC's certificate fetcher: asked at each new handshake, it answers a new configuration
    when the files changed (or a reload was requested), else None (keep the current one).
    A broken new file is logged and the last good certificate kept."""

    def __init__(self, tls: ServerTls) -> None:
        self.tls = tls
        self._lock = threading.Lock()  # gRPC calls the fetcher from its own threads
        self._forced = False
        self._stamp = self._stamps()
        self.initial = self._configuration()
        self.reloads = 0

    def _files(self) -> list[Path]:
        return [
            self.tls.cert_file,
            self.tls.key_file,
            *([self.tls.client_ca_file] if self.tls.client_ca_file else []),
        ]

    def _stamps(self) -> tuple[tuple[int, int, int], ...]:
        out = []
        for path in self._files():
            try:
                st = path.stat()
                out.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                out.append((0, 0, 0))
        return tuple(out)

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        self.tls.check()
        pair = (self.tls.key_file.read_bytes(), self.tls.cert_file.read_bytes())
        roots = self.tls.client_ca_file.read_bytes() if self.tls.client_ca_file else None
        return grpc.ssl_server_certificate_configuration([pair], root_certificates=roots)

    def request_reload(self) -> None:
        """SIGHUP: read the files again at the next handshake, changed or not."""
        with self._lock:
            self._forced = True

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            stamp = self._stamps()
            if stamp == self._stamp and not self._forced:
                return None
            self._stamp, self._forced = stamp, False
            try:
                configuration = self._configuration()
            except (InvalidInput, OSError) as error:
                log.error("TLS files changed but cannot be used; keeping the current certificate: %s", error)
                return None
            self.reloads += 1
            log.info("TLS certificate reloaded from %s", self.tls.cert_file)
            return configuration

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self.initial, self.fetch, require_client_authentication=self.tls.client_ca_file is not None
        )


def peer_names(auth_context: dict[str, list[bytes]]) -> frozenset[str]:
    """The subject alternative names of the caller's verified certificate (empty: none shown)."""
    return frozenset(v.decode(errors="replace") for v in auth_context.get(SAN_KEY, ()))


def server_tls(
    config: FederationConfig,
    config_path: Path,
    cert: Path | None,
    key: Path | None,
    client_ca: Path | None,
) -> ServerTls | None:
    """The flags (or environment), else federation.yaml's `tls` (its paths relative to the file);
    None: plaintext. Checked now, so a bad file stops `serve` with exit 2 and a message."""
    section = config.tls
    if section is not None:
        here = config_path.parent

        def under(value: str) -> Path:
            path = Path(value).expanduser()
            return path if path.is_absolute() else here / path

        cert = cert or under(section.cert_file)
        key = key or under(section.key_file)
        if client_ca is None and section.client_ca_file:
            client_ca = under(section.client_ca_file)
    if cert is None and key is None:
        if client_ca is not None:
            raise InvalidInput("--tls-client-ca", ["needs --tls-cert and --tls-key (mutual TLS is TLS)"])
        return None
    if cert is None or key is None:
        raise InvalidInput("--tls-cert", ["--tls-cert and --tls-key go together"])
    tls = ServerTls(cert, key, client_ca)
    tls.check()
    return tls
