"""The federation config (`federation.yaml`): typed, validated, with errors naming the field path."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError, model_validator

from broker.validation import PATTERN_WORDS, InvalidInput, check_mapping, describe, read_yaml

Backend = Literal["kubernetes", "ray"]
PositiveFloat = Annotated[float, Field(gt=0)]
Name = Annotated[str, Field(min_length=1, pattern=r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")]
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_TOKEN_DIGESTS = 8  # a rotation needs two; a few more for overlapping rotations


def _token_digests(value: object) -> str | list[str]:
    """One digest, or a list of them (a token rotation: old and new both valid until the old
    is removed). Checked by hand so a bad digest is one message, not one per union branch."""
    words = PATTERN_WORDS[_SHA256.pattern]
    if isinstance(value, str):
        if not _SHA256.match(value):
            raise ValueError(words)
        return value
    if not isinstance(value, list) or not value or len(value) > MAX_TOKEN_DIGESTS:
        raise ValueError(f"must be a SHA-256 digest or a list of 1 to {MAX_TOKEN_DIGESTS} of them")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not _SHA256.match(item):
            raise ValueError(f"item {i}: {words}")
    return list(value)


# `agent_token_sha256` / `token_sha256`: "digest" or ["old digest", "new digest"].
TokenDigests = Annotated[str | list[str], PlainValidator(_token_digests)]


def digests(value: str | list[str]) -> tuple[str, ...]:
    """The digests of a token field, whichever form it was written in."""
    return (value,) if isinstance(value, str) else tuple(value)


class _Strict(BaseModel):
    # Strict types: `rate: "0.7"` or `quota_gpus: true` is reported, never read as 0.7 or 1.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Weights(_Strict):
    locality: Annotated[float, Field(ge=0)] = 1.0
    cost: Annotated[float, Field(ge=0)] = 1.0
    load: Annotated[float, Field(ge=0)] = 1.0


class SubsidyProgram(_Strict):
    name: Name
    rate: Annotated[float, Field(ge=0, le=1)]


class SiteConfig(_Strict):
    name: Name
    backends: Annotated[list[Backend], Field(min_length=1)]
    subsidy_programs: list[str] = []
    gpu_prices_hkd_per_hour: dict[str, PositiveFloat] = {}
    agent_token_sha256: TokenDigests
    labels: dict[str, str] = {}
    # Mutual TLS: the subject alternative name (DNS name) this site's agent certificate must
    # carry; its agent is refused on a connection without a verified certificate naming it.
    agent_cert_san: Annotated[str, Field(min_length=1, max_length=253)] | None = None
    # The most GPUs of each model the site may report (all its nodes together); a report above
    # them, or of a model not listed, is refused. Empty: not bounded (only per node, see limits).
    gpu_capacity: dict[str, Annotated[int, Field(gt=0, le=1_000_000)]] = {}


class Link(_Strict):
    sites: Annotated[list[str], Field(min_length=2, max_length=2)]
    gbit_s: PositiveFloat


class DatasetConfig(_Strict):
    name: Name
    size_gb: Annotated[float, Field(ge=0)]
    replicas: list[str] = []


class TenantSubsidy(_Strict):
    program: str
    budget_hkd: Annotated[float, Field(ge=0)]


class TenantConfig(_Strict):
    name: Name
    token_sha256: TokenDigests
    subsidy: TenantSubsidy | None = None
    quota_gpus: Annotated[int, Field(gt=0)] | None = None
    home_site: str | None = None  # its work waits overflow_after_s for this site first
    fair_share_weight: PositiveFloat = 1.0  # entitled to weight / sum of weights
    # What the tenant itself may pay per calendar month (UTC), HK$: settled plus held for its
    # placed work (broker/ledger.py); a workload whose estimate would cross it is refused.
    max_hkd_per_month: PositiveFloat | None = None


class FairShare(_Strict):
    """Queue order within a priority by each tenant's weighted share (broker/placement/fairshare.py)."""

    enabled: bool = True
    half_life_h: PositiveFloat = 168.0  # past GPU-hours count half after this long


class PriorityClass(_Strict):
    """Work of this priority may preempt running work of lower priority when `preempt` is on."""

    name: Name
    priority: Annotated[int, Field(ge=-1_000_000, le=1_000_000)]
    preempt: bool = False


class OperatorConfig(_Strict):
    name: Name
    token_sha256: TokenDigests


class InfraRetry(_Strict):
    """Requeues after the infrastructure's failures: they use no attempt (broker/engine/infra.py)."""

    backoff_s: PositiveFloat = 5.0  # before the first such requeue is placed; doubles with each
    backoff_max_s: PositiveFloat = 300.0
    limit: Annotated[int, Field(ge=0)] = 10  # then the workload ends FAILED: no endless loop
    # image_pull and launch_error are free this many times per workload, then use attempts
    doubt_free: Annotated[int, Field(ge=0)] = 2


