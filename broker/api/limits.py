"""What one caller may ask of the broker: message sizes, error sizes, submits per tenant.

Checked at the API boundary, before a command reaches the engine, so that a flood from one
tenant costs the engine's cycle nothing and other tenants' calls are answered as before.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from broker.config import Limits
from broker.errors import InvalidArgument, ResourceExhausted

# gRPC's own default (4 MiB), said explicitly on both sides: the broker's server and the
# agents' channels. Specs are bounded far below it (broker/spec.py MAX_SPEC_BYTES) and the
# agent stream batches to 1 MiB (broker/batching.py), so no accepted workload outgrows it.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
SERVER_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
)
CHANNEL_OPTIONS = SERVER_OPTIONS

# An error's details travel in a header (gRPC refuses headers above 16 KB and then shows
# "metadata size exceeds hard limit" instead of the status): never let one grow near it.
MAX_ERROR_CHARS = 2000


# A workload id is 15 characters and a name at most 48; a reference longer than this is no
# reference (and a megabyte-long prefix made SQLite's LIKE fail with the SQL in the error).
MAX_REF_CHARS = 256


def check_ref(value: str, field: str) -> str:
    if len(value) > MAX_REF_CHARS:
        raise InvalidArgument(f"{field}: {len(value):,} characters; at most {MAX_REF_CHARS} are accepted")
    return value


def bounded(message: str, limit: int = MAX_ERROR_CHARS) -> str:
    """`message`, cut to `limit` characters; never more, whatever input it quotes."""
    return message if len(message) <= limit else message[: limit - 15] + " ... (cut)"


# The longest a refused submit is held before its answer (a client's deadline is longer).
HOLD_MAX_S = 1.0


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float
    held: int = 0  # refused callers not yet answered


@dataclass(slots=True)
class SubmitLimiter:
    """A token bucket per tenant: `submits_per_s` sustained, `submit_burst` at once. `current`
    gives the limits in force (a reloaded federation file changes them at once)."""

    current: Callable[[], Limits]
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    async def take_or_wait(self, tenant: str) -> None:
        """`take`, but a refused caller is answered only after its turn would have come, each
        held caller counted (at most HOLD_MAX_S): N callers that each wait for their answer
        are slowed to the tenant's rate together, instead of costing the broker a refusal per
        round trip each. Holding costs a sleeping coroutine, not the engine."""
        try:
            self.take(tenant)
        except ResourceExhausted as refused:
            bucket = self._buckets[tenant]
            bucket.held += 1
            try:
                turn = (bucket.held - bucket.tokens) / self.current().submits_per_s
                await asyncio.sleep(min(max(turn, 0.0), HOLD_MAX_S))
            finally:
                bucket.held -= 1
            raise refused from None

    def take(self, tenant: str) -> None:
        now = self.clock()
        limits = self.current()
        rate, burst = limits.submits_per_s, float(limits.submit_burst)
        bucket = self._buckets.get(tenant)
        if bucket is None:
            bucket = self._buckets[tenant] = _Bucket(burst, now)
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        if bucket.tokens < 1.0:
            wait = (1.0 - bucket.tokens) / rate
            raise ResourceExhausted(
                f"tenant {tenant} submits too fast: at most {rate:g} per second "
                f"(bursts of {burst:g}); retry in {wait:.2f}s"
            )
        bucket.tokens -= 1.0

    def check_queued(self, tenant: str, queued: int) -> None:
        most = self.current().queued_per_tenant
        if queued >= most:
            raise ResourceExhausted(
                f"tenant {tenant} has {queued:,} workloads queued, the most allowed ({most:,}); "
                "wait for some to start or cancel some"
            )
