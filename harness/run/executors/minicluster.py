"""One Flux Operator MiniCluster per iteration, the way the reference experiment ran.

`render()` turns one iteration (an OCI image, its command, the number of tasks and pods) into a
MiniCluster (flux-framework.org/v1alpha2): the chosen image is the application container, the
Flux view is mounted into it by the operator, `logging.strict: true` makes the entrypoint stop at
the first failure, and the pods never restart (`pod.restartPolicy: Never`, and with the head CRD
`backoffLimit: 1`: the operator reads 0 as "use 100"), so a failure is a failure.

`MiniClusterExecutor` applies it through the `kubernetes` Python client, waits for the lead
broker pod (completion index 0) to terminate, takes its log as the job's output and its exit code,
deletes the MiniCluster and returns a JobResult like the other executors. With `dry_run` it writes
the rendered YAML beside the iteration's logs instead of applying anything.
"""

from __future__ import annotations

import re
import shlex
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
# The Flux view must match the application image's C library: jammy for Debian 12-era images.
DEFAULT_FLUX_VIEW = "ghcr.io/converged-computing/flux-view-ubuntu:tag-jammy"
APP_CONTAINER = "app"
CRD_VARIANTS = ("head", "0.2.1")  # 0.2.1 has no spec.backoffLimit


def dns_name(text: str, limit: int = 40) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return name[:limit].rstrip("-") or "harness"


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
) -> dict:
    """The MiniCluster of one iteration, as a dict ready for the API or for YAML."""
    if crd not in CRD_VARIANTS:
        raise HarnessError(f"minicluster: crd must be one of {', '.join(CRD_VARIANTS)}")
    if tasks < 1 or size < 1:
        raise HarnessError("minicluster: tasks and size must be at least 1")
    container: dict = {
        "name": APP_CONTAINER,
        "image": image,
        "command": shlex.join(command),
    }
    if workdir:
        container["workingDir"] = workdir
    if environment:
        container["environment"] = {str(k): str(v) for k, v in environment.items()}
    if privileged:
        container["securityContext"] = {"privileged": True}
    spec: dict = {
        "size": size,
        "tasks": tasks,
        "interactive": False,
        "logging": {"strict": True},
        "pod": {
            "restartPolicy": "Never",
            "labels": {"app.kubernetes.io/part-of": "compat-harness"},
        },
        "flux": {"container": {"image": flux_view}},
        "containers": [container],
    }
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


