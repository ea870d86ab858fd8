"""``python -m hpo.launch``: run a study's workers on Slurm (submitit) or as local processes.

A thin shim: :mod:`hpo` knows nothing of Slurm, so the launcher lives in :mod:`slurm.launch`
and is imported only when this command runs.

Example::

    python -m hpo.launch --study studies/decoder.yaml --workers 16 --trials-per-worker 4 --wait
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
