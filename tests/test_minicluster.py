"""MiniClusters, checked offline: no Kubernetes cluster exists where these tests run.

- Every MiniCluster YAML (minicluster/persistent.yaml, what `--executor minicluster` renders in
  both protocols) validates against the Flux Operator's CRD at head and at release 0.2.1 with
  unknown fields rejected. The CRD's openAPIV3Schema lets unknown fields through (the API server
  prunes them silently), so the schema is made strict first: wherever an object lists
  `properties` and says nothing about `additionalProperties`, unknown keys are forbidden.
- What the operator makes of a MiniCluster (container name, volume mount paths, pod names and
  labels) is written here from its source, flux-framework/flux-operator (the same at 0.2.1 and
  at head unless said otherwise), and the tests check the YAML, the docs and the executor
  against it.
- The follow loop runs against a test double of the API server: the two calls it makes (list
  the Job's pods, read a pod's log), answering with the kubernetes client's own model objects
  (V1Pod, V1ContainerStatus, ...) shaped as the operator and the Job controller make them. It
  stands in for the API server because no cluster exists here; it refuses a log request naming
  a container the pod does not have, with HTTP 400, as the API server does.
- `--protocol reference` is compared field by field with the MiniCluster the reference
  experiment's script rendered (rse-ops/lammps-matrix, experiment/flux-operator/
  run_experiments.py and crd/lammps.yaml), the expected fields written here from that protocol.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shlex
import socket
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from harness.errors import HarnessError
from harness.judge.classify import classify
from harness.run.executors.base import Job
from harness.run.executors.minicluster import MiniClusterExecutor
from harness.run.executors.minicluster_k8s import crd_variant
from harness.run.executors.minicluster_render import command_string, render
from harness.select import manifest
from tests.conftest import ROOT, cli, shared_dir

jsonschema = pytest.importorskip("jsonschema")

MC_DIR = ROOT / "minicluster"
PERSISTENT = MC_DIR / "persistent.yaml"
OPERATOR = MC_DIR / "operator" / "kustomization.yaml"
DOCS = ROOT / "docs" / "minicluster.md"
README = ROOT / "README.md"
CRDS = {"head": "miniclusters-crd-head.yaml", "0.2.1": "miniclusters-crd-0.2.1.yaml"}


def strict(schema: dict) -> dict:
    """A copy of an OpenAPI v3 schema where objects with `properties` forbid unknown keys."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def crd_doc(variant: str) -> dict:
    shared = shared_dir()
    if shared is None:
        pytest.skip("Flux Operator CRD anchors not found: no ../shared beside the checkout")
    return yaml.safe_load((shared / "anchors" / "flux-operator" / CRDS[variant]).read_text())


def crd_schema(variant: str, make_strict: bool = True) -> dict:
    return _crd_schema(variant, make_strict, shared_dir())


@functools.cache
def _crd_schema(variant: str, make_strict: bool, _where) -> dict:
    (version,) = [v for v in crd_doc(variant)["spec"]["versions"] if v["name"] == "v1alpha2"]
    schema = version["schema"]["openAPIV3Schema"]
    return strict(schema) if make_strict else schema


def errors(doc: dict, variant: str, make_strict: bool = True) -> list[str]:
    validator = jsonschema.Draft7Validator(crd_schema(variant, make_strict))
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)
    ]


def documents(text: str | None = None) -> list[dict]:
    """Every document of minicluster/persistent.yaml, in the order kubectl applies them."""
    return [d for d in yaml.safe_load_all(PERSISTENT.read_text() if text is None else text) if d]


def of_kind(kind: str, docs: list[dict] | None = None) -> dict:
    (doc,) = [d for d in (documents() if docs is None else docs) if d.get("kind") == kind]
    return doc


def persistent() -> dict:
    return of_kind("MiniCluster")


# --- what the operator renders, from its source --------------------------------------------------
def operator_container_name(doc: dict, index: int = 0) -> str | None:
    """api/v1alpha2/minicluster_types.go (Validate): a MiniCluster with one container makes it
    the Flux runner (RunFlux); controllers/flux/containers.go (getContainers): a Flux runner's
    container is named after the MiniCluster (`containerName = defaultName`, the cluster name
    passed by controllers/flux/job.go), any other keeps its `name`."""
    containers = doc["spec"]["containers"]
    c = containers[index]
    if c.get("runFlux") or len(containers) == 1:
        return doc["metadata"]["name"]
    return c.get("name")


def operator_mounts(doc: dict) -> dict[str, str]:
    """volume name -> mount path, as controllers/flux/containers.go (getContainers) mounts a
    container's `volumes`: an emptyDir always at /dev/shm ("We assume bindings to /dev/shm"),
    its `path` ignored; any other volume at its `path`."""
    out = {}
    for name, v in (doc["spec"]["containers"][0].get("volumes") or {}).items():
        out[name] = "/dev/shm" if v.get("emptyDir") else v["path"]
    return out


def operator_flags(spec: dict) -> str:
    """pkg/flux/templates/components.sh ("flags"): `-N size ` when tasks >= size, `-n tasks`."""
    size, tasks = spec["size"], spec["tasks"]
    return f"{f'-N {size} ' if tasks >= size else ''}-n{tasks}"


def under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


# --- the persistent MiniCluster ------------------------------------------------------------------
@pytest.mark.parametrize("variant", CRDS)
def test_persistent_validates(variant):
    assert errors(persistent(), variant) == []


@pytest.mark.parametrize("variant", CRDS)
@pytest.mark.parametrize(
    "path,wrong",
    [
        (("spec",), "interactve"),  # interactive
        (("spec", "containers", 0, "securityContext"), "privilegd"),  # privileged
        (("spec", "containers", 0, "volumes", "scratch"), "emptydir"),  # emptyDir
        (("spec", "containers", 0), "pullalways"),  # pullAlways
        (("spec", "flux", "container"), "img"),  # image
    ],
)
def test_misspelled_field_fails(variant, path, wrong):
    doc = persistent()
    node = doc
    for key in path:
        node = node[key]
    right = {
        "interactve": "interactive",
        "privilegd": "privileged",
        "emptydir": "emptyDir",
        "pullalways": "pullAlways",
        "img": "image",
    }[wrong]
    node[wrong] = node.pop(right)
    found = errors(doc, variant)
    assert found, f"{wrong!r} was accepted"
    assert any(repr(wrong) in e and "not allowed" in e for e in found), found
    # Without the strict walk the CRD lets the typo through: the walk is what catches it.
    assert errors(doc, variant, make_strict=False) == []


def test_persistent_fits_five_c2d_standard_8():
    spec = persistent()["spec"]
    assert spec["interactive"] is True
    assert spec["size"] == 5
    (container,) = spec["containers"]
    assert container["securityContext"]["privileged"] is True
    cpu = float(container["resources"]["requests"]["cpu"])
    assert 4 < cpu < 8  # one pod per 8-vCPU node: a second one never fits beside it
    assert spec["tasks"] <= spec["size"] * 4  # 4 cores per c2d-standard-8 as Flux counts them


