"""runtools: the bottom layer that fspnet, hpo and slurm share.

- :mod:`runtools.io`: atomic writes (temp file, fsync, rename), ``write_json``, and
  ``read_mapping`` for YAML/JSON config files;
- :mod:`runtools.provenance`: git commit, package versions, host, Slurm ids, GPU, and the one
  owner of URL/argv password masking;
- :mod:`runtools.schema`: the one config-validation mechanism (dataclass ``from_dict`` that
  rejects unknown keys listing the valid ones and collects every error with its key path) and
  the one dotted-path ``get``/``set``/``has``.

It imports nothing from fspnet, hpo or slurm.
"""

from __future__ import annotations

__all__: list[str] = []
