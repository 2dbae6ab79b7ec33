"""One Flux Operator MiniCluster per iteration, the way the reference experiment ran.

`manifest_for()` renders the iteration's MiniCluster (minicluster_render.py: the harness's
protocol or the reference's); `MiniClusterExecutor` applies it through the `kubernetes` Python
client, follows its pods (two API calls: list the pods of the Job, then read the lead broker's
log; minicluster_pods.py reads them), deletes the MiniCluster and returns a JobResult like the
other executors. The lifecycle (core.py) journals each MiniCluster by name
(`iter-N.minicluster-job`), so a rerun deletes what a killed harness left, and decides the
deadlines: pods not all started within `--startup-timeout` (unschedulable, an image pull that
never ends, an init container that fails) is a Fault("start-timeout"); an application image
the registry does not have is a Fault("pull"). `harness run --dry-run` prints the rendered
YAML instead (`preview`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from harness.errors import HarnessError
from harness.run.executors import core
from harness.run.executors import minicluster_k8s as k8s
from harness.run.executors import minicluster_pods as mp
from harness.run.executors.base import Caps, Job, JobResult, Option
from harness.run.executors.minicluster_render import (
    ARCHES,
    CRD_VARIANTS,
    GROUP,
    PLURAL,
    PROTOCOLS,
    REFERENCE_SIZE,
    VERSION,
    Shape,
    cpu_quantity,
    iteration,
    to_yaml,
)

DELETE_WAIT_S = 300.0  # how long the pods of a deleted MiniCluster may take to go


@dataclass
class MiniClusterExecutor:
    """`--executor minicluster`: one MiniCluster per iteration through the Kubernetes API.

    protocol:   harness (the job as given) or reference (rse-ops/lammps-matrix's protocol).
    size:       pods per MiniCluster (default 1; reference 2). Tasks are the run's --np.
    flux_view:  the Flux view image (default: jammy; reference: chosen per mode and image).
    cpu:        CPU requests and limits of the application container (reference: 2).
    crd:        the installed operator's CRD (head or 0.2.1; default: read from the cluster).
    startup_s:  how long the pods may take to start (image pulls included) before the
                iteration is a start-timeout; --timeout counts from then.
    api_url:    talk to this API server instead of the kubeconfig / in-cluster configuration.
    """

    launcher: str = "flux"
    namespace: str = "default"
    protocol: str = "harness"
    size: int | None = None
    flux_view: str | None = None
    cpu: str | None = None
    pre_command: str | None = None
    strict: bool = False
    node_arch: str = "amd64"
    crd: str | None = None
    api_url: str | None = None
    kubeconfig: str | None = None
    startup_s: float = 900.0
    poll_s: float = 2.0
    name: str = field(default="minicluster", init=False)
    version: str | None = field(default=None, init=False)  # the nodes' Flux is the view's
    caps: ClassVar[Caps] = Caps(pulls_image=True)
    OPTIONS: ClassVar[tuple[Option, ...]] = (
        Option(
            "--protocol",
            "protocol",
            "harness: the manifest's command on --size pods; reference: rse-ops/lammps-matrix's "
            "MiniClusters (its own command, another executable for GPU images, 2 pods, cpu 2, "
            "Flux view per mode and image, Intel MPI vars.sh)",
            {"choices": list(PROTOCOLS)},
        ),
        Option("--namespace", "namespace", "Kubernetes namespace (default: default)"),
        Option(
            "--size",
            "size",
            "pods per MiniCluster (default 1; reference protocol 2)",
            {"type": int},
        ),
        Option(
            "--flux-view",
            "flux_view",
            "the Flux view image mounted into the application (default: ubuntu jammy; "
            "reference protocol: chosen per mode and image)",
        ),
        Option("--cpu", "cpu", "CPU request and limit of each pod (reference protocol: 2)"),
        Option(
            "--pre-command",
            "pre_command",
            "shell line the operator runs before Flux starts in every pod (e.g. . /env.sh)",
        ),
        Option(
            "--strict",
            "strict",
            "logging.strict: the operator's script stops at its first failing line (needs a "
            "view with Python 3.11)",
            {"action": "store_true"},
        ),
        Option(
            "--node-arch",
            "node_arch",
            "CPU architecture of the nodes: picks the Flux views' architecture (default amd64)",
            {"choices": list(ARCHES)},
        ),
        Option(
            "--startup-timeout",
            "startup_s",
            "seconds the pods may take to start, image pulls included (default 900)",
            {"type": float},
        ),
        Option(
            "--crd",
            "crd",
            "the operator's CRD version (default: read from the cluster)",
            {"choices": list(CRD_VARIANTS)},
        ),
        Option("--kubeconfig", "kubeconfig", "kubeconfig file (default: in-cluster, then ~/.kube)"),
    )

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise HarnessError(f"minicluster: protocol must be one of {', '.join(PROTOCOLS)}")
        if self.node_arch not in ARCHES:
            raise HarnessError(f"minicluster: node arch must be one of {', '.join(ARCHES)}")
        if self.crd is not None and self.crd not in CRD_VARIANTS:
            raise HarnessError(f"minicluster: crd must be one of {', '.join(CRD_VARIANTS)}")
        if self.size is not None and self.size < 1:
            raise HarnessError("minicluster: --size must be at least 1")
        if self.startup_s <= 0:
            raise HarnessError("minicluster: --startup-timeout must be positive")
        if self.cpu is not None:
            cpu_quantity(self.cpu)
        self._local = threading.local()  # a Kubernetes API client per thread
        self._clock = time.time
        self._sleep = time.sleep
        self._followed: dict[str, mp.Followed] = {}  # MiniCluster name -> what its pods said
        self._polled: set[str] = set()  # the MiniClusters listed at least once
        policy = core.Policy(
            "minicluster executor",
            ".minicluster-job",
            start_timeout_s=self.startup_s,
            reports_cancel=False,
        )
        self._core = core.Lifecycle(self, policy, clock=self._now, monotonic=self._now)

    def _now(self) -> float:
        return self._clock()  # looked up at each call: a test may put its own clock in

    @property
    def pods(self) -> int:
        if self.size is not None:
            return self.size
        return REFERENCE_SIZE if self.protocol == "reference" else 1

    # -- Kubernetes --------------------------------------------------------------------------
    def _clients(self):
        """(custom objects API, core v1 API) of this thread."""
        api = getattr(self._local, "client", None)
        if api is None:
            api = self._local.client = k8s.api_client(self.api_url, self.kubeconfig)
        from kubernetes import client  # importable once api_client() has made a client

        return client.CustomObjectsApi(api), client.CoreV1Api(api)

    def preflight(self) -> None:
        self._clients()
        crd = k8s.installed_crd(self._local.client)
        self.crd = self.crd or crd

    # -- one iteration -----------------------------------------------------------------------
    def manifest_for(self, job: Job) -> dict:
        shape = Shape(
            protocol=self.protocol,
            size=self.pods,
            namespace=self.namespace,
            crd=self.crd or "head",
            flux_view=self.flux_view,
            cpu=self.cpu,
            pre_command=self.pre_command,
            node_arch=self.node_arch,
            strict=self.strict,
        )
        return iteration(job, shape, deadline_s=int(self.startup_s + job.timeout_s + 60))

    def preview(self, job: Job) -> str:
        """The MiniCluster this job would apply (a dry run), as one document of a YAML stream."""
        return "---\n" + to_yaml(self.manifest_for(job))

    def run(self, job: Job) -> JobResult:
        return self._core.run(job)

    def cancel_all(self) -> None:
        """Delete every MiniCluster in flight and wait (a little) until its pods are gone."""
        self._core.cancel_all()

    # -- the lifecycle's backend --------------------------------------------------------------
    def prepare(self, job: Job, name: str) -> core.Prepared:
        body = self.manifest_for(job)
        rendered = Path(job.stdout).with_suffix(".minicluster.yaml")
        rendered.write_text(to_yaml(body))
        spec = body["spec"]
        event = {
            "name": "minicluster",
            "minicluster": body["metadata"]["name"],
            "namespace": self.namespace,
            "protocol": self.protocol,
            "flux_view": spec["flux"]["container"]["image"],
            "size": spec["size"],
            "tasks": spec["tasks"],
            "crd": self.crd or "head",
        }
        argv = ["minicluster", str(rendered)]
        return core.Prepared(body["metadata"]["name"], argv, body, [event])

    def submit(self, prepared: core.Prepared) -> tuple[str, list[core.Event]]:
        custom, _ = self._clients()
        name = prepared.name
        try:
            custom.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, prepared.native
            )
        except Exception as exc:
            raise core.Refused(
                f"minicluster executor: create {name} refused ({k8s.reason(exc)})"
            ) from None
        self._followed[name] = mp.Followed(prepared.native["spec"]["size"])
        return name, []

    def poll(self, name: str, until: float | None) -> list[core.Event]:
        """The pods, listed every poll_s (at once the first time)."""
        f = self._followed[name]
        if name in self._polled:
            left = self.poll_s if until is None else until - self._clock()
            self._sleep(max(0.0, min(self.poll_s, left)))
        self._polled.add(name)
        try:
            pods = self._pods(self._clients()[1], name)
        except Exception as exc:  # a hiccup of the API server: try again until the deadlines
            f.why = f"cannot list the pods ({k8s.reason(exc)})"
            return []
        return mp.translate(f, pods, name, self._clock(), self.strict)

    def waiting(self, name: str) -> tuple[str, str]:
        f = self._followed[name]
        return f.phase or "Pending", f.why

    def cancel(self, names: Sequence[str], why: str) -> None:
        custom, _ = self._clients()
        for name in names:
            try:
                custom.delete_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, name, _request_timeout=30
                )
            except Exception as exc:
                if k8s.status(exc) != 404:  # 404: gone already
                    raise HarnessError(
                        f"minicluster executor: delete {name} refused ({k8s.reason(exc)})"
                    ) from None

    def find(self, entry: dict) -> list[str]:
        return [entry["name"]] if self.active([entry["name"]]) else []

    def active(self, names: Collection[str]) -> set[str]:
        """The MiniClusters that still exist or still have pods."""
        custom, core_api = self._clients()
        left = set()
        for name in names:
            try:
                custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
                left.add(name)
            except Exception as exc:
                if k8s.status(exc) != 404:
                    raise HarnessError(
                        f"minicluster executor: cannot look up {name} ({k8s.reason(exc)})"
                    ) from None
                if self._pods(core_api, name):
                    left.add(name)
        return left

    def collect(self, name: str, job: Job, prepared: core.Prepared, trace) -> core.Collected:
        """The lead broker's log as the output (the fault's line as stderr), then the
        MiniCluster deleted: the next iteration gets the nodes back."""
        f = self._followed.pop(name)
        self._polled.discard(name)
        custom, core_api = self._clients()
        log = ""
        if f.lead is not None:
            container = mp.app_container(f.lead, name)
            try:
                log = core_api.read_namespaced_pod_log(
                    f.lead.metadata.name, self.namespace, container=container, _request_timeout=60
                )
            except Exception as exc:
                trace.events.append({"name": "log-error", "reason": k8s.reason(exc)})
        Path(job.stdout).write_text(log or "")
        Path(job.stderr).write_text(f"{trace.fault.detail}\n" if trace.fault else "")
        return core.Collected(prepared.argv, released=self._delete(name, trace.events))

    def _pods(self, core_api, name: str) -> list:
        return core_api.list_namespaced_pod(
            self.namespace, label_selector=f"job-name={name}", _request_timeout=30
        ).items

    def _delete(self, name: str, events: list[dict]) -> bool:
        """Delete the MiniCluster and wait until its pods are gone; False when it failed."""
        try:
            self.cancel([name], "collected")
        except HarnessError as exc:
            events.append({"name": "delete-error", "reason": str(exc)})
            return False
        deadline = self._clock() + DELETE_WAIT_S
        while self._clock() < deadline:
            try:
                if not self._pods(self._clients()[1], name):
                    events.append({"name": "deleted", "timestamp": self._clock()})
                    return True
            except Exception as exc:
                events.append({"name": "delete-check-error", "reason": k8s.reason(exc)})
                return False
            self._sleep(self.poll_s)
        events.append({"name": "delete-timeout"})
        return False