@dataclass
class MiniClusterExecutor:
    """`--executor minicluster`: one MiniCluster per iteration through the Kubernetes API.

    image_of:   maps a Job to the OCI image reference the pods run (the runner's pulled SIF is
                not used: Kubernetes pulls the image itself). Default: `job.image`.
    api_url:    talk to this API server instead of the kubeconfig / in-cluster configuration.
    """

    launcher: str = "flux"
    namespace: str = "default"
    size: int = 1
    flux_view: str = DEFAULT_FLUX_VIEW
    crd: str = "head"
    dry_run: bool = False
    api_url: str | None = None
    kubeconfig: str | None = None
    startup_s: float = 900.0  # pulling a multi-GB image before the timeout starts counting
    poll_s: float = 2.0
    name: str = field(default="minicluster", init=False)
    needs_sif: bool = field(default=False, init=False)
    OPTIONS: ClassVar[tuple[Option, ...]] = (
        Option("--namespace", "namespace", "Kubernetes namespace (default: default)"),
        Option("--size", "size", "pods per MiniCluster (default 1)", {"type": int}),
        Option("--flux-view", "flux_view", "the Flux view image mounted into the application"),
        Option("--crd", "crd", "Flux Operator CRD version", {"choices": list(CRD_VARIANTS)}),
        Option("--kubeconfig", "kubeconfig", "kubeconfig file (default: in-cluster, then ~/.kube)"),
        Option(
            "--dry-run",
            "dry_run",
            "write each iteration's MiniCluster YAML instead of applying it",
            {"action": "store_true"},
        ),
    )

    def __post_init__(self):
        self._local = threading.local()

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

    def preflight(self) -> None:
        if self.dry_run:
            return
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
            k8s.ApiextensionsV1Api(api).read_custom_resource_definition(
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

    # -- one iteration -----------------------------------------------------------------------
    def manifest_for(self, job: Job) -> dict:
        image = getattr(job, "image", None)
        if not image:
            raise HarnessError("minicluster executor: the job names no OCI image (job.image)")
        stem = Path(job.stdout).stem
        name = dns_name(f"h-{stem}-{uuid.uuid4().hex[:6]}")
        return render(
            name,
            image,
            job.command,
            tasks=job.np,
            size=self.size,
            workdir=job.workdir,
            namespace=self.namespace,
            flux_view=self.flux_view,
            crd=self.crd,
            deadline_s=int(job.timeout_s + self.startup_s),
        )

    def run(self, job: Job) -> JobResult:
        body = self.manifest_for(job)
        name = body["metadata"]["name"]
        rendered = Path(job.stdout).with_suffix(".minicluster.yaml")
        rendered.write_text(to_yaml(body))
        argv = ["minicluster", str(rendered)]
        if self.dry_run:
            Path(job.stdout).write_text("")
            Path(job.stderr).write_text("")
            return JobResult(
                argv=argv,
                exit_code=None,
                signal=None,
                timed_out=False,
                queue_s=0.0,
                run_s=0.0,
                fault=Fault("dry-run", str(rendered)),
            )
        from kubernetes import client as k8s

        api = self._api()
        custom = k8s.CustomObjectsApi(api)
        core = k8s.CoreV1Api(api)
        events: list[dict] = [
            {"name": "minicluster", "minicluster": name, "namespace": self.namespace}
        ]
        t0 = time.time()
        try:
            custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)
        except Exception as exc:
            raise HarnessError(
                f"minicluster executor: create {name} refused ({_reason(exc)})"
            ) from None
        try:
            return self._follow(core, job, name, argv, events, t0)
        finally:
            self._delete(custom, core, name, events)

    def _lead_pod(self, core, name: str):
        pods = core.list_namespaced_pod(
            self.namespace, label_selector=f"job-name={name}", _request_timeout=30
        ).items
        for pod in pods:
            annotations = pod.metadata.annotations or {}
            index = annotations.get("batch.kubernetes.io/job-completion-index")
            if index == "0" or (index is None and pod.metadata.name.startswith(f"{name}-0-")):
                return pod
        return None

    def _follow(self, core, job: Job, name, argv, events, t0) -> JobResult:
        started: float | None = None
        timed_out = False
        fault = None
        pod = None
        terminated = None
        while True:
            pod = self._lead_pod(core, name)
            status = _app_status(pod)
            if status is not None and status.state and status.state.running and started is None:
                started = _ts(status.state.running.started_at) or time.time()
                events.append({"name": "start", "pod": pod.metadata.name, "timestamp": started})
            if status is not None and status.state and status.state.terminated:
                terminated = status.state.terminated
                break
            if pod is not None and pod.status.phase == "Failed" and status is None:
                break
            now = time.time()
            if started is not None and now - started > job.timeout_s:
                timed_out = True
                break
            if started is None and now - t0 > self.startup_s + job.timeout_s:
                waited = now - t0
                events.append({"name": "never-started", "waited_s": round(waited, 3)})
                fault = Fault(
                    "start-timeout", f"minicluster: {name} did not start within {waited:.0f} s"
                )
                break
            time.sleep(self.poll_s)
        log = ""
        if pod is not None:
            try:
                log = core.read_namespaced_pod_log(
                    pod.metadata.name, self.namespace, container=APP_CONTAINER, _request_timeout=60
                )
            except Exception as exc:
                events.append({"name": "log-error", "reason": _reason(exc)})
        Path(job.stdout).write_text(log)
        Path(job.stderr).write_text("")
        exit_code = signal = None
        run_s = 0.0
        if terminated is not None:
            exit_code = terminated.exit_code
            signal = terminated.signal
            t_start = _ts(terminated.started_at) or started
            t_end = _ts(terminated.finished_at) or time.time()
            if t_start:
                started = t_start
                run_s = max(0.0, t_end - t_start)
            events.append(
                {
                    "name": "finish",
                    "exit_code": exit_code,
                    "reason": terminated.reason,
                    "timestamp": t_end,
                }
            )
        elif started is not None:
            run_s = time.time() - started
        queue_s = max(0.0, (started or time.time()) - t0)
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
        deadline = time.time() + 300
        while time.time() < deadline:  # the next iteration gets the nodes back
            pods = core.list_namespaced_pod(
                self.namespace, label_selector=f"job-name={name}", _request_timeout=30
            ).items
            if not pods:
                events.append({"name": "deleted", "timestamp": time.time()})
                return
            time.sleep(self.poll_s)
        events.append({"name": "delete-timeout"})


def _app_status(pod):
    if pod is None or pod.status is None:
        return None
    for status in pod.status.container_statuses or []:
        if status.name == APP_CONTAINER:
            return status
    return None


def _ts(value) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    return None
