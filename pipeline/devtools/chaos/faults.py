"""Carrying out the fault schedule on the running stack, and writing down what really happened.

Each fault's `begin` hurts one thing (SIGKILL, SIGSTOP, SIGTERM, a cluster stop) and its `end`
recovers it (a restart on the same data, SIGCONT, a cluster start). Two faults wait for the
moment they are meant for, within a bound: the worker SIGKILL for Ardary calls in flight
(mid-batch), the ingress SIGKILL for callbacks held in its spool. The timeline records the
planned and the actual time of every step (a broker start blocks until the cluster lists all
its brokers again, which delays the steps after it) and what each step found.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.devtools.chaos.probes import gauge, partition_leaders
from pipeline.devtools.chaos.schedule import Fault, Step
from pipeline.devtools.chaos.stack import WORKERS, ChaosStack
from pipeline.topics import spec_for

__all__ = ["FaultRunner", "TimelineEntry"]

_MID_BATCH_WAIT_S = 8.0
_LEADERS_WAIT_S = 30.0


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One step as carried out: seconds since the load began, planned and actual."""

    fault: str
    phase: str
    planned_at: float
    at: float
    took: float
    target: str
    note: str

    def as_json(self) -> dict[str, Any]:
        return {
            "fault": self.fault,
            "phase": self.phase,
            "planned_at": self.planned_at,
            "at": round(self.at, 2),
            "took": round(self.took, 2),
            "target": self.target,
            "note": self.note,
        }


@dataclass
class FaultRunner:
    """Runs steps against `stack`; `t0` is the monotonic time the load began."""

    stack: ChaosStack
    t0: float
    timeline: list[TimelineEntry] = field(default_factory=list)
    _targets: dict[Fault, str] = field(default_factory=dict)

    def run(self, step: Step) -> TimelineEntry:
        started = time.monotonic()
        handler: Callable[[Fault], tuple[str, str]] = getattr(
            self, f"_{step.phase}_{step.fault.kind}"
        )
        try:
            target, note = handler(step.fault)
        except Exception as exc:  # the run goes on; the report says which step failed and why
            target, note = self._targets.get(step.fault, step.fault.target), f"FAILED: {exc!r}"
        entry = TimelineEntry(
            step.fault.kind,
            step.phase,
            step.at,
            started - self.t0,
            time.monotonic() - started,
            target,
            note,
        )
        self.timeline.append(entry)
        return entry

    # -- brokers ----------------------------------------------------------------------------

    def _begin_broker_kill(self, fault: Fault) -> tuple[str, str]:
        topic = spec_for("sms.send-requests").full_name(self.stack.prefix)
        deadline = time.monotonic() + _LEADERS_WAIT_S
        leaders = partition_leaders(self.stack.client, topic)
        while not leaders and time.monotonic() < deadline:  # elections after a cluster start
            time.sleep(0.5)
            leaders = partition_leaders(self.stack.client, topic)
        if not leaders:
            raise RuntimeError(f"no partition of {topic} had a leader for {_LEADERS_WAIT_S:.0f}s")
        partition = sorted(leaders)[fault.pick % len(leaders)]
        node = leaders[partition]
        self._targets[fault] = f"node-{node}"
        self.stack.kafka.kill_node(node)
        return f"node-{node}", f"SIGKILL, leader of {topic}[{partition}]"

    def _end_broker_kill(self, fault: Fault) -> tuple[str, str]:
        target = self._targets[fault]
        self.stack.kafka.start_node(int(target.removeprefix("node-")), timeout=180)
        return target, "restarted on its data; the cluster lists every broker again"

    def _begin_broker_pause(self, fault: Fault) -> tuple[str, str]:
        node = 1 + fault.pick % self.stack.kafka.nodes
        self._targets[fault] = f"node-{node}"
        self.stack.kafka.pause_node(node)
        return f"node-{node}", "SIGSTOP"

    def _end_broker_pause(self, fault: Fault) -> tuple[str, str]:
        target = self._targets[fault]
        self.stack.kafka.resume_node(int(target.removeprefix("node-")))
        return target, "SIGCONT"

    def _begin_cluster_stop(self, fault: Fault) -> tuple[str, str]:
        kafka = self.stack.kafka
        stoppers = [
            threading.Thread(target=kafka.stop_node, args=(n,), daemon=True)
            for n in range(1, kafka.nodes + 1)
        ]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join(60)
        return "cluster", "every node stopped (SIGTERM, all at once)"

    def _end_cluster_stop(self, fault: Fault) -> tuple[str, str]:
        self.stack.kafka.start(timeout=180)
        return "cluster", "every node started on its data; the cluster lists every broker"

    # -- processes --------------------------------------------------------------------------

    def _begin_worker_kill(self, fault: Fault) -> tuple[str, str]:
        """SIGKILL the first worker seen with Ardary calls in flight (the seeded one if none
        is within the wait: only the workers owning send-request partitions send)."""
        order = [WORKERS[(fault.pick + n) % len(WORKERS)] for n in range(len(WORKERS))]
        deadline = time.monotonic() + _MID_BATCH_WAIT_S
        name, in_flight = order[0], 0.0
        while in_flight <= 0 and time.monotonic() < deadline:
            for candidate in order:
                url = f"{self.stack.worker_urls[candidate]}/metrics"
                seen = gauge(url, "ardary_outbound_in_flight") or 0.0
                if seen > 0:
                    name, in_flight = candidate, seen
                    break
            else:
                time.sleep(0.02)
        self._targets[fault] = name
        self.stack.services[name].signal(signal.SIGKILL)
        return name, f"SIGKILL with {in_flight:.0f} message(s) in Ardary calls"

    def _end_worker_kill(self, fault: Fault) -> tuple[str, str]:
        name = self._targets[fault]
        self.stack.services[name].start()
        return name, "restarted on its data dir"

    def _begin_sink_kill(self, fault: Fault) -> tuple[str, str]:
        self.stack.services["sink"].signal(signal.SIGKILL)
        return "sink", "SIGKILL"

    def _end_sink_kill(self, fault: Fault) -> tuple[str, str]:
        self.stack.services["sink"].start()
        return "sink", "restarted"

    def _begin_ingress_term(self, fault: Fault) -> tuple[str, str]:
        ingress = self.stack.services["ingress"]
        ingress.signal(signal.SIGTERM)
        code = ingress.wait_exit(30)
        return "ingress", f"SIGTERM; exited with code {code}"

    def _end_ingress_term(self, fault: Fault) -> tuple[str, str]:
        self.stack.services["ingress"].start()
        return "ingress", "restarted"

    def _begin_ingress_kill_spooled(self, fault: Fault) -> tuple[str, str]:
        url = f"{self.stack.ingress_url}/metrics"
        deadline = time.monotonic() + 20.0
        spooled = gauge(url, "ardary_ingress_spool_records") or 0.0
        while spooled <= 0 and time.monotonic() < deadline:
            time.sleep(0.2)
            spooled = gauge(url, "ardary_ingress_spool_records") or 0.0
        self.stack.services["ingress"].signal(signal.SIGKILL)
        return "ingress", f"SIGKILL holding {spooled:.0f} spooled request(s)"

    def _end_ingress_kill_spooled(self, fault: Fault) -> tuple[str, str]:
        self.stack.services["ingress"].start()
        return "ingress", "restarted on its spool"
