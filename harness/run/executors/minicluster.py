"""One Flux Operator MiniCluster per iteration, the way the reference experiment ran.

`render()` turns one iteration (an OCI image, its command, the number of tasks and pods) into a
MiniCluster (flux-framework.org/v1alpha2). What the operator then makes of it, from its source
(flux-framework/flux-operator, the same at release 0.2.1 and at head):

- one indexed Job named after the MiniCluster (controllers/flux/job.go), `size` pods named
  `<name>-<index>-<suffix>`, labelled `job-name=<name>` by the Job controller; index 0 is the
  lead broker, whose log is the run's output;
- the Flux view copied by an init container (`flux-view`) and the application image as the
  pod's only container; a MiniCluster with one container makes it the Flux runner
  (api/v1alpha2/minicluster_types.go, Validate) and a Flux runner is *named after the
  MiniCluster* (controllers/flux/containers.go), whatever `name` the spec gives: the follow loop
  finds it by that name, or as the pod's only container;
- the container runs the operator's wait.sh (pkg/flux/templates/wait.sh): `command` is put in a
  double-quoted shell variable and split on blanks, so arguments cannot carry quoting; without
  `logging.strict` the script always ends with `touch` (exit code 0 whatever the application
  did), with it the first failing line aborts the script, including a `ls` of the view's
  libpython3.11 that views without Python 3.11 fail.

Two protocols:
- `harness` (default): the job as the harness gives it to every executor: the manifest's
  command and workdir, `--np` tasks on `--size` pods (default 1), a fixed Flux view
  (`--flux-view`).
- `reference`: rse-ops/lammps-matrix's experiment/flux-operator/run_experiments.py and its
  crd/lammps.yaml template: the ReaxFF HNS command in the image's own working directory,
  `lmp_gpu` for GPU images, 2 pods, CPU requests and limits of 2, Intel MPI's `vars.sh` as a
  pre-command in the descriptive modes, and the Flux view chosen per mode and image: basic a
  fixed Ubuntu jammy view, platform a random view of the image's OS family, platform-version
  and the descriptive modes the view of the image's OS and version.

Either way the pods never restart (`pod.restartPolicy: Never`, and with the head CRD
`backoffLimit: 1`: the operator reads 0 as "use 100"), so a failure is a failure.

`MiniClusterExecutor` applies it through the `kubernetes` Python client, follows its pods (two
API calls: list the pods of the Job, read the lead broker's log), deletes the MiniCluster and
returns a JobResult like the other executors. A MiniCluster whose pods do not all start within
`--startup-timeout` (unschedulable, an image pull that never ends, an init container that fails)
is a Fault("start-timeout"); an application image the registry does not have is a Fault("pull").
`harness run --dry-run` prints the rendered YAML instead (`preview`).
"""

from __future__ import annotations

import random
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import ClassVar

import yaml

from harness.errors import HarnessError
from harness.judge.faults import Fault
from harness.run.executors.base import Job, JobResult, Option

GROUP, VERSION, PLURAL = "flux-framework.org", "v1alpha2", "miniclusters"
CRD_NAME = f"{PLURAL}.{GROUP}"
CRD_VARIANTS = ("head", "0.2.1")  # 0.2.1 has no spec.backoffLimit
PROTOCOLS = ("harness", "reference")
ARCHES = ("amd64", "arm64")
# The Flux view must match the application image's C library: jammy for Debian 12-era images.
DEFAULT_FLUX_VIEW = "ghcr.io/converged-computing/flux-view-ubuntu:tag-jammy"
VIEW_INIT_CONTAINER = "flux-view"  # the operator's default spec.flux.container.name
# pod label of every MiniCluster the harness creates: `kubectl get pods -l` finds leftovers
PART_OF = {"app.kubernetes.io/part-of": "compat-harness"}

