"""Datasets (the HDF5 contract) and the transforms fitted on the training split."""

from __future__ import annotations

from fspnet.data._dataset import (
    SpectrumDataset,
    check_finite,
    clear_dataset_cache,
    nonfinite_rows,
    read_dataset,
    read_dataset_cached,
    write_dataset,
)
from fspnet.data._splits import Split, load_split, make_split, subset_indices
from fspnet.data._transforms import ParamTransform, SpectrumTransform, Transforms, load_transforms

__all__ = [
    "ParamTransform",
    "SpectrumDataset",
    "SpectrumTransform",
    "Split",
    "Transforms",
    "check_finite",
    "clear_dataset_cache",
    "load_split",
    "load_transforms",
    "make_split",
    "nonfinite_rows",
    "read_dataset",
    "read_dataset_cached",
    "subset_indices",
    "write_dataset",
]
