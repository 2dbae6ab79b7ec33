"""Finding the Flux instance a process runs in, the way a Flux Operator pod provides it.

The Flux Operator copies its Flux *view* (a Spack view of flux-core and its Python) to
/mnt/flux and writes /mnt/flux/flux-view.sh (pkg/flux/templates/components.sh, "paths"):

    export PATH=...            (the broker's PATH, the view's bin appended)
    export PYTHONPATH=...      (the view's site-packages: the Flux bindings)
    export LD_LIBRARY_PATH=...:/mnt/flux/view/lib
    export fluxsocket=local://<base>/run/flux/local

where <base> is /mnt/flux/config at the operator's head and /mnt/flux/view in release 0.2.1
(the broker's `-Slocal-uri`, templates/wait.sh). A shell from `kubectl exec` has none of it:
the operator's docs ask for `. /mnt/flux/flux-view.sh && flux proxy $fluxsocket bash` first.

`ensure()` does for this process what that line does for a shell: when FLUX_URI is unset and
the view script exists, it reads the script's `export` lines (never runs it), puts PATH,
PYTHONPATH (also on sys.path, so `import flux` works now) and LD_LIBRARY_PATH (for the
programs it starts) in the environment and sets FLUX_URI from `fluxsocket`. Inside
`flux start`, which sets FLUX_URI but not PYTHONPATH, it asks `flux env` for the bindings'
directory instead. The node image's shell profile (containers/node/flux-view-profile.sh) does
the same for interactive shells.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

VIEW_BASE = Path("/mnt/flux")  # the CRD's default spec.flux.container.mountPath
VIEW_SCRIPT = "flux-view.sh"
# The broker's local socket under the view base: operator head, then release 0.2.1.
SOCKETS = ("config/run/flux/local", "view/run/flux/local")
PATH_LISTS = ("PATH", "PYTHONPATH", "LD_LIBRARY_PATH")


@dataclass(frozen=True)
class Found:
    """Where this process's Flux instance is, and how that was learned."""

    uri: str | None
    source: str  # "FLUX_URI", the view script's path, a socket's path, or why there is none
    hinted: bool = True  # False: nothing here suggests a Flux instance at all


def view_base() -> Path:
    """The Flux view's mount point ($HARNESS_FLUX_VIEW overrides /mnt/flux)."""
    return Path(os.environ.get("HARNESS_FLUX_VIEW") or VIEW_BASE)


def read_view(script: Path) -> dict[str, str]:
    """The `export NAME=VALUE` lines of a flux-view.sh, parsed as words (nothing is run)."""
    found: dict[str, str] = {}
    try:
        text = script.read_text(errors="replace")
    except OSError:
        return found
    for line in text.splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, value = words[1].split("=", 1)
            found[name] = value
    return found


def _merged(mine: str, theirs: str) -> str:
    """A colon list: mine first, then what theirs adds (no duplicates, no empty entries)."""
    entries = [e for e in (*mine.split(":"), *theirs.split(":")) if e]
    return ":".join(dict.fromkeys(entries))


def _add_to_sys_path(pythonpath: str) -> None:
    # after this environment's own packages: the view's must not shadow the harness's
    for entry in pythonpath.split(":"):
        if entry and entry not in sys.path:
            sys.path.append(entry)


def _socket(uri: str) -> Path | None:
    return Path(uri.removeprefix("local://")) if uri.startswith("local://") else None


def _is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(path.stat().st_mode)
    except OSError:
        return False


def _flux_env_pythonpath() -> str:
    """The bindings' directory a `flux` on PATH reports (`flux env`), or ''."""
    flux = shutil.which("flux")
    if flux is None:
        return ""
    try:
        out = subprocess.run([flux, "env"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    for line in out.splitlines():
        words = shlex.split(line) if line.startswith("export PYTHONPATH=") else []
        if len(words) == 2:
            return words[1].split("=", 1)[1]
    return ""


def ensure() -> Found:
    """Make this process see its Flux instance, if there is one (idempotent)."""
    uri = os.environ.get("FLUX_URI")
    if uri:
        if "flux" not in sys.modules and (pythonpath := _flux_env_pythonpath()):
            os.environ["PYTHONPATH"] = _merged(os.environ.get("PYTHONPATH", ""), pythonpath)
            _add_to_sys_path(pythonpath)
        return Found(uri, "FLUX_URI")
    base = view_base()
    script = base / VIEW_SCRIPT
    view = read_view(script)
    if view:
        for name in PATH_LISTS:
            if view.get(name):
                os.environ[name] = _merged(os.environ.get(name, ""), view[name])
        _add_to_sys_path(view.get("PYTHONPATH", ""))
        uri = view.get("fluxsocket")
        if uri and (_socket(uri) is None or _is_socket(_socket(uri))):
            os.environ["FLUX_URI"] = uri
            return Found(uri, str(script))
    for relative in SOCKETS:
        if _is_socket(base / relative):
            uri = f"local://{base / relative}"
            os.environ["FLUX_URI"] = uri
            return Found(uri, str(base / relative))
    if view:
        return Found(None, f"{script} names no broker socket that exists")
    return Found(None, f"FLUX_URI is unset and there is no {script}", hinted=False)
