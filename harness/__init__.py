"""compat-harness: how often does LAMMPS run from a container image picked by a selection rule?"""
