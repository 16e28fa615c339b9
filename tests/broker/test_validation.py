"""Bad files and values are reported in the user's words: the file, the field, and what to write instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from broker.config import load_federation, parse_federation
from broker.spec import load_spec, parse_spec
from broker.validation import InvalidInput
from site_agents.config import load_agent_config
from tests.broker.test_spec import minimal

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def problems_of(call: Any, *args: Any) -> list[str]:
    with pytest.raises(InvalidInput) as caught:
        call(*args)
    return caught.value.problems


@pytest.mark.parametrize("loader", [load_spec, load_federation, load_agent_config])
@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is a binary file, not YAML text"),
        ("name: caf\u00e9\n".encode("latin-1"), "is not UTF-8 text (byte 9 cannot be decoded)"),
    ],
)
def test_a_binary_or_non_utf8_file_is_named_not_a_traceback(
    tmp_path: Path, loader: Any, content: bytes, problem: str
) -> None:
    path = tmp_path / "file.yaml"
    path.write_bytes(content)
    with pytest.raises(InvalidInput) as caught:
        loader(path)
    assert caught.value.source == str(path) and caught.value.problems == [problem]


def test_yaml_syntax_errors_say_where_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text("name: x\nresources: {gpus: 1\n")
    with pytest.raises(InvalidInput) as caught:
        load_spec(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: not valid YAML at line 3, column 1:") and "<unicode string>" not in text


def test_a_file_too_large_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("# " + "x" * (10 * 1024 * 1024))
    assert problems_of(load_spec, path) == ["is 10.0 MB; at most 1.0 MB is accepted"]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (None, "is empty; expected a workload (name, backend, resources, ...)"),
        (
            ["a", "list"],
            "expected a workload (name, backend, resources, ...) as 'key: value' lines, got a list",
        ),
        ("text", "expected a workload (name, backend, resources, ...) as 'key: value' lines, got 'text'"),
    ],
)
def test_an_empty_or_non_mapping_workload_says_what_is_expected(data: Any, problem: str) -> None:
    assert problems_of(parse_spec, data) == [problem]


def test_an_empty_federation_says_what_is_expected() -> None:
    assert problems_of(parse_federation, None) == ["is empty; expected a federation (sites, tenants, ...)"]


@pytest.mark.parametrize(
    ("resources", "problem"),
    [
        ({"gpus_per_replica": True, "gpu_model": "H800"}, "must be a whole number (got true)"),
        ({"gpus_per_replica": "8", "gpu_model": "H800"}, "must be a whole number (got '8')"),
        ({"gpus_per_replica": 8.5, "gpu_model": "H800"}, "must be a whole number (got 8.5)"),
        ({"gpus_per_replica": 8, "gpu_model": "H800", "cpus_per_replica": "4"}, "must be a number (got '4')"),
    ],
)
def test_numbers_are_strict_no_booleans_or_strings(resources: dict[str, Any], problem: str) -> None:
    [line] = problems_of(parse_spec, minimal(resources=resources))
    assert line.endswith(problem), line


def test_federation_numbers_are_strict() -> None:
    data = parse_federation_example()
    data["heartbeat_ttl_s"] = True
    data["tenants"][0]["quota_gpus"] = "8"
    assert problems_of(parse_federation, data) == [
        "heartbeat_ttl_s: must be a number (got true)",
        "tenants[0].quota_gpus: must be a whole number (got '8')",
    ]


def parse_federation_example() -> dict[str, Any]:
    import yaml

    data: dict[str, Any] = yaml.safe_load((EXAMPLES / "federation.yaml").read_text())
    return data


def test_unknown_fields_get_a_did_you_mean() -> None:
    data = minimal(resouces={"gpus_per_replica": 8})
    data["resources"] = {"gpus_per_replic": 8, "gpu_model": "H800"}
    assert problems_of(parse_spec, data) == [
        "resources.gpus_per_replica: is required",
        "resources.gpus_per_replic: is not a known field (did you mean 'gpus_per_replica'?)",
        "resouces: is not a known field (did you mean 'resources'?)",
    ]


def test_names_are_described_in_words_not_a_regular_expression() -> None:
    [line] = problems_of(parse_spec, minimal(name="My_Job"))
    assert (
        line == "name: must be lowercase letters, digits and '-', starting and ending with a letter or digit"
    )


def test_unknown_datasets_sites_and_gpu_model_typos_get_a_did_you_mean() -> None:
    from broker.federation import check_references

    federation = load_federation(EXAMPLES / "federation.yaml")
    spec = parse_spec(
        minimal(
            datasets=["cantonese-speach"],
            sites=["cyberpor"],
            resources={"gpus_per_replica": 8, "gpu_model": "H8000"},
        )
    )
    assert check_references(federation, spec) == [
        "datasets[0]: unknown dataset 'cantonese-speach' (did you mean 'cantonese-speech'?)",
        "sites[0]: unknown site 'cyberpor' (did you mean 'cyberport'?)",
        "resources.gpu_model: no site offers 'H8000' (did you mean 'H800'?)",
    ]
    # A real model nobody offers is no typo: it is refused later with each site's reason.
    assert (
        check_references(
            federation, parse_spec(minimal(resources={"gpus_per_replica": 1, "gpu_model": "B200"}))
        )
        == []
    )
