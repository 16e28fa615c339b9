"""fedbroker's gang launcher: the entrypoint of a Ray job whose workload has more than one replica.

Ray runs this file's source as `python -c ...` inside the job, so it imports only
Ray and the standard library (the cluster need not have fedbroker installed).
It reserves the whole gang as one placement group, waits until every bundle is
placed, then runs the workload's own entrypoint with the group's name and id in
its environment, and exits with the entrypoint's exit code.

The group belongs to this process's Ray driver, so Ray removes it when the job
ends, however it ends (success, failure, `stop_job`). Inputs, all from the
job's runtime env: FEDBROKER_ENTRYPOINT, FEDBROKER_GANG_BUNDLES (JSON list of
resource dicts), FEDBROKER_GANG_STRATEGY (PACK | STRICT_SPREAD),
FEDBROKER_PLACEMENT_GROUP (its name), FEDBROKER_RAY_NAMESPACE.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def main() -> int:
    import ray
    from ray.util.placement_group import placement_group

    name = os.environ["FEDBROKER_PLACEMENT_GROUP"]
    bundles = json.loads(os.environ["FEDBROKER_GANG_BUNDLES"])
    strategy = os.environ["FEDBROKER_GANG_STRATEGY"]
    ray.init(namespace=os.environ["FEDBROKER_RAY_NAMESPACE"], log_to_driver=False)
    group = placement_group(bundles, strategy=strategy, name=name)
    print(f"fedbroker: waiting for placement group {name}: {len(bundles)} x {bundles[0]}, {strategy}")
    sys.stdout.flush()
    ray.get(group.ready())
    os.environ["FEDBROKER_PLACEMENT_GROUP_ID"] = group.id.hex()
    print(f"fedbroker: placement group {name} ready; starting the entrypoint")
    sys.stdout.flush()
    # Ray stops a job by signalling its whole process group, so the entrypoint needs no forwarding.
    code = subprocess.call(os.environ["FEDBROKER_ENTRYPOINT"], shell=True)
    return code if code >= 0 else 128 - code  # killed by signal N: the shell's 128+N


if __name__ == "__main__":
    sys.exit(main())
