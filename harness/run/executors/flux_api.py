"""The Flux Python bindings, used so that no wait swallows a signal and no request hangs.

`bindings()` imports them (a Flux Operator pod's view or `flux env` found first) or says how
to install them; `connect()` returns a handle that answered. Every wait on the instance runs in
short slices with the handle's reactor marked as running (the bindings' blocking waits
otherwise set SIGINT to its default action while they block), so Ctrl-C and SIGTERM reach
Python's handlers within SLICE_S.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import time

from harness.errors import HarnessError
from harness.run import flux_view

PING_TIMEOUT_S = 10.0  # how long an instance may take to answer before it counts as lost
RPC_TIMEOUT_S = 60.0  # how long one request (submit, cancel, a lookup) may take
SLICE_S = 0.2  # the longest a wait blocks in C: Python's signal handlers run between slices


def install_hint() -> str:
    """How to make `import flux` work, with the running instance's version and path if known."""
    hint = "pip install flux-python==<the instance's flux-core version>"
    flux = shutil.which("flux")
    if flux is None:
        return hint + " (or put the flux-core install's python directory on PYTHONPATH)"
    version = ""
    try:
        out = subprocess.run([flux, "version"], capture_output=True, text=True, timeout=20).stdout
        for line in out.splitlines():
            if line.startswith("libflux-core:"):
                version = line.split(":", 1)[1].strip()
        env = subprocess.run([flux, "env"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return hint
    pypath = ""
    for line in env.splitlines():
        if line.startswith("export PYTHONPATH="):
            pypath = line.split("=", 1)[1].strip().strip('"')
    if version:
        hint = f"pip install flux-python=={version}"
    if pypath:
        hint += f", or export PYTHONPATH={pypath} (what `flux env` prints)"
    return hint


def bindings():
    """The `flux` package with its job module, or a HarnessError saying how to install it.
    A Flux Operator pod's view (or `flux env` inside `flux start`) is found first."""
    flux_view.ensure()
    try:
        import flux
        import flux.job
        import flux.job.output  # noqa: F401  (job_output)
    except ImportError as exc:
        missing = exc.name or str(exc)
        if missing in ("flux", "_flux") or (missing or "").startswith(("flux.", "_flux.")):
            raise HarnessError(
                f"flux executor: the Flux Python bindings are not importable ({exc}); "
                + install_hint()
            ) from None
        raise HarnessError(
            f"flux executor: the Flux Python bindings need the module {missing!r}: "
            f"pip install {'cffi' if missing == '_cffi_backend' else missing}"
        ) from None
    return flux


def connect(uri: str | None = None):
    """A handle on the instance at `uri` (default: FLUX_URI, else the system instance)."""
    flux = bindings()
    target = uri or os.environ.get("FLUX_URI")
    try:
        handle = flux.Flux(uri) if uri else flux.Flux()
        handle.attr_get("size")  # one RPC: a socket that accepts but no broker behind it fails
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        if target:
            raise HarnessError(
                f"flux executor: the Flux instance at {target} is not reachable ({why})"
            ) from None
        raise HarnessError(
            "flux executor: no Flux instance reachable (FLUX_URI is unset and no system "
            f"instance answers: {why}); run inside `flux start` or `flux proxy URI`"
        ) from None
    return handle


def builtin(key: str) -> str | None:
    """flux-core's compiled-in configuration value `key` (what `flux config builtin KEY` prints),
    from the bindings' own libflux-core; None without the bindings or for an unknown key."""
    try:
        from flux.core.inner import ffi, lib
    except ImportError:
        return None
    try:
        value = lib.flux_conf_builtin_get(key.encode(), lib.FLUX_CONF_AUTO)
    except AttributeError:  # bindings built without it
        return None
    return ffi.string(value).decode() if value != ffi.NULL else None


def instance_version(handle) -> str | None:
    """The flux-core version of the instance's broker (its `version` attribute)."""
    try:
        return str(handle.attr_get("version"))
    except (OSError, KeyError):
        return None


def instance_cores(handle) -> int | None:
    """The cores of the instance's resources; None when it does not say."""
    import flux.resource

    try:
        return int(flux.resource.resource_list(handle).get().all.ncores)
    except (OSError, AttributeError):
        return None


def instance_slots(handle, cores_per_task: int) -> int | None:
    """The most ranks one job can get: Flux runs no more than the instance's cores hold."""
    cores = instance_cores(handle)
    return None if cores is None else cores // cores_per_task


def journaled_ids(h, entry: dict) -> list[int]:
    """The ids of the jobs a journal entry names: its id, else the active jobs of its name."""
    import flux.constants
    import flux.job

    if entry.get("jobid"):
        return [int(flux.job.JobID(entry["jobid"]))]
    if not entry.get("name"):
        return []
    rpc = flux.job.job_list(
        h, attrs=["state"], name=entry["name"], states=flux.constants.FLUX_JOB_STATE_ACTIVE
    )
    return [int(j["id"]) for j in get(h, rpc, "get_jobs")]


def cancel(h, jobids: list[int], reason: str) -> None:
    """Cancel each job (one request each, all in flight at once); a job already inactive, or a
    dead instance, is no error here."""
    import flux.job

    futures = []
    for jobid in jobids:
        with contextlib.suppress(OSError):
            futures.append(flux.job.cancel_async(h, jobid, reason))
    for future in futures:
        with contextlib.suppress(OSError):
            get(h, future, "get")


def still_active(h, jobids: set[int], wait_s: float) -> set[int]:
    """Those of `jobids` still active (in job-list, what `flux jobs` shows) after waiting up to
    wait_s for them to become inactive; a job the instance does not know is not active."""
    import flux.constants
    import flux.job

    deadline = time.monotonic() + wait_s
    left = set(jobids)
    while left:
        for jobid in sorted(left):
            try:
                rpc = flux.job.job_list_id(h, jobid, attrs=["state"])
                state = get(h, rpc, "get_job", timeout=10.0)["state"]
            except FileNotFoundError:
                left.discard(jobid)
                continue
            except OSError as exc:
                if exc.errno == errno.ETIMEDOUT:  # not known here (e.g. another instance's)
                    left.discard(jobid)
                    continue
                return left  # the instance does not answer: nothing more to learn
            if state == flux.constants.FLUX_JOB_STATE_INACTIVE:
                left.discard(jobid)
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    return left


def why(exc: BaseException) -> str:
    """An OSError's text as Flux words it ("EPIPE: Broken pipe"), else the exception's."""
    if isinstance(exc, OSError):
        if exc.strerror:
            return exc.strerror
        if exc.errno:
            return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__


@contextlib.contextmanager
def signals_kept(h):
    """The bindings' blocking calls are @interruptible: in the main thread, unless the handle's
    reactor runs, they set SIGINT to its default action while they block, so Ctrl-C kills the
    process at once (no handler, no cancel, the job runs on). Marked as in the reactor, they
    leave the handlers alone; every wait here is sliced, so the handlers run (KeyboardInterrupt,
    SIGTERM's Terminated) within SLICE_S."""
    with h.in_reactor():
        yield


def wait(h, future, timeout: float | None) -> bool:
    """Wait (in the reactor, no polling of the instance) until `future` is fulfilled: True, or
    False after `timeout` seconds (None: no limit). The wait runs in slices of SLICE_S: Python's
    signal handlers run between them."""
    deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
    while True:
        left = SLICE_S if deadline is None else min(SLICE_S, deadline - time.monotonic())
        try:
            with signals_kept(h):
                future.wait_for(max(0.0, left))
            return True
        except OSError as exc:
            if exc.errno != errno.ETIMEDOUT:
                raise
        if deadline is not None and time.monotonic() >= deadline:
            return False


def get(h, future, getter: str, timeout: float = RPC_TIMEOUT_S):
    """`future.<getter>()` once fulfilled, waited for in slices; OSError(ETIMEDOUT) when it is
    not fulfilled within `timeout`."""
    if not wait(h, future, timeout):
        raise OSError(errno.ETIMEDOUT, f"no answer within {timeout:g} s")
    with signals_kept(h):
        return getattr(future, getter)()


def unreachable(h) -> str | None:
    """None when the instance behind `h` answers a ping, else why not."""
    try:
        get(h, h.rpc("broker.ping", {}), "get", timeout=PING_TIMEOUT_S)
    except OSError as exc:
        if exc.errno == errno.ETIMEDOUT:
            return f"no answer within {PING_TIMEOUT_S:g} s"
        return why(exc)
    return None
