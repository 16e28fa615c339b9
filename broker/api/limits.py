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


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


@dataclass(slots=True)
class SubmitLimiter:
    """A token bucket per tenant: `submits_per_s` sustained, `submit_burst` at once. `current`
    gives the limits in force (a reloaded federation file changes them at once)."""

    current: Callable[[], Limits]
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    async def take_or_wait(self, tenant: str) -> None:
        """`take`, but a refused caller is answered only after the time it should wait (at most
        a second): a flooder that waits for its answers is slowed to the rate it is allowed,
        instead of costing the broker a refusal per round trip (broker/api/limits.py)."""
        try:
            self.take(tenant)
        except ResourceExhausted as refused:
            await asyncio.sleep(min(self._wait(tenant), 1.0))
            raise refused from None

    def _wait(self, tenant: str) -> float:
        bucket = self._buckets[tenant]
        return max(0.0, (1.0 - bucket.tokens) / self.current().submits_per_s)

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
