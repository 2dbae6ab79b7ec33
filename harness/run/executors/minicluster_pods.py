"""Reading a MiniCluster's pods as the Flux Operator and Kubernetes' Job controller make them
(flux-framework/flux-operator controllers/flux/job.go: an indexed Job named after the
MiniCluster, `size` pods `<name>-<index>-<suffix>` labelled `job-name=<name>`, index 0 the lead
broker; the application container named after the MiniCluster, a Flux runner): which pod leads,
whether all brokers started, why not, and how the application ended; and `translate()`, what
one list of them tells the lifecycle (core.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from harness.judge.faults import Fault
from harness.run.executors import core

# Waiting reasons of a container whose image cannot be had; with a message saying the registry
# has no such image the pull has failed for good (kubelet would only retry the same refusal).
PULL_WAITING = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
PULL_GONE = re.compile(
    r"not found|manifest unknown|name unknown|repository does not exist|invalid reference|"
    r"InvalidImageName|no match for platform",
    re.IGNORECASE,
)
INDEX_KEY = "batch.kubernetes.io/job-completion-index"


def pod_index(pod, name: str) -> int | None:
    meta = pod.metadata
    for source in (meta.annotations or {}, meta.labels or {}):
        if INDEX_KEY in source:
            try:
                return int(source[INDEX_KEY])
            except ValueError:
                return None
    m = re.match(rf"^{re.escape(name)}-(\d+)-", meta.name or "")
    return int(m.group(1)) if m else None


def app_container(pod, name: str) -> str | None:
    """The application container: named after the MiniCluster (a Flux runner), else the pod's
    only container. None when neither (the log call then names no container)."""
    names = [c.name for c in (pod.spec.containers if pod.spec else None) or []]
    if name in names:
        return name
    return names[0] if len(names) == 1 else None


def app_status(pod, name: str):
    if pod is None or pod.status is None:
        return None
    container = app_container(pod, name)
    for status in pod.status.container_statuses or []:
        if status.name == container:
            return status
    return None


def terminated_state(status):
    """The application's end: its terminated state, or with an in-place restart (a
    restartPolicy other than Never) the first run's."""
    if status is None:
        return None
    if status.state and status.state.terminated:
        return status.state.terminated
    if (status.restart_count or 0) > 0 and status.last_state and status.last_state.terminated:
        return status.last_state.terminated
    return None


def created_at(pod) -> float:
    return epoch(pod.metadata.creation_timestamp) or 0.0


def lead_pod(pods: list, name: str, previous):
    """The lead broker pod (completion index 0). With replacement pods (the operator's default
    backoffLimit of 100) the one followed so far stays, else the one whose application ran."""
    leads = [p for p in pods if pod_index(p, name) == 0]
    if previous is not None:
        for p in leads:
            if p.metadata.name == previous.metadata.name:
                return p
        if has_run(previous, name):
            return None  # the pod that ran is gone
    ran = [p for p in leads if has_run(p, name)]
    if ran:
        return min(ran, key=created_at)
    return max(leads, key=created_at) if leads else None


def has_run(pod, name: str) -> bool:
    status = app_status(pod, name)
    return bool(
        status
        and status.state
        and (status.state.running or status.state.terminated or terminated_state(status))
    )


@dataclass
class PodsState:
    all_started: bool = False
    lead_phase: str | None = None
    lead_reason: str | None = None
    why: str | None = None
    pull_error: str | None = None


def observe(pods: list, name: str, size: int) -> PodsState:
    """What the pods say: have all `size` brokers' containers started, and if not, why."""
    state = PodsState()
    by_index = {}
    for p in pods:
        i = pod_index(p, name)
        if i is not None and (i not in by_index or has_run(p, name)):
            by_index[i] = p
    state.all_started = sum(has_run(p, name) for p in by_index.values()) >= size
    lead = by_index.get(0)
    if lead is not None and lead.status is not None:
        state.lead_phase = lead.status.phase
        status = app_status(lead, name)
        if status and status.state and status.state.waiting:
            state.lead_reason = status.state.waiting.reason
    reasons = []
    for i in sorted(by_index):
        p = by_index[i]
        line = pending_why(p, name)
        if line:
            reasons.append(f"{p.metadata.name}: {line}")
        status = app_status(p, name)
        waiting = status.state.waiting if status and status.state else None
        if (
            waiting
            and waiting.reason in PULL_WAITING
            and PULL_GONE.search(waiting.message or waiting.reason or "")
        ):
            state.pull_error = f"{waiting.reason}: {waiting.message or p.spec.containers[0].image}"
    missing = size - len(by_index)
    if not by_index:
        reasons.append("no pod created (is the Flux Operator running?)")
    elif missing > 0:
        reasons.append(f"{missing} of {size} pods not created")
    state.why = "; ".join(reasons) if reasons else None
    return state


