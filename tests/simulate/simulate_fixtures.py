"""A tiny federation, mapping and trace whose replay can be worked out by hand.

alpha: one 4-GPU node, honours AISS, H800 at HK$40/h. beta: one 8-GPU node, no program,
HK$20/h. 1 Gbit/s between them; dataset ``scans`` (450 GB) lives at beta, so moving it to
alpha takes exactly 1 hour. Tenants ``sub`` and ``scan`` are AISS-approved (every job asks
for subsidy), ``scan``'s jobs all read ``scans``; ``full`` pays full price. Every tenant's
home is alpha.

    j1  t=0     sub   2 GPUs  1 h
    j2  t=0     full  2 GPUs  1 h
    j3  t=0     full  8 GPUs  1 h   (can never fit alpha's 4-GPU node)
    j4  t=600   scan  1 GPU   1 h   (reads scans: 1 h of moving anywhere but beta)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from broker.config import FederationConfig, parse_federation
from broker.simulate import Mapping, parse_mapping

HEADER = "job_id,submit_s,gpus,gpus_per_node,duration_s,tenant,status,gpu_model,cluster\n"
TINY_TRACE = HEADER + (
    "j1,0,2,,3600,,,,c-sub\nj2,0,2,,3600,,,,c-full\nj3,0,8,,3600,,,,c-full\nj4,600,1,,3600,,,,c-scan\n"
)


def digest(n: int) -> str:
    return f"{n:064x}"


def federation_data(weights: dict[str, float] | None = None) -> dict[str, Any]:
    return {
        "weights": weights or {"locality": 1.0, "cost": 1.0, "load": 1.0},
        "subsidy_programs": [{"name": "aiss", "rate": 0.7}],
        "sites": [
            {
                "name": "alpha",
                "backends": ["kubernetes"],
                "subsidy_programs": ["aiss"],
                "gpu_prices_hkd_per_hour": {"H800": 40.0},
                "agent_token_sha256": digest(1),
            },
            {
                "name": "beta",
                "backends": ["kubernetes"],
                "gpu_prices_hkd_per_hour": {"H800": 20.0},
                "agent_token_sha256": digest(2),
            },
        ],
        "links": [{"sites": ["alpha", "beta"], "gbit_s": 1}],
        "datasets": [{"name": "scans", "size_gb": 450, "replicas": ["beta"]}],
        "tenants": [
            {"name": "sub", "token_sha256": digest(3), "subsidy": {"program": "aiss", "budget_hkd": 1e6}},
            {"name": "scan", "token_sha256": digest(4), "subsidy": {"program": "aiss", "budget_hkd": 1e6}},
            {"name": "full", "token_sha256": digest(5)},
        ],
    }


def mapping_data() -> dict[str, Any]:
    return {
        "gpu_model": "H800",
        "sites": {
            "alpha": [{"count": 1, "gpu_model": "H800", "gpus": 4}],
            "beta": [{"count": 1, "gpu_model": "H800", "gpus": 8}],
        },
        "tenants": {
            "sub": {"home": "alpha", "subsidy_share": 1.0},
            "scan": {"home": "alpha", "subsidy_share": 1.0, "datasets": {"scans": 1.0}},
            "full": {"home": "alpha", "subsidy_share": 0.0},
        },
        "clusters": {"c-sub": "sub", "c-full": "full", "c-scan": "scan"},
    }


def tiny_config() -> FederationConfig:
    return parse_federation(federation_data())


def tiny_mapping(config: FederationConfig) -> Mapping:
    return parse_mapping(mapping_data(), config)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
