"""The long soak, on request: `python -m tests.soak --db postgresql --seconds 600 --seed 3`."""

from __future__ import annotations

import argparse
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from broker.devdb import postgres_cluster
from tests.soak.harness import Plan, Soak


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="postgresql")
    ap.add_argument("--seconds", type=float, default=600.0, help="how long faults and submits go on")
    ap.add_argument("--submit-per-s", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fedbroker-soak-")))
        if args.db == "postgresql":
            db_url, brokers = stack.enter_context(postgres_cluster(fsync=True)), 2
        else:
            db_url, brokers = f"sqlite:///{workdir / 'broker.db'}", 1
        plan = Plan(db_url, brokers, args.seconds, args.submit_per_s, args.seed)
        report = Soak(workdir, plan).run()
    print(report.table())
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
