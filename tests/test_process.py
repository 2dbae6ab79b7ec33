"""harness.run.executors.process.wait: a job's exit seen when it happens, a timeout as None."""

from __future__ import annotations

import subprocess

from harness.run.executors import process


def test_wait_gives_the_code_at_the_exit_and_none_before_it():
    proc = subprocess.Popen(["sh", "-c", "read line; exit 3"], stdin=subprocess.PIPE)
    assert process.wait(proc, 0.05) is None  # still reading its input
    proc.stdin.close()  # end of input: it exits
    assert process.wait(proc, 30) == 3
    assert process.wait(proc, 0) == 3  # asked again: the same code, at once


def test_wait_gives_a_signal_as_popen_does():
    proc = subprocess.Popen(["sleep", "30"])
    proc.kill()
    assert process.wait(proc, 30) == -9
    assert process.exit_status(-9) == (137, 9)