# --- the reference protocol (rse-ops/lammps-matrix, experiment/flux-operator) ------------------
# The Flux views of run_experiments.py, by node architecture and (OS, version).
REFERENCE_VIEWS = {
    "amd64": {
        ("ubuntu", "20.04"): "ghcr.io/converged-computing/flux-view-ubuntu:tag-focal",
        ("ubuntu", "22.04"): "ghcr.io/converged-computing/flux-view-ubuntu:tag-jammy",
        ("rocky", "8"): "ghcr.io/converged-computing/flux-view-rocky:tag-8",
        ("rocky", "9"): "ghcr.io/converged-computing/flux-view-rocky:tag-9",
    },
    "arm64": {
        ("ubuntu", "20.04"): "ghcr.io/converged-computing/flux-view-ubuntu:arm-focal",
        ("ubuntu", "22.04"): "ghcr.io/converged-computing/flux-view-ubuntu:arm-jammy",
        ("rocky", "8"): "ghcr.io/converged-computing/flux-view-rocky:arm-8",
        ("rocky", "9"): "ghcr.io/converged-computing/flux-view-rocky:arm-9",
    },
}
# crd/lammps.yaml: `{{ executable }} -v x 2 -v y 2 -v z 2 -in in.reaxc.hns -nocite`, run in the
# image's working directory (the template sets no workingDir).
REFERENCE_ARGS = ("-v", "x", "2", "-v", "y", "2", "-v", "z", "2", "-in", "in.reaxc.hns", "-nocite")
REFERENCE_SIZE = 2  # six_config: size 2, tasks 4, cpu_limit 2
REFERENCE_TASKS = 4
REFERENCE_TASKS = 4
REFERENCE_CPU = "2"
INTEL_MPI_PRE = ". /opt/intel/mpi/latest/env/vars.sh"
# basic (and random, which the reference did not have) keep one view; platform draws one of the
# image's OS family; every other mode (platform-version, descriptive-*, census, a user's) uses
# the view of the image's own OS and version, as the descriptive modes' view-then-match did.
FIXED_VIEW_MODES = ("random", "basic")
FAMILY_VIEW_MODES = ("platform",)

# Waiting reasons of a container whose image cannot be had; with a message saying the registry
# has no such image the pull has failed for good (kubelet would only retry the same refusal).
PULL_WAITING = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
PULL_GONE = re.compile(
    r"not found|manifest unknown|name unknown|repository does not exist|invalid reference|"
    r"InvalidImageName|no match for platform",
    re.IGNORECASE,
)
# Arguments that survive wait.sh's `command="..."` and the unquoted `${command}` split.
SAFE_ARG = re.compile(r"^[A-Za-z0-9_./=:,+@%^-]+$")


def dns_name(text: str, limit: int = 40) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return name[:limit].rstrip("-") or "harness"


def command_string(command: tuple[str, ...] | list[str]) -> str:
    """The container's `command`: wait.sh stores it in a double-quoted variable and expands it
    unquoted, so each argument must be a plain word."""
    args = [str(a) for a in command]
    if not args:
        raise HarnessError("minicluster: the command is empty")
    for a in args:
        if not SAFE_ARG.match(a):
            raise HarnessError(
                f"minicluster: argument {a!r} cannot pass through the operator's wait.sh "
                "(it splits the command on blanks and keeps quotes literally)"
            )
    return " ".join(args)


# --- what the reference derived from an image's name --------------------------------------------
def image_os(image: str) -> tuple[str, str] | None:
    """(OS, version) of a reference image, read from its name as run_experiments.py did."""
    tag = image.rsplit("/", 1)[-1]
    if "ubuntu" in tag:
        return ("ubuntu", "20.04" if "20.04" in tag else "22.04")
    if "rocky" in tag:
        return ("rocky", "8" if "-8-" in tag else "9")
    return None


def reference_executable(image: str) -> str:
    """GPU images have only `lmp_gpu` (their LAMMPS is built with LAMMPS_MACHINE=gpu)."""
    return "lmp_gpu" if "gpu" in image.rsplit("/", 1)[-1] else "lmp"


def reference_pre_command(image: str, mode: str | None) -> str | None:
    """Intel MPI's environment, sourced before Flux starts: the reference added it only where
    its descriptive modes picked an Intel MPI image."""
    if "intel" in image.rsplit("/", 1)[-1] and (mode or "").startswith("descriptive"):
        return INTEL_MPI_PRE
    return None


def reference_view(image: str, mode: str | None, arch: str, rng: random.Random) -> str:
    views = REFERENCE_VIEWS[arch]
    fixed = views[("ubuntu", "22.04")]
    osv = image_os(image)
    if mode in FIXED_VIEW_MODES or osv is None:
        return fixed
    if mode in FAMILY_VIEW_MODES:
        family = sorted(v for (os_, _), v in views.items() if os_ == osv[0])
        return rng.choice(family)
    return views[osv]