class BrokerTls(_Strict):
    """TLS on the broker's endpoint (the `serve --tls-*` flags win over these)."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None  # mutual TLS: every caller presents a certificate it signed


class Limits(_Strict):
    """What one tenant may ask of the broker; beyond them calls get RESOURCE_EXHAUSTED."""

    submits_per_s: PositiveFloat = 50.0  # sustained, per tenant (a token bucket)
    submit_burst: Annotated[int, Field(gt=0)] = 200  # the bucket's size
    queued_per_tenant: Annotated[int, Field(gt=0)] = 10_000  # QUEUED workloads one tenant may hold
    gpus_per_node: Annotated[int, Field(gt=0)] = 1024  # the most GPUs an agent may report on one node


class FederationConfig(_Strict):
    tls: BrokerTls | None = None
    limits: Limits = Limits()
    weights: Weights = Weights()
    heartbeat_ttl_s: PositiveFloat = 15.0
    requeue_grace_s: Annotated[float, Field(ge=0)] = 60.0
    infra_retry: InfraRetry = InfraRetry()
    # A workload with preferred sites (its `prefer:` or its tenant's home_site) waits this
    # long for them before any site may take it; a workload's own overflow_after_s wins.
    overflow_after_s: Annotated[float, Field(ge=0)] = 600.0
    fair_share: FairShare = FairShare()
    priority_classes: list[PriorityClass] = []
    # A preemptor holds its victims' GPUs this long for their site to report them free.
    preemption_wait_s: PositiveFloat = 120.0
    subsidy_programs: list[SubsidyProgram] = []
    sites: Annotated[list[SiteConfig], Field(min_length=1)]
    links: list[Link] = []
    datasets: list[DatasetConfig] = []
    tenants: list[TenantConfig] = []
    operators: list[OperatorConfig] = []

    @model_validator(mode="after")
    def _cross_references(self) -> FederationConfig:
        problems: list[str] = []
        site_names = [s.name for s in self.sites]
        programs = {p.name for p in self.subsidy_programs}
        _unique(problems, "sites", site_names)
        _unique(problems, "subsidy_programs", [p.name for p in self.subsidy_programs])
        _unique(problems, "tenants", [t.name for t in self.tenants])
        _unique(problems, "datasets", [d.name for d in self.datasets])
        _unique(problems, "priority_classes", [c.name for c in self.priority_classes])
        seen_priorities: set[int] = set()
        for i, klass in enumerate(self.priority_classes):
            if klass.priority in seen_priorities:
                problems.append(f"priority_classes[{i}].priority: {klass.priority} has another class")
            seen_priorities.add(klass.priority)
        # One token, one identity: a shared digest would make one holder act as the other.
        holders: dict[str, str] = {}
        for field, digest in self._token_digests():
            if digest in holders:
                problems.append(f"{field}: same token digest as {holders[digest]}")
            holders.setdefault(digest, field)
        for i, site in enumerate(self.sites):
            for j, program in enumerate(site.subsidy_programs):
                if program not in programs:
                    problems.append(f"sites[{i}].subsidy_programs[{j}]: unknown program {program!r}")
        for i, link in enumerate(self.links):
            for j, name in enumerate(link.sites):
                if name not in site_names:
                    problems.append(f"links[{i}].sites[{j}]: unknown site {name!r}")
        for i, dataset in enumerate(self.datasets):
            for j, name in enumerate(dataset.replicas):
                if name not in site_names:
                    problems.append(f"datasets[{i}].replicas[{j}]: unknown site {name!r}")
        for i, tenant in enumerate(self.tenants):
            if tenant.subsidy and tenant.subsidy.program not in programs:
                problems.append(f"tenants[{i}].subsidy.program: unknown program {tenant.subsidy.program!r}")
            if tenant.home_site is not None and tenant.home_site not in site_names:
                problems.append(f"tenants[{i}].home_site: unknown site {tenant.home_site!r}")
        sans: dict[str, int] = {}
        for i, site in enumerate(self.sites):
            if site.agent_cert_san is not None:
                if site.agent_cert_san in sans:
                    problems.append(
                        f"sites[{i}].agent_cert_san: same as sites[{sans[site.agent_cert_san]}]'s"
                    )
                sans.setdefault(site.agent_cert_san, i)
        if problems:
            # Raised as ValueError so pydantic folds it into the same error list.
            raise ValueError("\n".join(problems))
        return self

    def _token_digests(self) -> list[tuple[str, str]]:
        fields = (
            [(f"sites[{i}].agent_token_sha256", s.agent_token_sha256) for i, s in enumerate(self.sites)]
            + [(f"tenants[{i}].token_sha256", t.token_sha256) for i, t in enumerate(self.tenants)]
            + [(f"operators[{i}].token_sha256", o.token_sha256) for i, o in enumerate(self.operators)]
        )
        return [
            (field if isinstance(value, str) else f"{field}[{j}]", digest)
            for field, value in fields
            for j, digest in enumerate(digests(value))
        ]

    def site(self, name: str) -> SiteConfig | None:
        return next((s for s in self.sites if s.name == name), None)


def _unique(problems: list[str], field: str, names: list[str]) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            problems.append(f"{field}[{i}].name: duplicate {name!r}")
        seen.add(name)


def parse_federation(data: object, source: str = "federation config") -> FederationConfig:
    check_mapping(data, source, "a federation (sites, tenants, ...)")
    try:
        return FederationConfig.model_validate(data)
    except ValidationError as error:
        problems: list[str] = []
        for line in describe(error, FederationConfig):
            # Cross-reference problems arrive as one multi-line value error at the root.
            head, _, rest = line.partition(": ")
            problems.extend(rest.split("\n") if head == "(root)" else [line])
        raise InvalidInput(source, problems) from None


def load_federation(path: str | Path) -> FederationConfig:
    """Read and validate a federation file; InvalidInput names the file and each bad field."""
    path = Path(path)
    data = read_yaml(path)
    return parse_federation(data, str(path))
