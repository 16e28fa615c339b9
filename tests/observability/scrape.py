"""Scrape a real /metrics endpoint over HTTP and read it with prometheus_client's parser."""

from __future__ import annotations

import re
import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

# A PromQL identifier that names one of ours, once label matchers and grouping clauses
# (which name labels, not metrics) are taken out.
_METRIC = re.compile(r"\b((?:fedbroker|db_client)_[a-zA-Z0-9_]+)\b")
_LABELS = re.compile(r"\{[^}]*\}|\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def scrape(port: int) -> list[Sample]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return [
        Sample(s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 when none)."""
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())


def metric_names(expr: str) -> set[str]:
    """The fedbroker metric names a PromQL expression reads."""
    return set(_METRIC.findall(_LABELS.sub(" ", expr)))