def render(
    name: str,
    image: str,
    command: tuple[str, ...] | list[str],
    *,
    tasks: int,
    size: int = 1,
    workdir: str | None = None,
    namespace: str = "default",
    flux_view: str = DEFAULT_FLUX_VIEW,
    deadline_s: int | None = None,
    crd: str = "head",
    privileged: bool = False,
    environment: dict[str, str] | None = None,
    cpu: str | int | None = None,
    pre_command: str | None = None,
    strict: bool = False,
    labels: dict[str, str] | None = None,
) -> dict:
    """The MiniCluster of one iteration, as a dict ready for the API or for YAML."""
    if crd not in CRD_VARIANTS:
        raise HarnessError(f"minicluster: crd must be one of {', '.join(CRD_VARIANTS)}")
    if tasks < 1 or size < 1:
        raise HarnessError("minicluster: tasks and size must be at least 1")
    # no `name`: the operator names the only container after the MiniCluster anyway
    container: dict = {"image": image, "command": command_string(command)}
    if workdir:
        container["workingDir"] = workdir
    if environment:
        container["environment"] = {str(k): str(v) for k, v in environment.items()}
    if pre_command:
        container["commands"] = {"pre": pre_command}
    if cpu is not None:
        quantity = _quantity(cpu)
        container["resources"] = {"limits": {"cpu": quantity}, "requests": {"cpu": quantity}}
    if privileged:
        container["securityContext"] = {"privileged": True}
    spec: dict = {"size": size, "tasks": tasks}
    if strict:
        spec["logging"] = {"strict": True}
    spec["pod"] = {"restartPolicy": "Never", "labels": {**(labels or {}), **PART_OF}}
    spec["flux"] = {"container": {"image": flux_view}}
    spec["containers"] = [container]
    if deadline_s:
        spec["deadlineSeconds"] = int(deadline_s)
    if crd == "head":
        spec["backoffLimit"] = 1  # 0 means "default 100" to the operator
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "MiniCluster",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def _quantity(value: str | int | float) -> int | str:
    text = str(value).strip()
    if not re.fullmatch(r"\d+(\.\d+)?m?", text):
        raise HarnessError(f"minicluster: CPU quantity {value!r} (e.g. 2, 1.5, 500m)")
    return int(text) if text.isdigit() else text


def to_yaml(obj: dict) -> str:
    return yaml.safe_dump(obj, sort_keys=False)


def _reason(exc: Exception) -> str:
    """One short reason of a kubernetes client / urllib3 failure."""
    status = getattr(exc, "status", None)
    if status:
        return f"HTTP {status} {getattr(exc, 'reason', '') or ''}".strip()
    inner = getattr(exc, "reason", None)
    text = str(inner or exc)
    for pattern in (
        r"\[Errno \d+\] ([^'\"\)]+)",
        r"(Connection refused|timed out|Name or service "
        r"not known|certificate verify failed)",
    ):
        m = re.search(pattern, text)
        if m:
            return m.group(1).strip()
    return type(exc).__name__


