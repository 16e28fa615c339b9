"""The broker's decisions: what each command does to the workloads, the sites and the core.

`BrokerState` is the engine's memory (the placement core, every workload that has not
ended, each site's link) and the rules that change it. Each method takes one command
and records into a `Tx` the rows to store and the effects to carry out after the commit;
it does no I/O. If the commit fails, the engine throws this object away and builds a new
one from the database (`engine/recovery.py`), so nothing decided here outlives a failed
commit.

The lifecycle rules, in one place:
- an attempt is *placed* (PLACED, its assignment sent after the commit), *taken* (the
  agent acks it or lists it in a report), *running* (reported RUNNING: charged from then),
  and *ends* SUCCEEDED, FAILED or CANCELLED;
- a failed or lost attempt goes back to the queue while attempts remain, else FAILED;
  one the site says failed for the infrastructure's reasons uses no attempt and waits out
  a backoff first, up to a limit (the rules of whose fault it was: `engine/infra.py`);
- what an agent says of an attempt that is not the workload's current one there is
  fenced: if it still runs, the agent is told to cancel it;
- a site silent for the heartbeat TTL is unhealthy; its untaken assignments are requeued at
  once, its running work after the requeue grace;
- work the core preempts for higher-priority work is cancelled at its site (fenced by
  attempt number) and requeued at once without using an attempt.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from broker import lifecycle, placement, telemetry
from broker.config import FederationConfig
from broker.engine import commands as c
from broker.engine import infra
from broker.engine import reload as reloading
from broker.engine.clock import AttentiveClock
from broker.engine.links import AgentSession, SiteLink
from broker.engine.lost import release_lost_attempt
from broker.engine.money import Cashier
from broker.engine.records import Assign, CancelAttempt, Event, LiveWorkload, Welcome, WorkloadRecord
from broker.engine.requests import RecentRequests, Repeat, check_same_spec, repeat_explanation
from broker.engine.tx import Tx
from broker.errors import FailedPrecondition, InvalidArgument
from broker.federation import check_references, placement_request
from broker.ledger import SETTLE, Book, month_of
from broker.lifecycle import ACTIVE, CANCELLED, FAILED, PLACED, QUEUED, RUNNING, SUCCEEDED, TERMINAL

log = logging.getLogger("fedbroker.broker")


# A site's last-heard time (what a lost attempt is billed until, across a restart) is stored
# while it runs work: in a cycle that commits anyway once it is this stale...
HEARD_PIGGYBACK_S = 5.0
# ...and in a commit of its own once it is this stale (a quiet federation's heartbeats change
# nothing else). So a restarted broker bills a lost attempt at most this much short.
HEARD_MAX_AGE_S = 30.0


def new_workload_id() -> str:
    return f"wl-{uuid.uuid4().hex[:12]}"


class BrokerState:
    def __init__(
        self,
        config: FederationConfig,
        core: placement.PlacementCore,
        links: dict[str, SiteLink],
        *,
        broker_id: str,
        wall: Callable[[], float],
        clock: AttentiveClock,
        next_seq: int,
        next_event: int,
        book: Book | None = None,
    ) -> None:
        self.config = config
        self.money = Cashier(config, book or Book())  # the ledger's rows (broker/engine/money.py)
        self.core = core
        self.links = links
        self.broker_id = broker_id
        self.wall = wall
        self.clock = clock
        self.live: dict[str, LiveWorkload] = {}
        # Queued after an infrastructure failure, out of the core until `retry_at` (see infra.py).
        self.backing_off: dict[str, LiveWorkload] = {}
        self.next_seq = next_seq
        self.next_event = next_event
        self.month = ""  # the calendar month the core's spend caps count (`follow_month`)
        self.requests = RecentRequests()  # recent submits' request ids (engine/requests.py)

    # ------------------------------------------------------------------ tenants and operators

    def submit(self, tx: Tx, cmd: c.Submit) -> tuple[WorkloadRecord, dict[str, Any]] | Repeat:
        if cmd.request_id is not None:
            known = self.requests.get(cmd.tenant, cmd.request_id)
            if known is not None:
                return self._repeat(known, cmd)
        problems = check_references(self.config, cmd.spec)
        if problems:
            raise InvalidArgument("spec: " + "; ".join(problems))
        wid = new_workload_id()
        request = placement_request(wid, cmd.tenant, cmd.spec, self.next_seq, submitted_at=self.wall())
        decision = self.core.submit(request, now=request.submitted_at)
        explanation = decision.explanation.to_dict()
        if isinstance(decision, placement.Refused):
            raise FailedPrecondition(refusal_message(explanation))
        now = self.wall()
        # The engine's spans start and end at once and are never made current: a context
        # switch in and out cost as much as the span itself.
        carrier = telemetry.span_carrier(
            "fedbroker.submit", {"fedbroker.workload": wid, "fedbroker.tenant": cmd.tenant}
        )
        workload = LiveWorkload(
            seq=self.next_seq,
            id=wid,
            name=cmd.spec.name,
            tenant=cmd.tenant,
            backend=cmd.spec.backend,
            spec=cmd.spec.model_dump(mode="json"),
            request=request,
            max_attempts=cmd.spec.max_attempts,
            state=QUEUED,
            created_at=now,
            updated_at=now,
            trace_id=telemetry.carrier_trace_id(carrier),
            traceparent=carrier["traceparent"],
            spec_wire=cmd.spec_wire,
            request_id=cmd.request_id,
        )
        self.next_seq += 1
        self.live[wid] = workload
        if cmd.request_id is not None:
            self.requests.remember(cmd.tenant, cmd.request_id, wid)
        tx.insert(workload)
        self._record_decision(tx, workload, explanation)
        if isinstance(decision, placement.Placed):
            self._place(tx, workload, decision)
        else:
            self._transition(tx, workload, QUEUED, explanation["summary"])
        return workload.record(), explanation

    def _repeat(self, wid: str, cmd: c.Submit) -> tuple[WorkloadRecord, dict[str, Any]] | Repeat:
        """A submit whose request id made `wid` already: that workload, nothing new (no second
        workload, no second reservation). Answered after this cycle's commit, like any submit."""
        workload = self.live.get(wid)
        if workload is None:
            return Repeat(wid)  # it has ended: the engine reads it from the database
        assert cmd.request_id is not None
        check_same_spec(wid, workload.spec, cmd.spec, cmd.request_id)
        explanation = repeat_explanation(wid, workload.site, workload.state, cmd.request_id)
        return workload.record(), explanation

    def evaluate(self, tenant: str, spec: Any) -> dict[str, Any]:
        """A dry run: the decision a submit would get now; changes nothing."""
        problems = check_references(self.config, spec)
        if problems:
            raise InvalidArgument("spec: " + "; ".join(problems))
        now = self.wall()
        request = placement_request("dry-run", tenant, spec, seq=0, submitted_at=now)
        return self.core.evaluate(request, now=now).explanation.to_dict()

    def cancel(self, tx: Tx, cmd: c.Cancel) -> WorkloadRecord:
        workload = self.live.get(cmd.workload_id)
        if workload is None or (cmd.tenant is not None and workload.tenant != cmd.tenant):
            # Ended (and forgotten) or never ours: the API layer has told these apart already.
            raise FailedPrecondition(f"workload {cmd.workload_id} has already ended")
        was_at = workload.site if workload.state in ACTIVE else None
        reason = f"cancelled by {cmd.by}"
        self._settle(tx, workload, reason)
        self.core.cancel(workload.id)
        self.backing_off.pop(workload.id, None)
        self._transition(tx, workload, CANCELLED, reason)
        if was_at is not None:
            tx.send(was_at, CancelAttempt(workload.id, workload.attempt, reason))
        log.info("%s cancelled by %s", workload.id, cmd.by)
        return workload.record()

    def quotes(self, tenant: str, spec: Any, explanation: dict[str, Any]) -> list[dict[str, Any]]:
        """What the workload would cost at each site that prices its GPU model, and who would pay."""
        r = spec.resources
        eligible = {c["site"]: (c["eligible"], c["reasons"]) for c in explanation["candidates"]}
        return self.money.quotes(
            tenant,
            [s for s in self.config.sites if r.gpu_model in s.gpu_prices_hkd_per_hour],
            gpu_model=r.gpu_model,
            gpus=r.gpus_per_replica * r.replicas,
            hours=spec.estimated_hours,
            subsidy=spec.subsidy,
            eligible=eligible,
            now=self.wall(),
        )

    def reload(self, tx: Tx, cmd: c.Reload) -> reloading.ReloadResult:
        """Check a new config against the running work; the engine swaps it after the commit."""
        new = cmd.config
        assert isinstance(new, FederationConfig)
        problems = reloading.blockers(new, self.live.values())
        if problems:
            return reloading.ReloadResult(False, cmd.path, problems)
        tx.reload = new
        changed = reloading.changes(self.config, new)
        log.warning("config reloaded from %s by %s: %s", cmd.path, cmd.by, "; ".join(changed) or "no change")
        return reloading.ReloadResult(True, cmd.path, [], changed)

    def set_paused(self, tx: Tx, cmd: c.SetPaused) -> bool:
        if self.core.paused != cmd.paused:
            self.core.set_paused(cmd.paused)
            tx.settings["paused"] = "1" if cmd.paused else ""
            log.warning("placement %s by %s", "paused" if cmd.paused else "resumed", cmd.by)
        return cmd.paused

    # ------------------------------------------------------------------ agents

    def hello(self, tx: Tx, cmd: c.Hello) -> AgentSession:
        """Open a session for a site's agent; the Welcome and every untaken assignment follow the commit."""
        link = self.links[cmd.site]
        age = self.clock.now() - link.heard_at
        if link.session is not None and link.agent_id != cmd.agent_id and age <= self.config.heartbeat_ttl_s:
            # Two agents for one site would take turns replacing each other, and each
            # would declare the other's work lost. The newcomer waits (and retries).
            raise FailedPrecondition(f"site {cmd.site} already has a live agent {link.agent_id!r}")
        if link.session is not None:
            link.session.close()  # a stale stream of the same agent
        session = AgentSession(cmd.site, cmd.agent_id)
        link.session, link.agent_id = session, cmd.agent_id
        link.report_seq = 0
        link.awaiting_first_report = True
        link.last_inventory = None
        tx.send(cmd.site, Welcome(self.broker_id, self.config.heartbeat_ttl_s))
        untaken = sorted(
            (w for w in self.live.values() if w.site == cmd.site and w.state == PLACED and not w.acked),
            key=lambda w: w.seq,
        )
        for workload in untaken:
            tx.send(cmd.site, self._assignment(workload))
        log.info("agent %s connected for %s; re-sent %d assignments", cmd.agent_id, cmd.site, len(untaken))
        return session

    def gone(self, cmd: c.Gone) -> None:
        assert isinstance(cmd.session, AgentSession)
        link = self.links[cmd.session.site]
        if link.session is cmd.session:
            link.session = None
            log.info("agent %s for %s disconnected", cmd.session.agent_id, cmd.session.site)

    def current(self, session: object) -> SiteLink | None:
        """The site's link if `session` still speaks for it (a replaced session's word no longer counts)."""
        assert isinstance(session, AgentSession)
        link = self.links[session.site]
        return link if link.session is session else None

    def heard(self, session: object) -> None:
        """A message arrived on `session`: the site is alive (stamped on receipt, not when processed)."""
        link = self.current(session)
        if link is not None:
            link.heard_at = self.clock.now()
            link.heard = True

    def report(self, tx: Tx, cmd: c.Report) -> None:
        """A full inventory snapshot, which is also the agent's heartbeat."""
        link = self.current(cmd.session)
        if link is None or cmd.seq <= link.report_seq:
            return  # older than what we have: reports may cross a reconnect
        link.report_seq = cmd.seq
        last_report, link.reported_wall = link.reported_wall, self.wall()
        self._healthy(link)
        inventory = cmd.inventory
        if inventory is link.last_inventory and link.settled:
            return  # the same snapshot as last time, which left nothing to act on
        acted = False
        running: list[str] = []
        seen: set[str] = set()
        for item in inventory.attempts:
            workload, fenced = self._reconcile(tx, link.name, item)
            acted |= fenced
            if workload is None:
                continue
            seen.add(workload.id)
            if item.state == RUNNING and workload.state in ACTIVE:
                running.append(workload.id)  # its GPUs now show as allocated on the nodes
        if link.awaiting_first_report:
            link.awaiting_first_report = False
            self._requeue_lost(tx, link.name, seen, last_report)
        self.core.update_site(link.name, nodes=inventory.nodes, datasets=inventory.datasets, running=running)
        snapshot = (inventory.nodes, inventory.datasets, frozenset(running))
        if snapshot != link.stored:  # most heartbeats repeat the last snapshot: no write for those
            link.stored = snapshot
            tx.sites[link.name] = {
                "name": link.name,
                "nodes": [node_to_json(n) for n in inventory.nodes],
                "datasets": list(inventory.datasets),
                "running": sorted(running),
            }
        link.last_inventory = inventory
        link.settled = not acted

    def update(self, tx: Tx, cmd: c.Update) -> None:
        link = self.current(cmd.session)
        if link is not None:
            self._reconcile(tx, link.name, cmd.attempt)

    def ack(self, tx: Tx, cmd: c.Ack) -> None:
        link = self.current(cmd.session)
        workload = self.live.get(cmd.workload_id)
        if link is None or workload is None:
            return
        if workload.site == link.name and workload.attempt == cmd.attempt and not workload.acked:
            workload.acked = True
            tx.touch(workload)

    # ------------------------------------------------------------------ time and the queue

    def sweep(self, tx: Tx) -> None:
        """Health: sites silent for the TTL go unhealthy; their work is requeued as the rules say."""
        now = self.clock.now()
        ttl = self.config.heartbeat_ttl_s
        for link in self.links.values():
            silent = now - link.heard_at > ttl
            if not silent:
                continue
            if self.core.healthy(link.name):
                self.core.set_healthy(link.name, False)
                log.warning("site %s is unhealthy: nothing heard for %.1fs", link.name, now - link.heard_at)
            if link.unhealthy_since is None:
                link.unhealthy_since = now
            grace_over = now - link.unhealthy_since >= self.config.requeue_grace_s
            for workload in self._active_at(link.name):
                if workload.state == PLACED and not workload.acked:
                    what = f"site {link.name} unavailable before launch"
                    self._retry_or_fail(tx, workload, what, infra.SITE_UNAVAILABLE)
                elif grace_over:
                    gone_for = now - link.unhealthy_since
                    lost_nodes = workload.nodes
                    what = f"site {link.name} unavailable for {gone_for:.0f}s"
                    # billed until the site was last heard from, not through the grace
                    until = link.reported_wall if link.reported_wall is not None else workload.started_at
                    self._retry_or_fail(tx, workload, what, infra.SITE_UNAVAILABLE, until=until)
                    gpus = workload.request.gpus_per_replica
                    release_lost_attempt(self.core, tx, link, workload.id, lost_nodes, gpus)
        self._release_due(tx)
        self.follow_month(tx)

    def checkpoint_heard(self, tx: Tx) -> None:
        """Store when each site that runs work was last heard from (its last report's wall time),
        so a broker that restarts bills a lost attempt until then. A heartbeat that changes
        nothing writes nothing: the time rides on a cycle that commits anyway, and has a commit
        of its own only every HEARD_MAX_AGE_S (one small row per site running work)."""
        stale_after = HEARD_PIGGYBACK_S if tx.writes else HEARD_MAX_AGE_S
        for link in self.links.values():
            heard = link.reported_wall
            if heard is None or link.stored is None or not link.stored[2]:
                continue  # never reported, or nothing running there to bill
            if link.heard_stored is None or heard - link.heard_stored >= stale_after:
                tx.heard[link.name] = link.heard_stored = heard

    def follow_month(self, tx: Tx | None) -> None:
        """Spend caps are per calendar month (UTC): when one begins, the core is told what each
        tenant has paid in it (nothing, mostly), and work that waited on its cap is looked at again."""
        month = month_of(self.wall())
        if month != self.month:
            self.month = month
            self.core.new_month({t: float(v) for t, v in self.money.month_paid(tx, month).items()})

    def schedule(self, tx: Tx) -> int:
        """One queue pass: place what now fits (the core skips a pass when nothing changed);
        cancel and requeue what it preempted for higher-priority work."""
        result = self.core.schedule_pass(now=self.wall())
        for preempted in result.preempted:
            self._preempted(tx, preempted)
        placed = result.placed
        for decision in placed:
            workload = self.live[decision.workload_id]
            self._record_decision(tx, workload, decision.explanation.to_dict())
            self._place(tx, workload, decision)
        return len(placed)

    # ------------------------------------------------------------------ the rules

    def _reconcile(self, tx: Tx, site: str, item: c.AttemptReport) -> tuple[LiveWorkload | None, bool]:
        """Apply what a site's agent says of one attempt, and fence what it should not run.

        Returns (the workload, if the attempt is its current one at this site; whether a
        Cancel was sent). An attempt of an ended, moved or unknown workload that still runs
        there is told to cancel."""
        workload = self.live.get(item.workload_id)
        if workload is None or workload.site != site or workload.attempt != item.attempt:
            if item.state in TERMINAL:
                return None, False
            tx.send(
                site, CancelAttempt(item.workload_id, item.attempt, "stale attempt: no longer wanted here")
            )
            return None, True
        if not workload.acked:
            workload.acked = True  # the agent knows the attempt: no need to send it again
            tx.touch(workload)
        state = item.state
        if state == workload.state or state == PLACED:
            return workload, False
        message = item.message or state.lower()
        if state in TERMINAL:
            workload.reason = item.reason
        if state == RUNNING:
            workload.started_at = self.wall()
            self._transition(tx, workload, RUNNING, message)
        elif state == SUCCEEDED:
            self._settle(tx, workload, "succeeded")
            self.core.finish(workload.id)
            self._transition(tx, workload, SUCCEEDED, message, item.reason)
        elif state == FAILED:
            self._attempt_failed(tx, workload, item.reason, message)
        elif state == CANCELLED:
            self._settle(tx, workload, "cancelled at the site")
            self.core.finish(workload.id)
            self._transition(tx, workload, CANCELLED, f"cancelled at the site: {message}", item.reason)
        return workload, False

    def _attempt_failed(self, tx: Tx, workload: LiveWorkload, reason: str, message: str) -> None:
        """The site says the current attempt failed; its reason says whether that used an attempt."""
        why = f" ({reason})" if reason and reason != "exit" else ""
        failed = f"attempt {workload.attempt} failed{why}: {message}"
        policy = self.config.infra_retry
        verdict = infra.judge(reason, workload.infra_requeues, workload.doubt_requeues, policy)
        if verdict.counted:
            self._retry_or_fail(tx, workload, failed, reason)
        elif verdict.gave_up:
            self._settle(tx, workload, failed)
            self.core.finish(workload.id)
            gave_up = f"gave up after {workload.infra_requeues} requeues for the infrastructure's failures"
            self._transition(tx, workload, FAILED, f"{failed}; {gave_up}", reason)
            log.info("%s: %s", workload.id, workload.message)
        else:
            self._requeue_later(tx, workload, verdict, f"{failed} at {workload.site}", reason)

    def _requeue_later(
        self, tx: Tx, workload: LiveWorkload, verdict: infra.Verdict, failed: str, reason: str
    ) -> None:
        """A free requeue: the workload leaves the core (holding nothing) until its backoff is over."""
        self._settle(tx, workload, failed)
        self.core.cancel(workload.id)
        workload.site, workload.nodes, workload.acked = None, (), False
        workload.infra_requeues += 1
        workload.doubt_requeues += int(verdict.doubtful)
        workload.retry_at = self.wall() + verdict.delay_s
        self.backing_off[workload.id] = workload
        free = f"{workload.infra_requeues} of {self.config.infra_retry.limit}"
        message = (
            f"{failed}; the infrastructure's failure, no attempt used ({free} such requeues); "
            f"placed again after {verdict.delay_s:g}s"
        )
        self._transition(tx, workload, QUEUED, message, reason)
        # What `explain` answers while it waits: the core does not hold it, so no live explanation.
        summary = f"backing off {verdict.delay_s:g}s before attempt {workload.attempt + 1}: {failed}"
        self._record_decision(
            tx, workload, {"workload": workload.id, "chosen": None, "candidates": [], "summary": summary}
        )
        log.info("%s: %s", workload.id, message)

    def _release_due(self, tx: Tx) -> None:
        """Workloads whose backoff is over go back to the core: placed now if they fit, else queued."""
        if not self.backing_off:
            return
        now = self.wall()
        due = [w for w in self.backing_off.values() if w.retry_at is None or w.retry_at <= now]
        for workload in sorted(due, key=lambda w: w.seq):
            del self.backing_off[workload.id]
            workload.retry_at = None
            tx.touch(workload)
            decision = self.core.submit(workload.request, refuse=False, now=now)
            self._record_decision(tx, workload, decision.explanation.to_dict())
            if isinstance(decision, placement.Placed):
                self._place(tx, workload, decision)

    def _retry_or_fail(
        self, tx: Tx, workload: LiveWorkload, what: str, reason: str = "", *, until: float | None = None
    ) -> None:
        """An attempt that used one of max_attempts ended: the next one, or FAILED. `reason` is
        the agent's, or the broker's own when it gave up on the attempt (`infra.SITE_UNAVAILABLE`...).
        `until`: when the attempt was last known to run (a lost one), else now."""
        self._settle(tx, workload, what, until=until)
        workload.reason = reason  # why the attempt ended, as `get` shows it (the agent's path set it already)
        # free requeues' attempts (the infrastructure's, preemptions) do not count
        used = workload.attempt - workload.infra_requeues - workload.preemptions
        if used < workload.max_attempts:
            # No Cancel is sent here: if the old attempt surfaces in a later report,
            # the attempt numbers no longer match and it is cancelled then.
            self.core.requeue(workload.id)
            workload.site, workload.nodes, workload.acked = None, (), False
            self._transition(
                tx, workload, QUEUED, f"{what}; queued for attempt {workload.attempt + 1}", reason
            )
        else:
            self.core.finish(workload.id)
            self._transition(
                tx, workload, FAILED, f"{what}; no attempts left ({workload.max_attempts})", reason
            )
        log.info("%s: %s", workload.id, workload.message)

    def _preempted(self, tx: Tx, preempted: placement.Preempted) -> None:
        """The core took this workload back for higher-priority work (it is queued there
        already): charge what it ran, cancel its attempt at the site, no attempt used."""
        workload = self.live.get(preempted.workload_id)
        if workload is None or workload.site != preempted.site:
            return
        site, attempt = preempted.site, workload.attempt
        self._settle(tx, workload, f"preempted: {preempted.reason}")
        workload.site, workload.nodes, workload.acked = None, (), False
        workload.preemptions += 1
        self._transition(tx, workload, QUEUED, f"attempt {attempt} {preempted.reason}", "preempted")
        explained = self.core.explain(workload.id)
        if explained is not None:
            self._record_decision(tx, workload, explained.to_dict())
        tx.send(site, CancelAttempt(workload.id, attempt, preempted.reason))
        log.info("%s: %s", workload.id, workload.message)

    def _settle(self, tx: Tx, workload: LiveWorkload, why: str, *, until: float | None = None) -> None:
        """Close the current attempt's money, once, before its GPUs are released: settled from
        its RUNNING report to `until` (its last report; now unless given) if it ran, else its
        reservation released (broker/engine/money.py)."""
        now = self.wall()
        ran = None
        if workload.started_at is not None:
            end = now if until is None else min(now, until)
            ran = max(0.0, end - workload.started_at)
            workload.started_at = None
            tx.touch(workload)
        row = self.money.close(tx, workload.id, workload.attempt, ran, now, why)
        if row is not None and row["kind"] == SETTLE and row["total_hkd"]:
            self.core.spend(workload.tenant, float(row["program_hkd"]), float(row["tenant_hkd"]))

    def _requeue_lost(self, tx: Tx, site: str, seen: set[str], last_report: float | None) -> None:
        """Attempts the site took but its (restarted) agent no longer knows were lost with it:
        billed until the site's last report before this one."""
        for workload in self._active_at(site):
            if workload.acked and workload.id not in seen:
                what = f"attempt {workload.attempt} lost by the {site} agent"
                until = last_report if last_report is not None else workload.started_at
                self._retry_or_fail(tx, workload, what, infra.FORGOTTEN, until=until)

    def _healthy(self, link: SiteLink) -> None:
        link.unhealthy_since = None
        if not self.core.healthy(link.name):
            self.core.set_healthy(link.name, True)
            log.info("site %s is healthy", link.name)

    def _active_at(self, site: str) -> list[LiveWorkload]:
        return sorted(
            (w for w in self.live.values() if w.site == site and w.state in ACTIVE), key=lambda w: w.seq
        )

    def _transition(self, tx: Tx, workload: LiveWorkload, state: str, message: str, reason: str = "") -> None:
        if workload.state != state and not lifecycle.can_follow(workload.state, state):
            log.debug("ignored %s -> %s for %s", workload.state, state, workload.id)
            return
        workload.state = state
        workload.message = message
        workload.updated_at = self.wall()
        tx.touch(workload)
        tx.events.append(
            Event(
                seq=self.next_event,
                workload_id=workload.id,
                state=state,
                site=workload.site,
                attempt=workload.attempt,
                message=message,
                at=workload.updated_at,
                reason=reason,
            )
        )
        self.next_event += 1
        if state in TERMINAL:
            tx.ended.append(workload.id)

    def _place(self, tx: Tx, workload: LiveWorkload, decision: placement.Placed) -> None:
        workload.attempt += 1
        workload.started_at = None
        workload.site = decision.site
        workload.nodes = tuple(decision.nodes)
        workload.acked = False
        if telemetry.traces_exported():
            # Every candidate's terms as events: a third of a placement's cost, so only when
            # spans go somewhere (the dispatch span below carries the trace to the agent anyway).
            span = telemetry.tracer().start_span(
                "fedbroker.place",
                context=telemetry.parent(workload.traceparent),
                attributes={
                    "fedbroker.workload": workload.id,
                    "fedbroker.attempt": workload.attempt,
                    "fedbroker.site": decision.site,
                },
            )
            for candidate in decision.explanation.candidates:
                span.add_event("candidate", candidate_attributes(candidate))
            span.end()
        self._transition(tx, workload, PLACED, decision.explanation.summary)
        self.money.reserve(
            tx,
            workload.request,
            attempt=workload.attempt,
            site=decision.site,
            subsidised=bool(self.core.subsidy_held(workload.id)),
            at=workload.updated_at,
        )
        tx.send(decision.site, self._assignment(workload))

    def _assignment(self, workload: LiveWorkload) -> Assign:
        carrier = telemetry.span_carrier(
            "fedbroker.dispatch",
            {"fedbroker.workload": workload.id, "fedbroker.attempt": workload.attempt},
            workload.traceparent or None,
        )
        assert workload.site is not None
        return Assign(
            workload_id=workload.id,
            attempt=workload.attempt,
            tenant=workload.tenant,
            spec=workload.spec,
            spec_wire=workload.spec_wire,
            nodes=workload.nodes,
            trace_context=carrier,
        )

    def _record_decision(self, tx: Tx, workload: LiveWorkload, explanation: dict[str, Any]) -> None:
        """Store a decision; one that chose a site is for the next attempt."""
        attempt = workload.attempt + 1 if explanation.get("chosen") else workload.attempt
        tx.decisions.append(
            {
                "workload_id": workload.id,
                "attempt": attempt,
                "chosen": explanation.get("chosen"),
                "explanation": explanation,
                "at": self.wall(),
            }
        )

    def forget(self, ended: Iterable[str]) -> None:
        """After the commit: workloads that ended live only in the database from now on."""
        for wid in ended:
            workload = self.live.get(wid)
            if workload is not None and workload.state in TERMINAL:
                del self.live[wid]
                self.backing_off.pop(wid, None)


def node_to_json(node: placement.Node) -> dict[str, Any]:
    return {
        "name": node.name,
        "gpu_model": node.gpu_model,
        "gpus_allocatable": node.gpus_allocatable,
        "gpus_allocated": node.gpus_allocated,
        "cpus": node.cpus,
        "memory_gb": node.memory_gb,
    }


def refusal_message(explanation: dict[str, Any]) -> str:
    reasons = [f"{c['site']}: {'; '.join(c['reasons'])}" for c in explanation["candidates"] if c["reasons"]]
    return "can never fit any site: " + " | ".join(reasons)


def candidate_attributes(candidate: placement.Candidate) -> dict[str, Any]:
    attributes: dict[str, Any] = {"site": candidate.site, "eligible": candidate.eligible}
    if candidate.reasons:
        attributes["reasons"] = list(candidate.reasons)
    if candidate.score is not None:
        attributes["score"] = candidate.score
    if candidate.terms is not None:
        attributes.update(
            locality_hours=candidate.terms.locality_hours,
            cost_hkd=candidate.terms.cost_hkd,
            load=candidate.terms.load,
        )
    return attributes
