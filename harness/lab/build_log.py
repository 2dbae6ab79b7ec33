"""Running a lab build's commands (argv lists only), with their output in the image's log."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from harness.errors import HarnessError

CHROOT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "DEBIAN_FRONTEND": "noninteractive",
    "LC_ALL": "C",
    "HOME": "/root",
}


class BuildError(HarnessError):
    pass


# Hears a step: (step, None when it starts or its last output line, seconds running).
Reporter = Callable[[str, "str | None", float], None]


def step_label(argv: list[str]) -> str:
    """A short name for a command: the program and its sub-command (`apt-get install`,
    `cmake --build`), past `chroot ROOT` and `env -C DIR`."""
    words = list(argv)
    if words[:1] == ["chroot"]:
        words = words[2:]
    if words[:1] == ["env"]:
        words = words[1:]
        while words and (words[0].startswith("-") or "=" in words[0]):
            words = words[2:] if words[0] in ("-C", "-u") else words[1:]
    if not words:
        return "command"
    name = os.path.basename(words[0])
    sub = next((w for w in words[1:] if w == "--build" or not w.startswith("-")), "")
    return f"{name} {sub}" if re.match(r"^(--build|[a-z][a-z0-9.-]*)$", sub) else name


class Log:
    def __init__(self, path: Path, report: Reporter | None = None):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.report = report
        self._fh = path.open("a")
        self._lock = threading.Lock()

    def note(self, text: str) -> None:
        with self._lock:
            self._fh.write(f"### {time.strftime('%H:%M:%S')} {text}\n")
            self._fh.flush()

    def run(
        self,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        capture: bool = False,
        step: str | None = None,
    ) -> str:
        """Run argv with its output into the log (stdout returned instead with capture).
        The reporter hears the step (`step`, else a name made from argv) when it starts
        and then, every second, the last line the command printed."""
        self.note("$ " + " ".join(argv))
        if capture:
            proc = subprocess.run(
                argv,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._fh,
                text=True,
                check=False,
            )
            self._fh.flush()
            returncode, output = proc.returncode, proc.stdout
        else:
            returncode, output = self._stream(argv, env, cwd, step or step_label(argv)), ""
        if returncode != 0:
            raise BuildError(
                f"{argv[0]} exited {returncode} ({' '.join(argv[:6])} ...); see {self.path}"
            )
        return output

    def _stream(
        self, argv: list[str], env: dict[str, str] | None, cwd: Path | None, label: str
    ) -> int:
        if self.report:
            self.report(label, None, 0.0)
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        last: list[str] = []

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:  # universal newlines: a \r progress update is a line
                with self._lock:
                    self._fh.write(line)
                if line.strip():
                    last[:] = [line.strip()]

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        started = time.monotonic()
        while True:
            try:
                proc.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                if self.report and last:
                    self.report(label, last[0], time.monotonic() - started)
        reader.join()
        with self._lock:
            self._fh.flush()
        return proc.returncode

    def close(self) -> None:
        self._fh.close()


def chroot(
    log: Log, rootfs: Path, argv: list[str], *, capture: bool = False, step: str | None = None
) -> str:
    return log.run(["chroot", str(rootfs), *argv], env=CHROOT_ENV, capture=capture, step=step)
