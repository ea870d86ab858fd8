"""Slurm for :mod:`hpo`: submitit launcher, GPU packing, sbatch scripts and a dev cluster.

``python -m hpo.launch`` is the command line; ``slurm/launch_hpo.sbatch`` the plain-sbatch
route; both run ``python -m slurm.worker`` in each task: an :mod:`hpo.run` worker to which
Slurm's fault tolerance (:mod:`slurm._preempt`) is handed explicitly. ``slurm/dev-cluster/up.sh``
starts a real single-node Slurm (+ PostgreSQL) to try them.
Importing this package registers the study file's ``slurm:`` section with :mod:`hpo.study`.
"""

from __future__ import annotations

from slurm._sbatch import check_slurm_options, make_sbatch, plan_arrays, slurm_options
from slurm.launch import JobWorkers, LaunchSummary, SlurmLauncher, max_array_size, study_counts

__all__ = [
    "JobWorkers",
    "LaunchSummary",
    "SlurmLauncher",
    "check_slurm_options",
    "make_sbatch",
    "max_array_size",
    "plan_arrays",
    "slurm_options",
    "study_counts",
]
