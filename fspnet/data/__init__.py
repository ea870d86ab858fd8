"""Datasets (the HDF5 contract) and the transforms fitted on the training split."""

from __future__ import annotations

from fspnet.data._dataset import SpectrumDataset, read_dataset, write_dataset

__all__ = ["SpectrumDataset", "read_dataset", "write_dataset"]
