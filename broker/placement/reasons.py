"""Every human-readable text the placement core produces: reasons and summaries.

Templates are defined once here so that tests, metrics and docs share the exact strings.
Each rejecting filter has a short metric key (``HEALTH`` ...) used to count rejections
with bounded cardinality; the formatted text goes into explanations.
"""

from __future__ import annotations

# --- metric keys: one per filter (Nomad's FilterConstraint* constants) ---
HEALTH = "health"
BACKEND = "backend"
GPU_MODEL = "gpu_model"
ALLOWED_SITES = "allowed_sites"
QUOTA = "quota"
SUBSIDY_PROGRAM = "subsidy_program"
SUBSIDY_BUDGET_KEY = "subsidy_budget"
GANG_FIT = "gang_fit"
HELD = "held"
PAUSED_KEY = "paused"
PREFERENCE = "preference"
SPEND_CAP_KEY = "spend_cap"

# --- per-candidate reasons (dynamic: may change as the federation changes) ---
UNHEALTHY = "agent not healthy"
PAUSED = "placement is paused by an operator"
BACKEND_NOT_OFFERED = "backend {backend} not offered here"
NO_GPU_MODEL = "no {model} GPUs here"
# A site sells only the GPU models its config prices: an unpriced one could not be charged.
NOT_PRICED = "{model} not offered here (no price set)"
NOT_ALLOWED = "not in the workload's allowed sites"
QUOTA_EXCEEDED = "tenant quota {quota} GPUs: {in_use} in use"
SUBSIDY_NOT_HONOURED = "subsidy {program} not honoured here"
# To the cent: rounded to dollars, HK$ 0.40 left against HK$ 0.45 needed read "0 left; needs 0".
SUBSIDY_BUDGET = "subsidy budget HK$ {left:,.2f} left; estimate needs HK$ {needed:,.2f}"
NO_SUBSIDY_PROGRAM = "tenant has no subsidy program"
GANG_NO_BLOCK = "needs {shape} on single nodes; largest free block is {largest}"
GANG_PARTIAL = "needs {shape} on single nodes; room for {fit} of {replicas}"
GPUS_HELD = "{model} GPUs held for {holder}, which has waited {passes} passes"
GPUS_NOMINATED = "{model} GPUs held for {holder}, which preempted work here and waits for it to stop"
# What the tenant pays itself (paid this month, held for placed work, this estimate's share).
SPEND_CAP = (
    "monthly spend cap HK$ {cap:,.2f}: HK$ {used:,.2f} paid or held this month; "
    "the tenant's share here needs HK$ {needed:,.2f}"
)
NOT_PREFERRED_YET = "not a preferred site: round 1 of 2 (only {preferred}) until {at}"

# --- "never" reasons: judged with the site empty and healthy (used for Refused) ---
QUOTA_NEVER = "needs {needed} GPUs; tenant quota is {quota}"
GANG_NEVER_NODE = "needs {shape} on single nodes; largest node has {largest}"
SPEND_CAP_NEVER = "the tenant's share here, HK$ {needed:,.2f}, exceeds its monthly spend cap HK$ {cap:,.2f}"
GANG_NEVER_PARTIAL = "needs {shape} on single nodes; room for {fit} of {replicas} even when empty"

# --- preemption (in a victim's events and explanation) ---
PREEMPTED = (
    "preempted at {site} by {preemptor} (priority {priority} over {victim_priority}): "
    "requeued without using an attempt"
)

# --- one-line summaries ---
PLACED = "placed on {site} (score {score:.2f})"
WAITING = "waiting: {reason}"
WAITING_AT = "waiting: {reason} at {site}"
WAITING_AT_MORE = "waiting: {reason} at {site} (and {more} other sites)"
WAITING_NEXT_PASS = "waiting: next queue pass (fits now on {site})"
REFUSED = "refused: no configured site can ever run it ({details})"
NO_SITES = "no sites configured"
RESTORED = "restored on {site} after a broker restart"
NOT_EVALUATED = "not evaluated: restored on another site"
# Suffixes of summaries: the round of a workload with preferred sites, its tenant's share.
ROUND_ONE = "round 1 of 2: only {preferred} until {at}, then any site"
ROUND_TWO = "round 2 of 2: overflowed from {preferred} at {at}"
PREFERRED_SITE = "a preferred site"
FAIR_SHARE = "tenant {tenant} fair share {share:.3f} (weight {weight:g})"


def shape_text(
    replicas: int, gpus_per_replica: int, model: str, cpus: float = 0.0, memory_gb: float = 0.0
) -> str:
    """``2x8 H800``, with per-replica CPUs/memory when the request asks for them."""
    text = f"{replicas}x{gpus_per_replica} {model}"
    extra = []
    if cpus > 0:
        extra.append(f"{cpus:g} CPUs")
    if memory_gb > 0:
        extra.append(f"{memory_gb:g} GB memory")
    if extra:
        text += " with " + " and ".join(extra) + " each"
    return text