def mode_of(job: Job) -> str | None:
    """The selection mode the job was picked under (the reference chose Flux views by mode)."""
    return job.mode


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
    needs_sif: bool = field(default=False, init=False)
    version: str | None = field(default=None, init=False)  # the nodes' Flux is the view's
    OPTIONS: ClassVar[tuple[Option, ...]] = (
        Option(
            "--protocol",
            "protocol",
            "harness: the manifest's command on --size pods; reference: rse-ops/lammps-matrix's "
            "MiniClusters (HNS command, lmp_gpu for GPU images, 2 pods, cpu 2, Flux view per "
            "mode and image, Intel MPI vars.sh)",
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
            _quantity(self.cpu)
        self._local = threading.local()
        self._clock = time.time
        self._sleep = time.sleep

    @property
    def pods(self) -> int:
        if self.size is not None:
            return self.size
        return REFERENCE_SIZE if self.protocol == "reference" else 1

    # -- Kubernetes --------------------------------------------------------------------------
    def _api(self):
        client = getattr(self._local, "client", None)
        if client is not None:
            return client
        try:
            from kubernetes import client as k8s
            from kubernetes import config
        except ImportError:
            raise HarnessError(
                "minicluster executor: the kubernetes Python client is missing "
                "(pip install kubernetes)"
            ) from None
        if self.api_url:
            conf = k8s.Configuration()
            conf.host = self.api_url
            conf.retries = 0
            api = k8s.ApiClient(conf)
        else:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                try:
                    config.load_kube_config(config_file=self.kubeconfig)
                except (config.ConfigException, OSError) as exc:
                    raise HarnessError(
                        f"minicluster executor: no Kubernetes configuration ({exc})"
                    ) from None
            api = k8s.ApiClient()
            api.configuration.retries = 0
        self._local.client = api
        return api

    def _clients(self):
        """(custom objects API, core v1 API) of this thread."""
        from kubernetes import client as k8s

        api = self._api()
        return k8s.CustomObjectsApi(api), k8s.CoreV1Api(api)

    def preflight(self) -> None:
        from kubernetes import client as k8s

        api = self._api()
        where = api.configuration.host
        try:
            k8s.VersionApi(api).get_code(_request_timeout=10)
        except Exception as exc:  # urllib3 / ApiException: the API refuses or is unreachable
            raise HarnessError(
                f"minicluster executor: the Kubernetes API at {where} is unreachable "
                f"({_reason(exc)})"
            ) from None
        try:
            crd = k8s.ApiextensionsV1Api(api).read_custom_resource_definition(
                CRD_NAME, _request_timeout=10
            )
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                raise HarnessError(
                    f"minicluster executor: the Flux Operator is not installed at {where} "
                    f"(no CRD {CRD_NAME})"
                ) from None
            raise HarnessError(
                f"minicluster executor: cannot read the CRD {CRD_NAME} at {where} ({_reason(exc)})"
            ) from None
        if self.crd is None:
            self.crd = crd_variant(crd)

    # -- one iteration -----------------------------------------------------------------------
    def manifest_for(self, job: Job) -> dict:
        image = getattr(job, "image", None)
        if not image:
            raise HarnessError("minicluster executor: the job names no OCI image (job.image)")
        stem = Path(job.stdout).stem
        name = dns_name(f"h-{stem}-{uuid.uuid4().hex[:6]}")
        settings = job.flux or {}
        env = dict(settings.get("env") or {})  # the manifest's per-image `flux: {env: ...}`
        common = {
            "tasks": job.np,
            "size": self.pods,
            "namespace": self.namespace,
            "crd": self.crd or "head",
            "deadline_s": int(self.startup_s + job.timeout_s + 60),
            "environment": env or None,
            "strict": self.strict,
        }
        if self.protocol == "reference":
            mode = mode_of(job)
            rng = random.Random(f"{mode}:{stem.split('.')[0]}:{image}")
            view = self.flux_view or reference_view(image, mode, self.node_arch, rng)
            pre = "; ".join(p for p in (reference_pre_command(image, mode), self.pre_command) if p)
            return render(
                name,
                image,
                (reference_executable(image), *REFERENCE_ARGS),
                flux_view=view,
                cpu=self.cpu or REFERENCE_CPU,
                pre_command=pre or None,
                labels={"app": name},  # crd/lammps.yaml
                **common,
            )
        view = self.flux_view or (
            DEFAULT_FLUX_VIEW
            if self.node_arch == "amd64"
            else REFERENCE_VIEWS["arm64"][("ubuntu", "22.04")]
        )
        return render(
            name,
            image,
            job.command,
            workdir=job.workdir,
            flux_view=view,
            cpu=self.cpu,
            pre_command=self.pre_command,
            **common,
        )

    def preview(self, job: Job) -> str:
        """The MiniCluster this job would apply (a dry run), as one document of a YAML stream."""
        return "---\n" + to_yaml(self.manifest_for(job))

    def run(self, job: Job) -> JobResult:
        body = self.manifest_for(job)
        name = body["metadata"]["name"]
        rendered = Path(job.stdout).with_suffix(".minicluster.yaml")
        rendered.write_text(to_yaml(body))
        argv = ["minicluster", str(rendered)]
        custom, core = self._clients()
        spec = body["spec"]
        events: list[dict] = [
            {
                "name": "minicluster",
                "minicluster": name,
                "namespace": self.namespace,
                "protocol": self.protocol,
                "flux_view": spec["flux"]["container"]["image"],
                "size": spec["size"],
                "tasks": spec["tasks"],
                "crd": self.crd or "head",
            }
        ]
        t0 = self._clock()
        try:
            custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)
        except Exception as exc:
            raise HarnessError(
                f"minicluster executor: create {name} refused ({_reason(exc)})"
            ) from None
        try:
            return self.follow(core, job, name, spec["size"], argv, events, t0)
        finally:
            self._delete(custom, core, name, events)

    # -- following the pods ------------------------------------------------------------------
    def _pods(self, core, name: str) -> list:
        return core.list_namespaced_pod(
            self.namespace, label_selector=f"job-name={name}", _request_timeout=30
        ).items

    def follow(self, core, job: Job, name: str, size: int, argv, events, t0) -> JobResult:
        """Follow the MiniCluster's pods until the lead broker's application container ends,
        the job's time is up, or the pods never start; then read the lead broker's log."""
        started: float | None = None
        timed_out = False
        fault: Fault | None = None
        terminated = None
        lead = None  # the lead broker pod followed (kept once its application has started)
        why = "no pod yet: the operator has not created the Job's pods"
        seen: tuple | None = None
        while True:
            now = self._clock()
            try:
                pods = self._pods(core, name)
            except Exception as exc:  # a hiccup of the API server: try again until the limits
                pods = None
                why = f"cannot list the pods ({_reason(exc)})"
            if pods is not None:
                lead = _lead(pods, name, lead)
                state = _observe(pods, name, size)
                why = state.why or why
                key = (state.lead_phase, state.lead_reason)
                if lead is not None and key != seen:
                    seen = key
                    events.append(
                        {
                            "name": "pod",
                            "pod": lead.metadata.name,
                            "phase": state.lead_phase,
                            "reason": state.lead_reason,
                            "timestamp": now,
                        }
                    )
                if started is None and state.all_started:
                    started = now  # this clock, not the nodes': the timeout counts from here
                    events.append(
                        {"name": "start", "pod": lead and lead.metadata.name, "timestamp": now}
                    )
                status = _app_status(lead, name)
                terminated = _terminated(status)
                if terminated is not None:
                    break
                if state.pull_error and started is None:
                    fault = Fault("pull", state.pull_error)
                    break
                if lead is not None and (lead.status and lead.status.phase) == "Failed":
                    fault = Fault("start-timeout", f"minicluster: {name} failed to start: {why}")
                    break
                if lead is None and started is not None:
                    fault = Fault("cancelled", f"minicluster: the pods of {name} were deleted")
                    break
            if started is not None and now - started > job.timeout_s:
                timed_out = True
                break
            if started is None and now - t0 > self.startup_s:
                waited = now - t0
                events.append({"name": "never-started", "waited_s": round(waited, 3), "why": why})
                fault = Fault(
                    "start-timeout",
                    f"minicluster: {name} did not start within {waited:.0f} s: {why}",
                )
                break
            self._sleep(self.poll_s)
        log = ""
        if lead is not None:
            container = _app_container(lead, name)
            try:
                log = core.read_namespaced_pod_log(
                    lead.metadata.name, self.namespace, container=container, _request_timeout=60
                )
            except Exception as exc:
                events.append({"name": "log-error", "reason": _reason(exc)})
        Path(job.stdout).write_text(log or "")
        Path(job.stderr).write_text(f"{fault.detail}\n" if fault else "")
        return self._result(job, argv, events, t0, started, timed_out, fault, terminated)

    def _result(self, job, argv, events, t0, started, timed_out, fault, terminated) -> JobResult:
        exit_code = signal = None
        run_s = 0.0
        if terminated is not None:
            exit_code, signal = terminated.exit_code, terminated.signal
            if exit_code == 0 and not self.strict:
                # wait.sh without logging.strict ends with `touch`: its 0 says nothing about
                # the application, whose own lines decide
                exit_code = None
            t_start = _ts(terminated.started_at) or started
            t_end = _ts(terminated.finished_at) or self._clock()
            if t_start:
                started = started or t_start
                run_s = max(0.0, t_end - t_start)
            events.append(
                {
                    "name": "finish",
                    "container_exit_code": terminated.exit_code,
                    "reason": terminated.reason,
                    "timestamp": t_end,
                }
            )
        elif started is not None:
            run_s = self._clock() - started
        queue_s = max(0.0, (started or self._clock()) - t0)
        return JobResult(
            argv=argv,
            exit_code=exit_code,
            signal=signal,
            timed_out=timed_out,
            queue_s=queue_s,
            run_s=run_s,
            events=events,
            fault=fault,
        )

    def cancel_all(self) -> None:
        """Nothing to do here: each run() deletes its MiniCluster in a `finally`."""

    def _delete(self, custom, core, name: str, events: list[dict]) -> None:
        try:
            custom.delete_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name, _request_timeout=30
            )
        except Exception as exc:
            events.append({"name": "delete-error", "reason": _reason(exc)})
            return
        deadline = self._clock() + 300
        while self._clock() < deadline:  # the next iteration gets the nodes back
            try:
                if not self._pods(core, name):
                    events.append({"name": "deleted", "timestamp": self._clock()})
                    return
            except Exception as exc:
                events.append({"name": "delete-check-error", "reason": _reason(exc)})
                return
            self._sleep(self.poll_s)
        events.append({"name": "delete-timeout"})


