"""What the ELF headers of a program say: its architecture, the libraries it needs, and the
microarchitecture level it was built for (read by the artifact's extractors)."""

from __future__ import annotations

import io
from dataclasses import dataclass

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

__all__ = ["ELF_MACHINES", "ElfInfo", "elf_info", "microarchitecture"]

# ELF e_machine -> the architecture names compspec uses (Go/OCI style).
ELF_MACHINES = {
    "EM_X86_64": "amd64",
    "EM_AARCH64": "arm64",
    "EM_386": "386",
    "EM_PPC64": "ppc64le",
    "EM_ARM": "arm",
    "EM_RISCV": "riscv64",
    "EM_S390": "s390x",
}


@dataclass
class ElfInfo:
    machine: str
    needed: list[str]
    runpath: list[str]
    isa_needed: int = 0  # GNU_PROPERTY_X86_ISA_1_NEEDED: bit 0 baseline .. bit 3 x86-64-v4


# The microarchitecture a program was built for, in archspec's names: on x86-64 the highest
# level of its "x86 ISA needed" property (gcc -march=x86-64-vN -mneeded writes it, and glibc's
# loader refuses the program on a CPU below it); without one, the architecture's generic level.
ISA_LEVELS = ((8, "x86_64_v4"), (4, "x86_64_v3"), (2, "x86_64_v2"))
GENERIC_MICROARCH = {"amd64": "x86_64", "arm64": "aarch64", "ppc64le": "ppc64le"}


def microarchitecture(info: ElfInfo) -> str | None:
    if info.machine == "amd64":
        return next((name for bit, name in ISA_LEVELS if info.isa_needed & bit), "x86_64")
    return GENERIC_MICROARCH.get(info.machine)


def _isa_needed(elf: ELFFile) -> int:
    needed = 0
    for section in elf.iter_sections():
        if section.name != ".note.gnu.property" or not hasattr(section, "iter_notes"):
            continue
        for note in section.iter_notes():
            if note["n_type"] != "NT_GNU_PROPERTY_TYPE_0":
                continue
            for prop in note["n_desc"]:
                if prop["pr_type"] == "GNU_PROPERTY_X86_ISA_1_NEEDED":
                    needed |= int(prop["pr_data"])
    return needed


def elf_info(data: bytes) -> ElfInfo | None:
    try:
        elf = ELFFile(io.BytesIO(data))
    except ELFError:
        return None
    needed, runpath = [], []
    for section in elf.iter_sections():
        if isinstance(section, DynamicSection):
            for tag in section.iter_tags():
                if tag.entry.d_tag == "DT_NEEDED":
                    needed.append(tag.needed)
                elif tag.entry.d_tag in ("DT_RUNPATH", "DT_RPATH"):
                    value = tag.runpath if tag.entry.d_tag == "DT_RUNPATH" else tag.rpath
                    runpath += value.split(":")
    machine = ELF_MACHINES.get(elf["e_machine"], str(elf["e_machine"]))
    return ElfInfo(machine, needed, runpath, _isa_needed(elf))
