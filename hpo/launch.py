"""``python -m hpo.launch``: run a study's workers on Slurm (submitit) or as local processes.

A thin shim: :mod:`hpo` knows nothing of Slurm, so the launcher lives in :mod:`slurm.launch`
and is imported only when this command runs.

It takes the same study-file overrides as ``python -m hpo.run`` (``--sampler``, ``--pruner``,
``--set KEY=VALUE``): they are validated with the file before anything is submitted and passed
to every worker (``python -m hpo.report`` and ``hpo.train_best`` take the same ``--set``).

Example::

    python -m hpo.launch --study studies/decoder.yaml --workers 16 --trials-per-worker 4 --wait
    python -m hpo.launch --study studies/fspnet_decoder.yaml --executor local --workers 2 --wait \
        --sampler RandomSampler --set output_dir=/tmp/try --set config.training.epochs=2
"""

from __future__ import annotations

import typing as tp

__all__ = ["main"]


def main(argv: tp.Sequence[str] | None = None) -> int:
    """``hpo-launch``: see ``python -m hpo.launch --help``."""
    from slurm.launch import main as launch_main

    return launch_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