def docs_text() -> str:
    return DOCS.read_text()


def test_container_name_is_the_minicluster_name_everywhere():
    doc = persistent()
    name = operator_container_name(doc)
    assert name == "compat-harness"
    # a `name` in the YAML would be ignored, so it is not there to mislead
    assert "name" not in doc["spec"]["containers"][0]
    # every `-c NAME` of a kubectl command in the docs names that container
    named = re.findall(r"kubectl (?:exec|cp|logs)\b[^\n]*?\s-c\s+(\S+)", docs_text())
    assert named and set(named) == {name}, named
    assert "-c node" not in docs_text()


def test_volumes_are_where_the_operator_mounts_them():
    doc = persistent()
    (container,) = doc["spec"]["containers"]
    mounts = operator_mounts(doc)
    assert mounts == {"scratch": "/dev/shm", "results": "/results"}
    # an emptyDir `path` would be ignored by the operator: none is given
    for v in container["volumes"].values():
        assert not (v.get("emptyDir") and "path" in v)
    # the caches and scratch directories are on the scratch volume, as the operator mounts it
    env = container["environment"]
    for key in ("XDG_CACHE_HOME", "APPTAINER_CACHEDIR", "APPTAINER_TMPDIR"):
        assert under(env[key], mounts["scratch"]), (key, env[key])
        assert env[key] in container["commands"]["pre"].split()  # created before use
    # the SIF cache (the harness's default, under XDG_CACHE_HOME) is there too
    from harness.select.artifacts import user_cache

    os_env = {"XDG_CACHE_HOME": env["XDG_CACHE_HOME"]}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in os_env.items():
            mp.setenv(k, v)
        assert under(str(user_cache("sif")), mounts["scratch"])
    assert "--sif-cache" not in docs_text()  # the default is the right place
    # the runs go to the shared volume by default (HARNESS_OUTDIR)
    assert under(env["HARNESS_OUTDIR"], mounts["results"])
    # the runs' outdir is on the results volume, the claim defined in the same file
    outdirs = set(re.findall(r"--outdir\s+(/\S+)", docs_text()))
    assert outdirs and all(under(o, mounts["results"]) for o in outdirs), outdirs
    # the working directory is pod-local: the operator's scripts write into it
    assert not any(under(container["workingDir"], m) for m in mounts.values())
    pvc = of_kind("PersistentVolumeClaim")
    assert container["volumes"]["results"]["claimName"] == pvc["metadata"]["name"]
    assert pvc["metadata"]["namespace"] == doc["metadata"]["namespace"]
    # every pod mounts it (one per node): ReadWriteMany
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["spec"]["storageClassName"] == "standard-rwx"


def test_scratch_volume_size_is_stated():
    v = persistent()["spec"]["containers"][0]["volumes"]["scratch"]
    assert v["emptyDir"] is True and "emptyDirMedium" not in v  # disk-backed, not memory
    size = v["emptyDirSizeLimit"]
    assert size.endswith("Gi")
    assert f"{size[:-2]} GiB" in docs_text()
    disk = int(re.search(r"--disk-size (\d+)", docs_text()).group(1))
    assert int(size[:-2]) < disk  # the node's boot disk holds it


def bound_dirs() -> list[str]:
    env = persistent()["spec"]["containers"][0]["environment"]
    specs = env["APPTAINER_BIND"].split(",")
    out = []
    for spec in specs:
        src, dst, *opts = spec.split(":")
        assert src == dst and opts == ["ro"], spec  # the same path, read-only
        out.append(src)
    return out


def test_the_flux_views_trees_are_bound_into_every_image():
    """The operator copies the view to spec.flux.container.mountPath (default /mnt/flux,
    Validate) and its Spack store to /opt/software (pkg/flux/templates/components.sh,
    "wait-view"; head also mounts an emptyDir there, controllers/flux/job.go): Flux's libpmi.so
    needs libraries of other Spack prefixes (libjansson, libuuid), all under /opt/software."""
    dirs = bound_dirs()
    assert "/opt/software" in dirs and "/mnt/flux" in dirs


def test_bound_trees_hold_the_views_library_targets(anchors):
    """The reference's lead-broker logs list the view's libraries: symlinks in /mnt/flux/view
    into the Spack store. Every target must be inside a bound tree."""
    targets = set()
    for log in (anchors / "dev-logs").rglob("*.log"):
        for m in re.finditer(
            r"(/mnt/flux/view/lib/\S+) -> (/\S+)", log.read_text(errors="replace")
        ):
            targets.update(m.groups())
    assert targets, "no symlink listing found in the reference logs"
    dirs = bound_dirs()
    assert any(t.startswith("/opt/software/") for t in targets)
    assert all(any(under(t, d) for d in dirs) for t in targets), targets


PLACEHOLDER = re.compile(
    r"\b(REGISTRY|TAG|CHANGEME|TODO|FIXME|PROJECT)\b|<[^<>\s]+>|example\.(com|org)"
)


