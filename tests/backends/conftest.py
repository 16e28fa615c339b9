"""Fixtures of the backend tests: the real Ray head (once per session) and a site per backend."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from .ray_head import ray_head
from .sites import RaySite, SimulatedSite, Site

SiteFactory = Callable[..., contextlib.AbstractAsyncContextManager[Site]]


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """A local Ray head for the whole session. Where it cannot start: skipped, but failed under CI."""
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(ray_head())
        except RuntimeError as error:
            if os.environ.get("CI"):
                pytest.fail(f"the Ray head did not start: {error}")
            pytest.skip(f"the Ray head did not start: {error}")
        yield url


@pytest.fixture(params=["simulated", "ray", "kubernetes"])
def make_site(request: pytest.FixtureRequest) -> SiteFactory:
    """`async with make_site(patience_s=...) as site:` a fresh backend on that kind of cluster.

    `patience_s` is how long a launch may wait for room before it ends `no_capacity`
    (Ray's start timeout, Kubernetes' unschedulable timeout).
    """
    kind = request.param
    address = request.getfixturevalue("ray_address") if kind == "ray" else ""

    @contextlib.asynccontextmanager
    async def make(patience_s: float = 120.0, **_: Any) -> AsyncIterator[Site]:
        if kind == "simulated":
            site: Site = SimulatedSite()
            yield site
            await site.backend.close()
        elif kind == "ray":
            site = RaySite(address, start_timeout_s=patience_s)
            try:
                yield site
            finally:
                await site.backend.close()
        else:
            from .kube_site import kube_site

            async with kube_site(patience_s=patience_s) as kube:
                yield kube

    return make
