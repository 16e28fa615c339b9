"""Every state change and charge, one log line each, with the workload's id and trace id.

Written after the commit that stored them (a line never tells of a change that a failed
commit undid), from the cycle's `Tx` in one pass. Costs nothing when INFO is off.
"""

from __future__ import annotations

import logging

from broker.engine.records import LiveWorkload
from broker.engine.tx import Tx
from broker.lifecycle import FAILED
from broker.observability.logs import workload_fields

log = logging.getLogger("fedbroker.workloads")


class StateChangeLog:
    def cycle_done(self, tx: Tx, decide_s: float, persist_s: float) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        for event in tx.events:
            workload = _workload(tx, event.workload_id)
            fields = workload_fields(
                event.workload_id,
                workload.trace_id if workload is not None else "",
                tenant=workload.tenant if workload is not None else None,
                site=event.site,
                attempt=event.attempt,
                state=event.state,
                reason=event.reason or None,
            )
            level = logging.WARNING if event.state == FAILED else logging.INFO
            log.log(level, "%s is %s: %s", event.workload_id, event.state, event.message, extra=fields)
        for row in tx.ledger:
            if row["kind"] != "settle":
                continue
            workload = _workload(tx, row["workload_id"])
            fields = workload_fields(
                row["workload_id"],
                workload.trace_id if workload is not None else "",
                tenant=row["tenant"],
                site=row["site"],
                attempt=row["attempt"],
            )
            log.info(
                "%s attempt %d settled HK$%s (program %s HK$%s, tenant HK$%s) for %s GPU-hours%s",
                row["workload_id"],
                row["attempt"],
                row["total_hkd"],
                row["program"] or "none",
                row["program_hkd"],
                row["tenant_hkd"],
                row["gpu_hours"],
                f": {row['reason']}" if row["reason"] else "",
                extra=fields,
            )


def _workload(tx: Tx, workload_id: str) -> LiveWorkload | None:
    return tx.new.get(workload_id) or tx.touched.get(workload_id)