def pending_why(pod, name: str) -> str | None:
    """Why a pod has not started its application: unschedulable, an init container failing or
    waiting, an image pull, ... (None when it has started)."""
    if has_run(pod, name):
        return None
    status = pod.status
    if status is None:
        return "no status yet"
    for cond in status.conditions or []:
        if cond.type == "PodScheduled" and cond.status == "False":
            return f"{cond.reason or 'not scheduled'}: {cond.message or ''}".strip()
    for init in status.init_container_statuses or []:
        st = init.state
        if st and st.terminated and st.terminated.exit_code:
            return (
                f"init container {init.name} exited {st.terminated.exit_code} "
                f"({st.terminated.reason or ''})"
            )
        if st and st.waiting and st.waiting.reason not in (None, "PodInitializing"):
            return f"init container {init.name} {st.waiting.reason}: {st.waiting.message or ''}"
    app = app_status(pod, name)
    if app and app.state and app.state.waiting:
        w = app.state.waiting
        return f"{w.reason}: {w.message}" if w.message else (w.reason or "waiting")
    return f"phase {status.phase}"


def epoch(value) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    return None


# -- what a list of pods tells the lifecycle ---------------------------------------------------
@dataclass
class Followed:
    """One MiniCluster in flight: what its pods said last."""

    size: int
    lead: Any = None  # the lead broker pod followed (kept once its application has started)
    seen: tuple | None = None
    started: bool = False
    phase: str | None = None
    why: str = "no pod yet: the operator has not created the Job's pods"


def translate(f: Followed, pods: list, name: str, now: float, strict: bool) -> list[core.Event]:
    """The lead's phase changes, all brokers started (at `now`: the harness's clock, not the
    nodes'), the application's end, or why it cannot start: an image the registry does not
    have, a lead pod that failed, pods deleted after the start by someone else."""
    f.lead = lead_pod(pods, name, f.lead)
    state = observe(pods, name, f.size)
    f.why, f.phase = state.why or f.why, state.lead_phase
    events = []
    if f.lead is not None and (state.lead_phase, state.lead_reason) != f.seen:
        f.seen = (state.lead_phase, state.lead_reason)
        pod = {"name": "pod", "pod": f.lead.metadata.name, "phase": state.lead_phase}
        events.append(core.Event(core.NOTE, record={**pod, "reason": state.lead_reason}))
    if not f.started and state.all_started:
        f.started = True
        start = {"name": "start", "pod": f.lead and f.lead.metadata.name, "timestamp": now}
        events += [core.Event(core.ALLOCATED, at=now), core.Event(core.STARTED, at=now)]
        events.append(core.Event(core.NOTE, record=start))
    if (ended := terminated_state(app_status(f.lead, name))) is not None:
        return events + finished(ended, strict, now)
    if state.pull_error and not f.started:
        fault = Fault("pull", state.pull_error)
    elif f.lead is not None and (f.lead.status and f.lead.status.phase) == "Failed":
        fault = Fault("start-timeout", f"minicluster: {name} failed to start: {f.why}")
    elif f.lead is None and f.started:
        gone = core.Event(core.CANCELLED, detail=f"minicluster: the pods of {name} were deleted")
        return [*events, gone, core.Event(core.ENDED)]
    else:
        return events
    return [*events, core.Event(core.FAULT, fault=fault), core.Event(core.ENDED)]


def finished(ended, strict: bool, now: float) -> list[core.Event]:
    """The application container's end: its own start and finish times, and its exit code,
    except the 0 of wait.sh without logging.strict (its last line is a `touch`: it says nothing
    about the application, whose own lines decide)."""
    code = None if ended.exit_code == 0 and not strict else ended.exit_code
    t_start, t_end = epoch(ended.started_at), epoch(ended.finished_at) or now
    record = {"name": "finish", "container_exit_code": ended.exit_code, "reason": ended.reason}
    record["timestamp"] = t_end
    events = [core.Event(core.STARTED, at=t_start)] if t_start else []
    return [
        *events,
        core.Event(core.FINISHED, at=t_end, exit_code=code, signal=ended.signal, record=record),
        core.Event(core.ENDED),
    ]
