"""Money arithmetic of one placement: what the tenant pays and what the subsidy program pays.

A request is subsidised at a site when it asks for subsidy (``required``/``preferred``), the
tenant is approved for a program, the site honours that program, and the tenant's remaining
budget covers the program's share of the whole estimate. Otherwise the tenant pays full
price. A GPU model the site has no price for costs 0 (config validation should prevent it).
"""

from __future__ import annotations

from typing import NamedTuple

from .model import Request, SiteConfig, SubsidyProgram

BUDGET_EPS = 1e-6  # HK$: float sums of reservations must not refuse an exact fit


class Quote(NamedTuple):
    subsidised: bool
    tenant_hkd: float  # what the tenant pays (the cost score term)
    program_hkd: float  # reserved against the tenant's subsidy budget at placement
    needed_hkd: float  # the program's share if subsidised (for reasons), else 0


def quote(config: SiteConfig, request: Request, program: SubsidyProgram | None, budget_left: float) -> Quote:
    price = config.gpu_prices_hkd_per_hour.get(request.gpu_model, 0.0)
    full = request.gpus_per_replica * request.replicas * request.estimated_hours * price
    if request.subsidy == "none" or program is None or program.name not in config.subsidy_programs:
        return Quote(False, full, 0.0, 0.0)
    share = full * program.rate
    if share > budget_left + BUDGET_EPS:
        return Quote(False, full, 0.0, share)
    return Quote(True, full - share, share, share)
