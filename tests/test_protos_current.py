"""The committed generated code must be what protoc makes of the committed .proto files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _generate_module():  # protos/ is not a package; load the generator by path
    spec = importlib.util.spec_from_file_location("generate", REPO / "protos" / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_code_is_current(tmp_path: Path) -> None:
    fresh = _generate_module().generate(tmp_path)
    assert fresh, "protoc generated nothing"
    committed_dir = REPO / "protos" / "fedbroker" / "v1"
    committed = sorted(p.name for p in committed_dir.glob("*_pb2*.py*"))
    assert sorted(p.name for p in fresh) == committed
    stale = [p.name for p in fresh if p.read_bytes() != (committed_dir / p.name).read_bytes()]
    assert not stale, f"regenerate with `python protos/generate.py`: {stale} differ"
