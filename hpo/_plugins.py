"""Third-party plug-ins through entry-point groups, loaded lazily; a broken one is skipped."""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import typing as tp

_LOG = logging.getLogger(__name__)


@functools.cache
def load_entry_points(group: str) -> dict[str, tp.Any]:
    """Return ``{name: object}`` for every entry point of ``group`` that loads."""
    out: dict[str, tp.Any] = {}
    for ep in importlib.metadata.entry_points(group=group):
        try:
            out[ep.name] = ep.load()
        except Exception as e:  # a broken plug-in must not break the tool
            _LOG.warning("skipping plug-in %s=%s of group %s: %s", ep.name, ep.value, group, e)
    return out
