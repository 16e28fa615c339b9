"""The tests' local Ray head: four fake GPUs of type H800 (broker/localray.py starts and stops it)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from broker.localray import local_ray_head

GPUS = 4
GPU_MODEL = "H800"


@contextlib.contextmanager
def ray_head() -> Iterator[str]:
    """Start a Ray head; yield its dashboard (job submission) URL; stop it."""
    with local_ray_head(GPUS, GPU_MODEL, cpus=4) as url:
        yield url
