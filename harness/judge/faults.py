"""What an executor knows happened to a job besides its output: typed, never text to re-parse.

The executors (run/) create a Fault; the classifier (judge/) receives it as an argument and
maps it to a reason. A fault is about the infrastructure or the harness, not about the image,
except a pull of an image that does not exist or cannot run here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# kind -> what it means. The classifier's mapping to reasons is in judge/classify.py.
KINDS = {
    "pull": "the image could not be pulled (the registry answered: no such image, or refused)",
    "registry-unreachable": "the registry did not answer: an outage, not the image",
    "start-timeout": "the job did not start in time (queue, held, resources) and was cancelled",
    "lost-instance": "the scheduler instance was lost while the job was followed",
    "cancelled": "the job was cancelled by someone other than this harness",
}


@dataclass(frozen=True)
class Fault:
    kind: str
    detail: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r} (known: {', '.join(KINDS)})")

    def to_dict(self) -> dict[str, str]:
        return asdict(self)
