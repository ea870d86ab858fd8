"""The exceptions that :mod:`hpo` raises for bad user input.

Every error derives from :class:`HpoError`; the ones about user input also derive from the
built-in that fits, so callers may catch either. Messages name the study file and key path.
"""

from __future__ import annotations

__all__ = ["HpoError", "StudyConfigError", "TrainableError"]


class HpoError(Exception):
    """Root of every error raised by :mod:`hpo`."""


class StudyConfigError(HpoError, ValueError):
    """A study file is invalid.

    The message lists every problem found, one per line, each as ``file: key.path: what``.

    Attributes:
        errors: the individual ``(key_path, message)`` problems.
    """

    def __init__(self, message: str, errors: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.errors = list(errors or [])


class TrainableError(HpoError, ValueError):
    """A trainable is unknown, cannot be imported, or broke the trainable contract."""
