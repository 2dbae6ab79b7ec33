"""Stage 2 of a lab image: the lab files and the runscript in its rootfs, then the SIF."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

from harness.lab.build_log import BuildError, Log
from harness.lab.matrix import LabImage, Matrix


def finish_image(matrix: Matrix, image: LabImage, rootfs: Path) -> None:
    """The lab files in the workdir; the entry's command as the image's runscript (what
    `apptainer run` runs, and what its artifact's GPU field reads); and no OpenCL driver
    (ICD) in the image: with one (pocl) LAMMPS' GPU package finds a CPU "device" and fails
    otherwise than for want of a GPU."""
    workdir = rootfs / matrix.workdir.lstrip("/")
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)
    for name, source in matrix.lab_files.items():
        shutil.copyfile(source, workdir / name)
        (workdir / name).chmod(0o644)
    runscript = rootfs / ".singularity.d" / "runscript"
    runscript.parent.mkdir(exist_ok=True)
    runscript.write_text(
        "#!/bin/sh\n"
        "# The lab's command for this image (containers/lab/images.yaml), from its workdir.\n"
        f"cd {shlex.quote(matrix.workdir)} || exit 1\n"
        f'exec {shlex.join(image.command)} "$@"\n'
    )
    runscript.chmod(0o755)
    icds = sorted(p.name for p in (rootfs / "etc" / "OpenCL" / "vendors").glob("*"))
    if icds:
        raise BuildError(f"{image.tag}: an OpenCL driver is in the image: {icds}")


def build_sif(log: Log, rootfs: Path, sif: Path) -> None:
    """`apptainer build` with zstd (level 3) instead of mksquashfs' default gzip: on 2 cores
    a 600 MB rootfs packs in about 13 s instead of 60 s, for a 3 % larger SIF.  Apptainer
    runs it through the kernel's squashfs (zstd since Linux 4.14) or squashfuse."""
    tmp = sif.with_suffix(".sif.part")
    tmp.unlink(missing_ok=True)
    squashfs = "-comp zstd -Xcompression-level 3"
    log.run(["apptainer", "build", "--force", "--mksquashfs-args", squashfs, str(tmp), str(rootfs)])
    tmp.rename(sif)