def crd_variant(crd) -> str:
    """head or 0.2.1, from the installed CRD: 0.2.1's spec has no backoffLimit."""
    try:
        (version,) = [v for v in crd.spec.versions if v.name == VERSION]
        # `var_schema` in the pydantic models of kubernetes>=34, `schema` before
        validation = getattr(version, "var_schema", None) or version.schema
        spec = validation.open_apiv3_schema.properties["spec"]
        return "head" if "backoffLimit" in (spec.properties or {}) else "0.2.1"
    except (AttributeError, KeyError, ValueError, TypeError):
        return "0.2.1"  # without backoffLimit: valid for both


# -- reading pods as the operator and the Job controller make them --------------------------------
INDEX_KEY = "batch.kubernetes.io/job-completion-index"


def _index(pod, name: str) -> int | None:
    meta = pod.metadata
    for source in (meta.annotations or {}, meta.labels or {}):
        if INDEX_KEY in source:
            try:
                return int(source[INDEX_KEY])
            except ValueError:
                return None
    m = re.match(rf"^{re.escape(name)}-(\d+)-", meta.name or "")
    return int(m.group(1)) if m else None


def _app_container(pod, name: str) -> str | None:
    """The application container: named after the MiniCluster (a Flux runner), else the pod's
    only container. None when neither (the log call then names no container)."""
    names = [c.name for c in (pod.spec.containers if pod.spec else None) or []]
    if name in names:
        return name
    return names[0] if len(names) == 1 else None


