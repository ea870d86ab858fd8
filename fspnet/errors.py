"""The exceptions that :mod:`fspnet` raises for bad user input.

Every error derives from :class:`FspnetError` and from the built-in that fits, so callers
may catch either. Messages name the file, key path or layer at fault.
"""

from __future__ import annotations

__all__ = ["ConfigError", "DataError", "FspnetError", "NetworkConfigError", "ResponseError", "TrainingError"]


class FspnetError(Exception):
    """Root of every error raised by :mod:`fspnet`."""


class ConfigError(FspnetError, ValueError):
    """A YAML/JSON config is invalid; the message names the file and key path."""


class NetworkConfigError(ConfigError):
    """A network JSON layer list is invalid; the message names the layer index."""


class DataError(FspnetError, ValueError):
    """A dataset file is missing, malformed or inconsistent."""


class ResponseError(FspnetError, ValueError):
    """An OGIP RMF/ARF/PHA file is missing or malformed."""


class TrainingError(FspnetError, RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message names the run, epoch and batch."""