def _strings(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


def apply_problems(docs: list[dict]) -> list[str]:
    """What stops `kubectl apply -f minicluster/persistent.yaml` from working as typed: a
    placeholder left in any value, or a claim the MiniCluster mounts that the file does not
    create (before the MiniCluster, in the order kubectl applies it)."""
    problems = [f"placeholder {s!r}" for d in docs for s in _strings(d) if PLACEHOLDER.search(s)]
    created: set[str] = set()
    for doc in docs:
        if doc.get("kind") == "PersistentVolumeClaim":
            created.add(doc["metadata"]["name"])
        for c in (doc.get("spec") or {}).get("containers") or []:
            for name, v in (c.get("volumes") or {}).items():
                if v.get("claimName") and v["claimName"] not in created:
                    problems.append(f"volume {name}: claim {v['claimName']} is not created first")
    return problems


def test_apply_as_typed():
    docs = documents()
    assert [d["kind"] for d in docs] == ["PersistentVolumeClaim", "MiniCluster"]
    assert apply_problems(docs) == []


def test_apply_check_fails_on_a_placeholder_or_a_missing_claim():
    text = PERSISTENT.read_text()
    (container,) = persistent()["spec"]["containers"]
    spoiled = text.replace(container["image"], "REGISTRY/compat-harness-node:TAG")
    assert any("placeholder" in p for p in apply_problems(documents(spoiled)))
    claimless = [d for d in documents() if d["kind"] != "PersistentVolumeClaim"]
    assert any("is not created" in p for p in apply_problems(claimless))


def k8s_model_errors(data, type_name: str, path: str = "") -> list[str]:
    """`data` against the Kubernetes client's generated model of `type_name` (the core API's
    OpenAPI types): every key known, every value of its type."""
    from kubernetes import client

    if type_name.lower().startswith("list["):  # list[X] or List[X], by client version
        if not isinstance(data, list):
            return [f"{path}: not a list"]
        inner = type_name[5:-1]
        return [e for i, v in enumerate(data) for e in k8s_model_errors(v, inner, f"{path}[{i}]")]
    if type_name.lower().startswith(("dict(", "dict[")):
        inner = type_name[5:-1].split(", ", 1)[1]
        if not isinstance(data, dict):
            return [f"{path}: not a mapping"]
        return [e for k, v in data.items() for e in k8s_model_errors(v, inner, f"{path}.{k}")]
    simple = {"str": str, "int": int, "bool": bool, "object": object, "datetime": str}
    if type_name in simple:
        ok = isinstance(data, simple[type_name]) and not (
            type_name == "int" and isinstance(data, bool)
        )
        return [] if ok else [f"{path}: not {type_name}"]
    model = getattr(client.models, type_name)
    if not isinstance(data, dict):
        return [f"{path}: not an object ({type_name})"]
    by_json = {v: k for k, v in model.attribute_map.items()}
    errors = []
    for key, value in data.items():
        if key not in by_json:
            errors.append(f"{path}.{key}: unknown field of {type_name}")
            continue
        errors += k8s_model_errors(value, model.openapi_types[by_json[key]], f"{path}.{key}")
    return errors


def test_results_claim_is_a_valid_persistent_volume_claim():
    pytest.importorskip("kubernetes")
    pvc = of_kind("PersistentVolumeClaim")
    assert k8s_model_errors(pvc, "V1PersistentVolumeClaim") == []
    # what the API server requires of a claim (ValidatePersistentVolumeClaimSpec)
    assert pvc["apiVersion"] == "v1" and pvc["metadata"]["name"]
    assert pvc["spec"]["accessModes"] and pvc["spec"]["resources"]["requests"]["storage"]
    spoiled = copy.deepcopy(pvc)
    spoiled["spec"]["acessModes"] = spoiled["spec"].pop("accessModes")
    assert k8s_model_errors(spoiled, "V1PersistentVolumeClaim")
    # every pod mounts it (one per node): ReadWriteMany, in the MiniCluster's namespace
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["spec"]["storageClassName"] == "standard-rwx"
    assert pvc["metadata"]["namespace"] == persistent()["metadata"]["namespace"]


def test_node_image_is_named_once_and_built_under_that_name():
    (container,) = persistent()["spec"]["containers"]
    assert container["pullAlways"] is True
    image = container["image"]
    # the tag is the package's version: a release names its own node image
    from importlib.metadata import version

    assert image.rsplit(":", 1)[1] == version("compat-harness")
    # `make node-image` builds and pushes exactly that name, read from the file
    proc = subprocess.run(
        ["make", "-n", "node-image"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert f"docker build -f containers/node/Dockerfile -t {image} ." in proc.stdout
    assert f"docker push {image}" in proc.stdout
    # the docs build with that target and apply the file as it is; no copy names the image
    docs = docs_text()
    assert "make node-image" in docs and "kubectl apply -f minicluster/persistent.yaml" in docs
    for path in (DOCS, README, ROOT / "Makefile", ROOT / "containers/node/Dockerfile"):
        text = path.read_text().replace(image, "")
        assert not re.search(r"compat-harness-node:\w", text), path


def test_operator_install_is_pinned():
    k = yaml.safe_load(OPERATOR.read_text())
    (resource,) = k["resources"]
    m = re.fullmatch(
        r"https://raw\.githubusercontent\.com/flux-framework/flux-operator/([0-9a-f]{40})/"
        r"examples/dist/flux-operator\.yaml",
        resource,
    )
    assert m, resource  # a commit, not a branch or a movable tag
    # the commit the 0.2.1 tag points to: its CRD is the 0.2.1 anchor the YAMLs validate against
    assert m.group(1) == "a7fce054906d3f994d7cba7f9f013536dce44dea"
    (image,) = k["images"]
    assert image["name"] == "ghcr.io/flux-framework/flux-operator"
    assert image["newTag"] == "v0.2.1" or image.get("digest", "").startswith("sha256:")
    # the gone gcr.io/kubebuilder/kube-rbac-proxy sidecar is removed
    (patch,) = k["patches"]
    body = yaml.safe_load(patch["patch"])
    (container,) = body["spec"]["template"]["spec"]["containers"]
    assert container == {"name": "kube-rbac-proxy", "$patch": "delete"}
    assert "kubectl apply -k minicluster/operator" in docs_text()
    assert "flux-operator.yaml" not in re.sub(r"`[^`]*`", "", docs_text())  # no unpinned apply


# --- rendering one iteration ---------------------------------------------------------------------
@pytest.mark.parametrize("variant", CRDS)
def test_rendered_iteration_validates(variant):
    doc = render(
        "h-iter-0001-abc123",
        "ghcr.io/rse-ops/lammps-matrix:openmpi-ubuntu-gpu-20.04",
        ["lmp", "-v", "x", "2", "-in", "in.reaxc.hns"],
        tasks=4,
        size=2,
        workdir="/opt/lammps/examples/reaxff/HNS",
        crd=variant,
        deadline_s=600,
        cpu=2,
        pre_command=". /opt/intel/mpi/latest/env/vars.sh",
        environment={"OMPI_MCA_btl": "^openib"},
        strict=True,
    )
    assert errors(doc, variant) == []
    spec = doc["spec"]
    assert spec["logging"]["strict"] is True
    assert spec["pod"]["restartPolicy"] == "Never"
    assert spec["containers"][0]["command"] == "lmp -v x 2 -in in.reaxc.hns"
    assert ("backoffLimit" in spec) == (variant == "head")
    assert operator_container_name(doc) == "h-iter-0001-abc123"


def test_strict_is_off_unless_asked():
    doc = render("h-x", "ghcr.io/x/y:z", ["lmp"], tasks=2)
    assert "logging" not in doc["spec"]  # the operator's default: strict off


def test_head_rendering_is_refused_by_the_021_crd():
    """0.2.1 has no spec.backoffLimit: rendering for the wrong operator fails validation."""
    doc = render("h-x", "ghcr.io/x/y:z", ["lmp"], tasks=2, crd="head")
    assert any("backoffLimit" in e for e in errors(doc, "0.2.1"))


@pytest.mark.parametrize("arg", ["a b", "'x'", '"x"', "$HOME", "a;b", ""])
def test_arguments_that_wait_sh_would_mangle_are_refused(arg):
    """pkg/flux/templates/wait.sh: command="{{ .Container.Command }}" ... ${command}."""
    with pytest.raises(HarnessError, match="wait.sh"):
        command_string(["lmp", arg])


@pytest.mark.parametrize("variant", CRDS)
def test_crd_variant_is_read_from_the_installed_crd(variant):
    from kubernetes.client import ApiClient

    crd = ApiClient().deserialize(
        json.dumps(crd_doc(variant)), "V1CustomResourceDefinition", "application/json"
    )
    assert crd_variant(crd) == variant


def _job(tmp_path: Path, image: str, mode: str = "platform", **kw) -> Job:
    logs = tmp_path / "logs" / mode
    logs.mkdir(parents=True, exist_ok=True)
    fields = {
        "sif": Path("/nonexistent.sif"),
        "command": ("lmp", "-in", "in.lj"),
        "np": 2,
        "workdir": "/opt/lab",
        "mpi_model": "hybrid",
        "timeout_s": 300.0,
        "stdout": logs / "iter-0003.0a1b2c3d.out",
        "stderr": logs / "iter-0003.0a1b2c3d.err",
        "image": image,
        "mode": mode,
        **kw,
    }
    return Job(**fields)


def test_the_runner_tells_the_job_its_mode(replay, tmp_path):
    """The reference protocol picks Flux views by mode: the runner's Job carries it."""
    from harness.run import runner
    from tests.test_runner import config, lab

    setup = lab(tmp_path)
    exp = runner.prepare(config(setup, tmp_path / "out", iters=1, mode="basic"))
    seen = []
    exp.executor.run = lambda job, run=exp.executor.run: (seen.append(job), run(job))[1]
    runner.execute(exp)
    assert [job.mode for job in seen] == ["basic"]


@pytest.mark.parametrize("variant", CRDS)
def test_preview_is_a_valid_minicluster(tmp_path, variant):
    ex = MiniClusterExecutor(crd=variant, size=2)  # a preview needs no cluster
    job = _job(tmp_path, "127.0.0.1/lab/lammps-matrix:openmpi-debian-12-amd64")
    (doc,) = yaml.safe_load_all(ex.preview(job))
    assert not job.stdout.exists()
    assert errors(doc, variant) == []
    (container,) = doc["spec"]["containers"]
    assert container["image"].endswith(":openmpi-debian-12-amd64")
    assert container["command"] == "lmp -in in.lj" and container["workingDir"] == "/opt/lab"
    assert doc["spec"]["size"] == 2 and doc["spec"]["tasks"] == 2
    assert doc["metadata"]["name"].startswith("h-iter-0003-")


# --- the reference protocol ----------------------------------------------------------------------
# experiment/flux-operator/run_experiments.py: the views of `req`, `ubuntu_views`, `rocky_views`
# and their arm64 twins; crd/lammps.yaml: the MiniCluster template; six_config: size 2, tasks 4,
# cpu_limit 2, x = y = z = 2.
VIEWS = {
    ("amd64", "ubuntu", "20.04"): "ghcr.io/converged-computing/flux-view-ubuntu:tag-focal",
    ("amd64", "ubuntu", "22.04"): "ghcr.io/converged-computing/flux-view-ubuntu:tag-jammy",
    ("amd64", "rocky", "8"): "ghcr.io/converged-computing/flux-view-rocky:tag-8",
    ("amd64", "rocky", "9"): "ghcr.io/converged-computing/flux-view-rocky:tag-9",
    ("arm64", "ubuntu", "20.04"): "ghcr.io/converged-computing/flux-view-ubuntu:arm-focal",
    ("arm64", "ubuntu", "22.04"): "ghcr.io/converged-computing/flux-view-ubuntu:arm-jammy",
    ("arm64", "rocky", "8"): "ghcr.io/converged-computing/flux-view-rocky:arm-8",
    ("arm64", "rocky", "9"): "ghcr.io/converged-computing/flux-view-rocky:arm-9",
}
MODES = ("random", "basic", "platform", "platform-version", "descriptive-basic", "descriptive-mpi")


def expected_views(image: str, mode: str) -> set[str]:
    """The view(s) the reference paired an image with in a mode: basic a fixed jammy view
    (generate_basic_minicluster), platform any view of the image's OS family
    (generate_platform_minicluster), platform-version the image's OS and version
    (generate_platform_version_minicluster), descriptive a view first, then an image matching
    its OS and version (generate_descriptive_minicluster): the image's own."""
    tag = image.split(":")[-1]
    arch = "arm64" if tag.endswith("arm64") else "amd64"
    family = "ubuntu" if "ubuntu" in tag else "rocky"
    version = {
        "ubuntu": "20.04" if "20.04" in tag else "22.04",
        "rocky": "8" if "-8-" in tag else "9",
    }[family]
    if mode in ("random", "basic"):
        return {VIEWS[(arch, "ubuntu", "22.04")]}
    if mode == "platform":
        return {v for (a, f, _), v in VIEWS.items() if a == arch and f == family}
    return {VIEWS[(arch, family, version)]}


def reference_shape(name: str, image: str, view: str, mode: str) -> dict:
    tag = image.split(":")[-1]
    executable = "lmp_gpu" if "gpu" in tag else "lmp"  # generate_basic_base; --gpu descriptive
    container = {
        "image": image,
        "command": f"{executable} -v x 2 -v y 2 -v z 2 -in in.reaxc.hns -nocite",
        "resources": {"limits": {"cpu": 2}, "requests": {"cpu": 2}},
    }
    if "intel" in tag and mode.startswith("descriptive"):
        container["commands"] = {"pre": ". /opt/intel/mpi/latest/env/vars.sh"}
    return {
        "apiVersion": "flux-framework.org/v1alpha2",
        "kind": "MiniCluster",
        "metadata": {"name": name},
        "spec": {
            "size": 2,
            "tasks": 4,
            "pod": {"labels": {"app": name}},
            "flux": {"container": {"image": view}},
            "containers": [container],
        },
    }


def harness_additions(doc: dict, variant: str) -> dict:
    """Take out (after checking them) the fields the harness adds for its lifecycle: the
    namespace it works in, pods that never restart, a deadline, its own pod label."""
    doc = copy.deepcopy(doc)
    assert doc["metadata"].pop("namespace") == "default"
    spec = doc["spec"]
    assert spec["pod"].pop("restartPolicy") == "Never"
    assert spec["pod"]["labels"].pop("app.kubernetes.io/part-of") == "compat-harness"
    assert spec.pop("deadlineSeconds") > 300
    if variant == "head":
        assert spec.pop("backoffLimit") == 1
    return doc


def reference_manifests(anchors) -> list[tuple[str, list[manifest.Image]]]:
    return [
        ("the reference's manifests.yaml", manifest.load(anchors / "manifests.yaml")),
        ("this repository's manifests.yaml", manifest.load(ROOT / "manifests.yaml")),
    ]


@pytest.mark.parametrize("variant", CRDS)
@pytest.mark.parametrize("mode", MODES)
def test_reference_protocol_renders_the_references_minicluster(tmp_path, anchors, variant, mode):
    for where, images in reference_manifests(anchors):
        assert len(images) == 18, where
        for image in images:
            arch = "arm64" if image.name.endswith("arm64") else "amd64"
            ex = MiniClusterExecutor(protocol="reference", crd=variant, node_arch=arch)
            job = _job(
                tmp_path,
                image.name,
                mode,
                command=image.command,  # the manifest's: not used by the reference protocol
                workdir=image.workdir,
                np=4,
            )
            doc = ex.manifest_for(job)
            assert errors(doc, variant) == [], (where, image.name)
            name = doc["metadata"]["name"]
            view = doc["spec"]["flux"]["container"]["image"]
            assert view in expected_views(image.name, mode), (where, image.name, mode, view)
            assert harness_additions(doc, variant) == reference_shape(name, image.name, view, mode)


def test_reference_protocol_platform_view_is_drawn_per_iteration(tmp_path):
    ex = MiniClusterExecutor(protocol="reference")
    image = "ghcr.io/rse-ops/lammps-matrix:openmpi-ubuntu-22.04-amd64"
    seen = set()
    for i in range(40):
        logs = tmp_path / "logs" / "platform"
        job = _job(tmp_path, image, stdout=logs / f"iter-{i:04d}.x.out", np=4)
        first = ex.manifest_for(job)["spec"]["flux"]["container"]["image"]
        again = ex.manifest_for(job)["spec"]["flux"]["container"]["image"]
        assert first == again  # the same iteration draws the same view
        seen.add(first)
    assert seen == expected_views(image, "platform")  # both Ubuntu views over 40 iterations


def test_reference_commands_and_flags_are_what_the_reference_logs_print(tmp_path, anchors):
    """The reference's lead-broker logs print the operator's `Command provided is: ...` and
    `Flags for flux are ...` lines: the protocol renders exactly those for the amd64 images."""
    logged_commands, logged_flags = set(), set()
    for log in (anchors / "dev-logs").rglob("*.log"):
        text = log.read_text(errors="replace")
        logged_commands.update(m.strip() for m in re.findall(r"Command provided is: (.*)", text))
        logged_flags.update(m.strip() for m in re.findall(r"Flags for flux are (.*)", text))
    rendered_commands, rendered_flags = set(), set()
    ex = MiniClusterExecutor(protocol="reference")
    for image in manifest.load(anchors / "manifests.yaml"):
        if image.name.endswith("amd64"):
            doc = ex.manifest_for(_job(tmp_path, image.name, "basic", np=4))
            rendered_commands.add(doc["spec"]["containers"][0]["command"])
            rendered_flags.add(operator_flags(doc["spec"]))
    assert logged_commands == rendered_commands
    assert logged_flags == rendered_flags == {"-N 2 -n4"}


def test_harness_protocol_keeps_the_manifests_job(tmp_path):
    ex = MiniClusterExecutor()
    job = _job(
        tmp_path,
        "ghcr.io/rse-ops/lammps-matrix:openmpi-ubuntu-gpu-22.04-amd64",
        flux={"env": {"OMPI_MCA_btl": "^openib"}},
    )
    doc = ex.manifest_for(job)
    (container,) = doc["spec"]["containers"]
    assert container["command"] == "lmp -in in.lj" and container["workingDir"] == "/opt/lab"
    assert container["environment"] == {"OMPI_MCA_btl": "^openib"}
    assert doc["spec"]["size"] == 1 and "resources" not in container
    assert doc["spec"]["flux"]["container"]["image"].endswith("flux-view-ubuntu:tag-jammy")


# --- the follow loop, against a test double of the API server ------------------------------------
VIEW = "ghcr.io/converged-computing/flux-view-ubuntu:tag-jammy"
APP = "ghcr.io/rse-ops/lammps-matrix:openmpi-ubuntu-22.04-amd64"
T0 = datetime(2026, 1, 5, 12, 0, 0, tzinfo=UTC)

LAMMPS_OK = "\n".join(
    [
        "Command provided is: lmp -v x 2 -v y 2 -v z 2 -in in.reaxc.hns -nocite",
        "Flags for flux are -N 2 -n4",
        "broker.info[0]: quorum-full: quorum->run 0.310733s",
        "LAMMPS (29 Sep 2021 - Update 2)",
        "Loop time of 7.66242 on 4 procs for 100 steps with 2432 atoms",
        "Total wall time: 0:00:07",
    ]
)
LAMMPS_GPU = "\n".join(
    [
        "Command provided is: lmp_gpu -v x 2 -v y 2 -v z 2 -in in.reaxc.hns -nocite",
        "broker.info[0]: quorum-full: quorum->run 0.310733s",
        "lmp_gpu: error while loading shared libraries: libcuda.so.1: cannot open shared "
        "object file: No such file or directory",
    ]
)


def _k8s():
    return pytest.importorskip("kubernetes.client")


def running(at=T0):
    k = _k8s()
    return k.V1ContainerState(running=k.V1ContainerStateRunning(started_at=at))


def waiting(reason, message=None):
    k = _k8s()
    return k.V1ContainerState(waiting=k.V1ContainerStateWaiting(reason=reason, message=message))


def terminated(exit_code, reason, started=T0, seconds=9):
    k = _k8s()
    return k.V1ContainerState(
        terminated=k.V1ContainerStateTerminated(
            exit_code=exit_code,
            reason=reason,
            started_at=started,
            finished_at=datetime.fromtimestamp(started.timestamp() + seconds, UTC),
        )
    )


def operator_pod(
    mc,
    index,
    phase,
    app=None,
    *,
    init=None,
    scheduled=True,
    suffix="x7k2p",
    message="0/5 nodes are available: 5 Insufficient cpu.",
):
    """A pod of a MiniCluster as the operator's Job and Kubernetes' Job controller make it:
    controllers/flux/job.go (an Indexed Job named after the MiniCluster, pod template labels of
    pods.go getPodLabels: the spec's labels, namespace, app=flux-operator (head), the
    app.kubernetes.io/name and hpa-selector of the cluster; hostname <name>-<index> under the
    subdomain <name>; the flux view as the init container `flux-view`, the application
    container named after the MiniCluster running /flux_operator/wait-0.sh); the Job
    controller names indexed pods <job>-<index>-<suffix> and adds the job-name,
    controller-uid and completion-index labels and the completion-index annotation."""
    k = _k8s()
    uid = "3f1c2a9e-1b7d-4c55-9a43-0d2e8f6b7a10"
    labels = {
        "app.kubernetes.io/part-of": "compat-harness",
        "namespace": "default",
        "app": "flux-operator",
        "app.kubernetes.io/name": mc,
        "hpa-selector": mc,
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": mc,
        "controller-uid": uid,
        "job-name": mc,
        "batch.kubernetes.io/job-completion-index": str(index),
    }
    init_state = init or k.V1ContainerState(
        terminated=k.V1ContainerStateTerminated(exit_code=0, reason="Completed")
    )
    conditions = [
        k.V1PodCondition(
            type="PodScheduled",
            status="True" if scheduled else "False",
            reason=None if scheduled else "Unschedulable",
            message=None if scheduled else message,
        )
    ]
    status = k.V1PodStatus(phase=phase, conditions=conditions)
    if scheduled:
        status.init_container_statuses = [
            k.V1ContainerStatus(
                name="flux-view",
                image=VIEW,
                image_id="",
                ready=False,
                restart_count=0,
                state=init_state,
            )
        ]
        status.container_statuses = [
            k.V1ContainerStatus(
                name=mc,
                image=APP,
                image_id="",
                ready=bool(app and app.running),
                restart_count=0,
                state=app or waiting("PodInitializing"),
            )
        ]
    return k.V1Pod(
        metadata=k.V1ObjectMeta(
            name=f"{mc}-{index}-{suffix}",
            namespace="default",
            labels=labels,
            annotations={"batch.kubernetes.io/job-completion-index": str(index)},
            creation_timestamp=T0,
        ),
        spec=k.V1PodSpec(
            hostname=f"{mc}-{index}",
            subdomain=mc,
            restart_policy="Never",
            init_containers=[
                k.V1Container(
                    name="flux-view",
                    image=VIEW,
                    command=["/bin/bash", "/flux_operator/flux-init.sh"],
                )
            ],
            containers=[
                k.V1Container(name=mc, image=APP, command=["/bin/bash", "/flux_operator/wait-0.sh"])
            ],
        ),
        status=status,
    )


class FakeApiServer:
    """The two core/v1 endpoints the follow loop calls, served from a script of pod lists
    (one per list call, the last repeating); deleting the MiniCluster empties it."""

    def __init__(self, frames, logs=None):
        self.frames = frames
        self.logs = logs or {}
        self.calls = 0
        self.log_requests = []
        self.deleted: set[str] = set()  # the MiniClusters deleted: their pods are gone
        self.served: list = []

    def list_namespaced_pod(self, namespace, label_selector=None, _request_timeout=None):
        k = _k8s()
        assert namespace == "default" and label_selector.startswith("job-name=")
        if label_selector.removeprefix("job-name=") in self.deleted:
            return k.V1PodList(items=[])
        frame = self.frames[min(self.calls, len(self.frames) - 1)]
        self.calls += 1
        self.served = frame
        return k.V1PodList(items=frame)

    def read_namespaced_pod_log(self, name, namespace, container=None, _request_timeout=None):
        from kubernetes.client.rest import ApiException

        self.log_requests.append((name, container))
        (pod,) = [p for p in self.served if p.metadata.name == name]
        names = [c.name for c in pod.spec.containers]
        if container is None and len(names) > 1:
            raise ApiException(status=400, reason="Bad Request")  # a container name is needed
        if container is not None and container not in names:
            raise ApiException(status=400, reason="Bad Request")  # not valid for pod
        statuses = {s.name: s for s in pod.status.container_statuses or []}
        state = statuses[container or names[0]].state
        if state.waiting:
            raise ApiException(status=400, reason="Bad Request")  # waiting to start
        return self.logs.get(name, "")


class FakeCustomObjects:
    """The custom objects endpoints: MiniClusters are created, read (404 once deleted) and
    deleted; `calls` keeps the order."""

    def __init__(self, server: FakeApiServer):
        self.server = server
        self.created = []
        self.existing: set[str] = set()
        self.calls: list[tuple[str, str]] = []

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        self.created.append(body)
        self.existing.add(body["metadata"]["name"])
        self.calls.append(("create", body["metadata"]["name"]))

    def get_namespaced_custom_object(self, group, version, namespace, plural, name, **kw):
        from kubernetes.client.rest import ApiException

        if name not in self.existing:
            raise ApiException(status=404, reason="Not Found")
        return {"metadata": {"name": name}}

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name, **kw):
        self.existing.discard(name)
        self.server.deleted.add(name)
        self.calls.append(("delete", name))


class Clock:
    def __init__(self):
        self.t = T0.timestamp() - 60

    def __call__(self):
        return self.t

    def sleep(self, seconds):
        self.t += seconds


MC = "h-iter-0003-0a1b2c3d-4e5f6a"


def follow(tmp_path, frames, logs=None, *, strict=False, size=2, timeout_s=120.0, startup_s=300):
    """One iteration through run(): the lifecycle follows the scripted pod lists on a clock
    that moves only when the executor sleeps; the MiniCluster is deleted at the end."""
    ex = MiniClusterExecutor(strict=strict, size=size, startup_s=startup_s, poll_s=5, crd="head")
    clock = Clock()
    ex._clock, ex._sleep = clock, clock.sleep
    server = FakeApiServer(frames, logs)
    ex._clients = lambda: (FakeCustomObjects(server), server)
    job = _job(tmp_path, APP, np=4, timeout_s=timeout_s)
    result = ex.run(job)
    names = [e["name"] for e in result.events]
    assert names[0] == "minicluster" and names[-1] == "deleted" and server.deleted, names
    assert not list(job.stdout.parent.glob("*.minicluster-job"))  # its journal is gone
    text = job.stdout.read_text() + "\n" + job.stderr.read_text()
    verdict = classify(
        text,
        exit_code=result.exit_code,
        ranks=4,
        timed_out=result.timed_out,
        fault=result.fault,
    )
    return result, server, verdict, job


def pending_then(*frames):
    return [[operator_pod(MC, 0, "Pending", waiting("PodInitializing"))], *frames]


def test_fake_refuses_the_wrong_container_name(tmp_path):
    """What the executor used to do (container="app") is refused by the double, as by the
    API server: the container is named after the MiniCluster."""
    from kubernetes.client.rest import ApiException

    pod = operator_pod(MC, 0, "Succeeded", terminated(0, "Completed"))
    server = FakeApiServer([[pod]], {pod.metadata.name: LAMMPS_OK})
    server.list_namespaced_pod("default", label_selector=f"job-name={MC}")
    with pytest.raises(ApiException) as info:
        server.read_namespaced_pod_log(pod.metadata.name, "default", container="app")
    assert info.value.status == 400
    assert server.read_namespaced_pod_log(pod.metadata.name, "default", container=MC) == LAMMPS_OK


def test_follow_success(tmp_path):
    frames = pending_then(
        [operator_pod(MC, 0, "Running", running()), operator_pod(MC, 1, "Running", running())],
        [
            operator_pod(MC, 0, "Succeeded", terminated(0, "Completed")),
            operator_pod(MC, 1, "Succeeded", terminated(0, "Completed")),
        ],
    )
    lead = frames[-1][0].metadata.name
    result, server, verdict, job = follow(tmp_path, frames, {lead: LAMMPS_OK})
    assert server.log_requests == [(lead, MC)]  # the container named after the MiniCluster
    assert job.stdout.read_text() == LAMMPS_OK
    assert result.fault is None and not result.timed_out
    assert result.exit_code is None  # wait.sh without strict always exits 0: unknown
    assert result.run_s == 9 and result.queue_s > 0
    assert [e["name"] for e in result.events][1:-1] == ["pod", "pod", "start", "pod", "finish"]
    assert verdict.reason == "success"


def test_follow_success_strict_keeps_the_exit_code(tmp_path):
    frames = [
        [
            operator_pod(MC, 0, "Succeeded", terminated(0, "Completed")),
            operator_pod(MC, 1, "Succeeded", terminated(0, "Completed")),
        ]
    ]
    lead = frames[0][0].metadata.name
    result, _, verdict, _ = follow(tmp_path, frames, {lead: LAMMPS_OK}, strict=True)
    assert result.exit_code == 0 and verdict.reason == "success"


@pytest.mark.parametrize("strict,container_exit", [(True, 1), (False, 0)])
def test_follow_failure(tmp_path, strict, container_exit):
    frames = pending_then(
        [operator_pod(MC, 0, "Running", running()), operator_pod(MC, 1, "Running", running())],
        [
            operator_pod(
                MC,
                0,
                "Failed" if container_exit else "Succeeded",
                terminated(container_exit, "Error" if container_exit else "Completed"),
            ),
            operator_pod(MC, 1, "Running", running()),
        ],
    )
    lead = frames[-1][0].metadata.name
    result, server, verdict, job = follow(tmp_path, frames, {lead: LAMMPS_GPU}, strict=strict)
    assert server.log_requests == [(lead, MC)]
    assert job.stdout.read_text() == LAMMPS_GPU  # the log is read, not an empty string
    assert result.exit_code == (1 if strict else None)
    assert result.fault is None and not result.timed_out
    assert verdict.reason == "gpu" and "libcuda.so.1" in verdict.evidence


def test_follow_never_scheduled(tmp_path):
    frames = [
        [
            operator_pod(MC, 0, "Pending", scheduled=False),
            operator_pod(MC, 1, "Pending", scheduled=False),
        ]
    ]
    result, _, verdict, job = follow(tmp_path, frames, startup_s=300)
    assert result.fault is not None and result.fault.kind == "start-timeout"
    assert "Unschedulable: 0/5 nodes are available: 5 Insufficient cpu." in result.fault.detail
    assert result.exit_code is None and not result.timed_out
    assert result.queue_s >= 300 and result.run_s == 0
    assert job.stdout.read_text() == "" and result.fault.detail in job.stderr.read_text()
    assert verdict.reason == "infra"


def test_follow_worker_never_scheduled(tmp_path):
    """The lead's container runs (its broker waits for the others): not started yet."""
    frames = [
        [operator_pod(MC, 0, "Running", running()), operator_pod(MC, 1, "Pending", scheduled=False)]
    ]
    result, _, verdict, _ = follow(tmp_path, frames, startup_s=300, timeout_s=60)
    assert result.fault.kind == "start-timeout" and not result.timed_out
    assert f"{MC}-1-x7k2p: Unschedulable" in result.fault.detail
    assert verdict.reason == "infra"


def test_follow_no_pods_at_all(tmp_path):
    result, _, verdict, _ = follow(tmp_path, [[]], startup_s=120)
    assert result.fault.kind == "start-timeout" and "no pod" in result.fault.detail
    assert verdict.reason == "infra"


def test_follow_flux_view_cannot_be_pulled(tmp_path):
    init = waiting("ImagePullBackOff", f'Back-off pulling image "{VIEW}"')
    frames = [
        [
            operator_pod(MC, 0, "Pending", waiting("PodInitializing"), init=init),
            operator_pod(MC, 1, "Pending", waiting("PodInitializing"), init=init),
        ]
    ]
    result, _, verdict, _ = follow(tmp_path, frames, startup_s=120)
    assert result.fault.kind == "start-timeout"
    assert "init container flux-view ImagePullBackOff" in result.fault.detail
    assert verdict.reason == "infra"  # the view is the infrastructure's, not the image's


def test_follow_application_image_does_not_exist(tmp_path):
    gone = waiting(
        "ErrImagePull",
        f'rpc error: code = NotFound desc = failed to pull and unpack image "{APP}": not found',
    )
    frames = pending_then(
        [operator_pod(MC, 0, "Pending", gone), operator_pod(MC, 1, "Pending", gone)]
    )
    result, _, verdict, _ = follow(tmp_path, frames)
    assert result.fault.kind == "pull" and "not found" in result.fault.detail
    assert verdict.reason == "pull"


def test_follow_timeout(tmp_path):
    frames = [
        [operator_pod(MC, 0, "Running", running()), operator_pod(MC, 1, "Running", running())]
    ]
    lead = frames[0][0].metadata.name
    log = "LAMMPS (29 Sep 2021 - Update 2)\nStep Temp E_pair"
    result, server, verdict, _ = follow(tmp_path, frames, {lead: log}, timeout_s=60)
    assert result.timed_out and result.fault is None and result.exit_code is None
    assert 60 <= result.run_s <= 70  # the lifecycle stops it at its timeout, not a poll later
    assert server.log_requests == [(lead, MC)]
    assert verdict.reason == "timeout"


def test_follow_keeps_the_lead_pod_that_ran(tmp_path):
    """0.2.1 has no backoffLimit (the operator's 100 applies): a failed lead pod is replaced by
    a new pod of index 0. The one whose application ran is the iteration."""
    failed = operator_pod(MC, 0, "Failed", terminated(1, "Error"), suffix="aaaaa")
    replacement = operator_pod(MC, 0, "Pending", waiting("PodInitializing"), suffix="bbbbb")
    replacement.metadata.creation_timestamp = datetime.fromtimestamp(T0.timestamp() + 30, UTC)
    frames = [[replacement, failed, operator_pod(MC, 1, "Running", running())]]
    result, server, verdict, _ = follow(
        tmp_path, frames, {failed.metadata.name: LAMMPS_GPU}, strict=True
    )
    assert server.log_requests == [(failed.metadata.name, MC)]
    assert result.exit_code == 1 and verdict.reason == "gpu"


def test_follow_pods_deleted_by_someone_else(tmp_path):
    frames = [
        [operator_pod(MC, 0, "Running", running()), operator_pod(MC, 1, "Running", running())],
        [],
    ]
    result, _, verdict, _ = follow(tmp_path, frames)
    assert result.fault.kind == "cancelled"
    assert verdict.reason == "infra"


def test_run_creates_follows_and_deletes(tmp_path):
    ex = MiniClusterExecutor(protocol="reference", crd="0.2.1", poll_s=5)
    clock = Clock()
    ex._clock, ex._sleep = clock, clock.sleep
    server = FakeApiServer([])
    custom = FakeCustomObjects(server)
    ex._clients = lambda: (custom, server)

    def create(group, version, namespace, plural, body):
        custom.created.append(body)
        name = body["metadata"]["name"]
        done = [operator_pod(name, i, "Succeeded", terminated(0, "Completed")) for i in range(2)]
        server.frames = [done]
        server.logs = {done[0].metadata.name: LAMMPS_OK}

    custom.create_namespaced_custom_object = create
    job = _job(tmp_path, APP, "platform-version", np=4)
    result = ex.run(job)
    (body,) = custom.created
    assert errors(body, "0.2.1") == []
    name = body["metadata"]["name"]
    assert server.log_requests == [(f"{name}-0-x7k2p", name)]
    assert server.deleted and result.events[-1]["name"] == "deleted"
    assert result.events[0]["protocol"] == "reference"
    assert result.argv == ["minicluster", str(job.stdout.with_suffix(".minicluster.yaml"))]
    assert job.stdout.read_text() == LAMMPS_OK


def test_a_minicluster_a_killed_harness_left_is_deleted_before_the_next(tmp_path):
    """kill -9 of the harness leaves its MiniCluster and the journal naming it; the next run
    deletes it (and waits until its pods are gone) before it creates anything."""
    ex = MiniClusterExecutor(crd="head", poll_s=5, size=2)
    clock = Clock()
    ex._clock, ex._sleep = clock, clock.sleep
    server = FakeApiServer([[operator_pod(MC, i, "Succeeded", terminated(0, "Completed"))
                             for i in range(2)]], {f"{MC}-0-x7k2p": LAMMPS_OK})  # fmt: skip
    custom = FakeCustomObjects(server)
    ex._clients = lambda: (custom, server)
    job = _job(tmp_path, APP, np=2)
    left = "h-iter-0001-0a1b2c3d-9f8e7d"
    custom.existing.add(left)
    journal = job.stdout.parent / "iter-0001.minicluster-job"
    journal.write_text(json.dumps({"name": left, "jobid": left}))
    result = ex.run(job)
    (created,) = custom.created
    assert custom.calls == [
        ("delete", left),
        ("create", created["metadata"]["name"]),
        ("delete", created["metadata"]["name"]),
    ]
    assert not journal.exists() and result.fault is None
    assert job.stdout.read_text() == LAMMPS_OK


# --- errors without a cluster --------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_unreachable_api_is_one_line(scheme):
    pytest.importorskip("kubernetes")
    url = f"{scheme}://127.0.0.1:{_closed_port()}"
    with pytest.raises(HarnessError) as info:
        MiniClusterExecutor(api_url=url).preflight()
    message = str(info.value)
    assert "\n" not in message
    assert f"Kubernetes API at {url} is unreachable" in message
    assert "Connection refused" in message


def test_missing_kubeconfig_is_one_line(tmp_path, monkeypatch):
    pytest.importorskip("kubernetes")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(HarnessError) as info:
        MiniClusterExecutor(kubeconfig=str(tmp_path / "absent")).preflight()
    assert "\n" not in str(info.value)
    assert "no Kubernetes configuration" in str(info.value)


# --- the docs' and README's commands against the CLI ---------------------------------------------
def shell_commands(text: str) -> list[str]:
    """Every command line of the ```sh blocks: continuations joined, comments dropped."""
    out = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def harness_commands(text: str) -> list[list[str]]:
    found = []
    for line in shell_commands(text):
        if line.startswith("harness "):
            words = shlex.split(line.replace("$mode", "basic"), comments=True)
            if ">" in words:  # output redirected: not the command's own words
                words = words[: words.index(">")]
            found.append(words[1:])
    return found


def readme_minicluster_section() -> str:
    text = README.read_text()
    start = text.index("## Inside a MiniCluster")
    return text[start : text.index("\n## ", start + 1)]


DOC_SOURCES = {"docs/minicluster.md": docs_text, "README.md": readme_minicluster_section}


def test_the_docs_have_the_commands_a_user_needs():
    commands = harness_commands(docs_text())
    subs = [c[0] for c in commands]
    for sub in ("prepull", "run", "status", "report"):
        assert sub in subs, sub
    runs = [c for c in commands if c[0] == "run"]
    assert ["run", "--mode", "descriptive-basic"] in runs  # the design card, as typed
    detached = [c for c in runs if "--detach" in c]
    mc = [c for c in runs if "minicluster" in c]
    assert detached and mc
    for c in detached:  # the reference's shape, its MPI, and a queue that may wait
        assert {"--np", "4", "--nodes", "2", "--mpi-model", "hybrid"} <= set(c)
        assert c[c.index("--start-timeout") + 1] == "0"
        assert "--executor" not in c  # inside the instance: Flux by itself
    for c in mc:  # the reference protocol brings its own size and tasks
        assert c[c.index("--protocol") + 1] == "reference"
        assert "--size" not in c and "--np" not in c


@pytest.mark.parametrize("source", DOC_SOURCES)
def test_documented_harness_commands_parse(source):
    from harness import cli as harness_cli
    from harness.commands.options import executor_options

    commands = harness_commands(DOC_SOURCES[source]())
    assert commands, source
    parser = harness_cli.build_parser()
    for argv in commands:
        if argv[0] == "--version":
            assert cli("--version").returncode == 0
            continue
        if argv[0] == "prepull":  # parses its own arguments
            known = re.findall(r"--[a-z-]+", cli("prepull", "--help").stdout)
            assert set(re.findall(r"--[a-z-]+", " ".join(argv))) <= set(known), argv
            continue
        try:
            args = parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{source}: `harness {shlex.join(argv)}` does not parse")
        if argv[0] == "run":
            executor_options(args)  # an option of another executor raises
        proc = cli(*argv, "--help")
        assert proc.returncode == 0, (argv, proc.stderr)


def test_documented_minicluster_dry_run_runs(tmp_path, anchors):
    dry = [c for c in harness_commands(docs_text()) if "minicluster" in c and "--dry-run" in c]
    assert dry
    for argv in dry:
        argv = list(argv)
        out = tmp_path / "x"
        argv[argv.index("--outdir") + 1] = str(out)
        # the artifacts from the reference's cache: no registry is reachable here
        proc = cli(*argv, "--cache", str(anchors / "compspec-cache"))
        assert proc.returncode == 0, proc.stderr
        assert not out.exists()  # a dry run writes nothing
        rendered = list(yaml.safe_load_all(proc.stdout))
        assert len(rendered) == int(argv[argv.index("--iters") + 1])
        for doc in rendered:
            for variant in CRDS:
                spec = copy.deepcopy(doc)
                if variant == "0.2.1":
                    spec["spec"].pop("backoffLimit", None)
                assert errors(spec, variant) == [], doc["metadata"]["name"]
            assert doc["spec"]["size"] == 2 and doc["spec"]["tasks"] == 4
