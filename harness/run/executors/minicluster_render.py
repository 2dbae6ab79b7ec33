"""The MiniCluster of one iteration, rendered; the reference experiment's protocol as data.

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
  crd/lammps.yaml template: its own command (the application's `reference`, with another
  executable for GPU images) in the image's own working directory, 2 pods, CPU requests and
  limits of 2, Intel MPI's `vars.sh` as a pre-command in the descriptive modes, and the Flux
  view chosen per mode and image: basic a fixed Ubuntu jammy view, platform a random view of
  the image's OS family, platform-version and the descriptive modes the view of the image's OS
  and version.

Either way the pods never restart (`pod.restartPolicy: Never`, and with the head CRD
`backoffLimit: 1`: the operator reads 0 as "use 100"), so a failure is a failure.
"""

from __future__ import annotations

import random
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness import application
from harness.errors import HarnessError
from harness.run.executors.base import Job

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
REFERENCE_SIZE = 2  # six_config: size 2, tasks 4, cpu_limit 2
REFERENCE_TASKS = 4
REFERENCE_CPU = "2"
INTEL_MPI_PRE = ". /opt/intel/mpi/latest/env/vars.sh"
# basic (and random, which the reference did not have) keep one view; platform draws one of the
# image's OS family; every other mode (platform-version, descriptive-*, census, a user's) uses
# the view of the image's own OS and version, as the descriptive modes' view-then-match did.
FIXED_VIEW_MODES = ("random", "basic")
FAMILY_VIEW_MODES = ("platform",)

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


def reference_command(image: str) -> tuple[str, ...]:
    """The reference's own command for the image, run in the image's working directory (its
    template sets no workingDir): the data of the application the reference ran (the default
    one's `reference`, harness/data/applications/)."""
    ref = application.load().reference
    if ref is None:
        raise HarnessError(
            f"minicluster: application {application.DEFAULT} describes no reference protocol"
        )
    return ref.command(image)


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
        quantity = cpu_quantity(cpu)
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


def cpu_quantity(value: str | int | float) -> int | str:
    text = str(value).strip()
    if not re.fullmatch(r"\d+(\.\d+)?m?", text):
        raise HarnessError(f"minicluster: CPU quantity {value!r} (e.g. 2, 1.5, 500m)")
    return int(text) if text.isdigit() else text


def to_yaml(obj: dict) -> str:
    return yaml.safe_dump(obj, sort_keys=False)


@dataclass(frozen=True)
class Shape:
    """How the executor's options shape every iteration's MiniCluster."""

    protocol: str = "harness"
    size: int = 1
    namespace: str = "default"
    crd: str = "head"
    flux_view: str | None = None  # default: jammy (reference: chosen per mode and image)
    cpu: str | None = None
    pre_command: str | None = None
    node_arch: str = "amd64"
    strict: bool = False


def iteration(job: Job, shape: Shape, deadline_s: int) -> dict:
    """The MiniCluster of one iteration, named after its logs and unique per attempt."""
    image = job.image
    if not image:
        raise HarnessError("minicluster executor: the job names no OCI image (job.image)")
    stem = Path(job.stdout).stem
    name = dns_name(f"h-{stem}-{uuid.uuid4().hex[:6]}")
    env = dict((job.flux or {}).get("env") or {})  # the manifest's per-image `flux: {env: ...}`
    common = {
        "tasks": job.np,
        "size": shape.size,
        "namespace": shape.namespace,
        "crd": shape.crd,
        "deadline_s": deadline_s,
        "environment": env or None,
        "strict": shape.strict,
    }
    if shape.protocol == "reference":
        mode = job.mode
        rng = random.Random(f"{mode}:{stem.split('.')[0]}:{image}")
        view = shape.flux_view or reference_view(image, mode, shape.node_arch, rng)
        pre = "; ".join(p for p in (reference_pre_command(image, mode), shape.pre_command) if p)
        return render(
            name,
            image,
            reference_command(image),
            flux_view=view,
            cpu=shape.cpu or REFERENCE_CPU,
            pre_command=pre or None,
            labels={"app": name},  # crd/lammps.yaml
            **common,
        )
    view = shape.flux_view or (
        DEFAULT_FLUX_VIEW
        if shape.node_arch == "amd64"
        else REFERENCE_VIEWS["arm64"][("ubuntu", "22.04")]
    )
    return render(
        name,
        image,
        job.command,
        workdir=job.workdir,
        flux_view=view,
        cpu=shape.cpu,
        pre_command=shape.pre_command,
        **common,
    )
