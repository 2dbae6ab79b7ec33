"""The lab: local LAMMPS container images (build, publish, verify); see containers/lab/README.md."""