def _app_status(pod, name: str):
    if pod is None or pod.status is None:
        return None
    container = _app_container(pod, name)
    for status in pod.status.container_statuses or []:
        if status.name == container:
            return status
    return None


def _terminated(status):
    """The application's end: its terminated state, or with an in-place restart (a
    restartPolicy other than Never) the first run's."""
    if status is None:
        return None
    if status.state and status.state.terminated:
        return status.state.terminated
    if (status.restart_count or 0) > 0 and status.last_state and status.last_state.terminated:
        return status.last_state.terminated
    return None


def _created(pod) -> float:
    return _ts(pod.metadata.creation_timestamp) or 0.0


def _lead(pods: list, name: str, previous):
    """The lead broker pod (completion index 0). With replacement pods (the operator's default
    backoffLimit of 100) the one followed so far stays, else the one whose application ran."""
    leads = [p for p in pods if _index(p, name) == 0]
    if previous is not None:
        for p in leads:
            if p.metadata.name == previous.metadata.name:
                return p
        if _ran(previous, name):
            return None  # the pod that ran is gone
    ran = [p for p in leads if _ran(p, name)]
    if ran:
        return min(ran, key=_created)
    return max(leads, key=_created) if leads else None


def _ran(pod, name: str) -> bool:
    status = _app_status(pod, name)
    return bool(
        status
        and status.state
        and (status.state.running or status.state.terminated or _terminated(status))
    )


@dataclass
class _State:
    all_started: bool = False
    lead_phase: str | None = None
    lead_reason: str | None = None
    why: str | None = None
    pull_error: str | None = None


def _observe(pods: list, name: str, size: int) -> _State:
    """What the pods say: have all `size` brokers' containers started, and if not, why."""
    state = _State()
    by_index = {}
    for p in pods:
        i = _index(p, name)
        if i is not None and (i not in by_index or _ran(p, name)):
            by_index[i] = p
    state.all_started = sum(_ran(p, name) for p in by_index.values()) >= size
    lead = by_index.get(0)
    if lead is not None and lead.status is not None:
        state.lead_phase = lead.status.phase
        status = _app_status(lead, name)
        if status and status.state and status.state.waiting:
            state.lead_reason = status.state.waiting.reason
    reasons = []
    for i in sorted(by_index):
        p = by_index[i]
        line = _pending_why(p, name)
        if line:
            reasons.append(f"{p.metadata.name}: {line}")
        status = _app_status(p, name)
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


def _pending_why(pod, name: str) -> str | None:
    """Why a pod has not started its application: unschedulable, an init container failing or
    waiting, an image pull, ... (None when it has started)."""
    if _ran(pod, name):
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
    app = _app_status(pod, name)
    if app and app.state and app.state.waiting:
        w = app.state.waiting
        return f"{w.reason}: {w.message}" if w.message else (w.reason or "waiting")
    return f"phase {status.phase}"


def _ts(value) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    return None
