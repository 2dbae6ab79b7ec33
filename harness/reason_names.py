"""The reason names as constants, for code that gives or tests a reason.

A base module (it imports no stage), so that every stage may spell a reason by its constant,
select/ included, which may not import judge/.  The names are those of
harness/data/reasons.yaml, the truth: everything else about a reason (its rules, colour,
description, rate) is there and read by harness.judge.reasons, and tests/test_reason_names.py
checks that these constants and the file's names are the same set.
"""

SUCCESS = "success"
ARCH = "arch"
ISA = "isa"
OS_ABI = "os-abi"
GPU = "gpu"
MPI = "mpi"
MPI_SINGLETON = "mpi-singleton"
MISSING_BINARY = "missing-binary"
APPLICATION = "application"
PULL = "pull"
TIMEOUT = "timeout"
INFRA = "infra"
UNKNOWN = "unknown"
