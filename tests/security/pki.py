"""A throwaway PKI for the TLS tests: a CA, the broker's certificate, one per site agent, and
the bad ones (another CA's, an expired one), written as PEM files."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import trustme
import yaml

from broker.localfed import EXAMPLES
from broker.sdk.settings import TlsFiles

SANS = {"cyberport": "cyberport.agents.fedbroker.test", "sandy-ridge": "sandy-ridge.agents.fedbroker.test"}


@dataclass
class Pki:
    root: Path
    ca: trustme.CA
    other_ca: trustme.CA

    @classmethod
    def make(cls, root: Path) -> Pki:
        root.mkdir(parents=True, exist_ok=True)
        pki = cls(root, trustme.CA(), trustme.CA())
        pki.ca.cert_pem.write_to_path(str(root / "ca.pem"))
        pki.other_ca.cert_pem.write_to_path(str(root / "other-ca.pem"))
        pki.issue("broker", "localhost", "127.0.0.1")
        for site, san in SANS.items():
            pki.issue(f"agent-{site}", san)
        pki.issue("tenant", "lion-rock-ai.tenants.fedbroker.test")
        pki.issue(
            "expired",
            SANS["cyberport"],
            not_before=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC),
            not_after=datetime.datetime(2021, 1, 1, tzinfo=datetime.UTC),
        )
        pki.issue("stranger", SANS["cyberport"], ca=pki.other_ca)  # right name, wrong CA
        return pki

    def issue(
        self,
        name: str,
        *sans: str,
        ca: trustme.CA | None = None,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
    ) -> None:
        extra = {"not_before": not_before, "not_after": not_after} if not_after else {}
        cert = (ca or self.ca).issue_cert(*sans, **extra)
        cert.private_key_pem.write_to_path(str(self.root / f"{name}.key"))
        cert.cert_chain_pems[0].write_to_path(str(self.root / f"{name}.pem"))

    def path(self, name: str) -> str:
        return str(self.root / name)

    def server_args(self, mutual: bool = False) -> list[str]:
        args = ["--tls-cert", self.path("broker.pem"), "--tls-key", self.path("broker.key")]
        return [*args, "--tls-client-ca", self.path("ca.pem")] if mutual else args

    def client(self, name: str | None = None, ca: str = "ca.pem") -> TlsFiles:
        if name is None:
            return TlsFiles(ca_file=self.path(ca))
        return TlsFiles(
            ca_file=self.path(ca), cert_file=self.path(f"{name}.pem"), key_file=self.path(f"{name}.key")
        )

    def agent_tls(self, site: str, cert: str | None = None) -> dict[str, str]:
        cert = cert or f"agent-{site}"
        return {
            "ca_file": self.path("ca.pem"),
            "cert_file": self.path(f"{cert}.pem"),
            "key_file": self.path(f"{cert}.key"),
        }

    def federation(self) -> Path:
        """examples/federation.yaml with each site's agent_cert_san."""
        data = yaml.safe_load((EXAMPLES / "federation.yaml").read_text())
        for site in data["sites"]:
            site["agent_cert_san"] = SANS[site["name"]]
        path = self.root / "federation.yaml"
        path.write_text(yaml.safe_dump(data))
        return path
