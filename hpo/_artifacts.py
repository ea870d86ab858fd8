"""Each trial's plots and best weights as Optuna artifacts, so ``optuna-dashboard`` shows them.

With ``artifacts: true`` in the study file, :class:`ArtifactHook` uploads the trial's plots
(``*.png``, ``*.svg``, ``*.pdf``) and best weights (``*.safetensors``) through
:func:`optuna.artifacts.upload_artifact` into a :class:`~optuna.artifacts.FileSystemArtifactStore`
at ``<output_dir>/<study>/artifacts``, before the trial's outcome is told. Serve them with::

    optuna-dashboard sqlite:///outputs/decoder/study.db --artifact-dir outputs/decoder/artifacts

The store holds copies: collation later removes the trial folders' weights outside the top k,
not the uploaded copies (they are what the dashboard shows).
"""

from __future__ import annotations

import logging
import mimetypes
import warnings
from pathlib import Path

import optuna

from hpo.objective import TrialHook, TrialOutcome

__all__ = ["ARTIFACT_DIR", "ArtifactHook", "artifact_store"]

_LOG = logging.getLogger(__name__)

#: Folder of the artifact store inside ``<output_dir>/<study>``.
ARTIFACT_DIR = "artifacts"


def artifact_store(study_dir: Path) -> optuna.artifacts.FileSystemArtifactStore:
    """The study's artifact store, ``<study_dir>/artifacts`` (created)."""
    path = Path(study_dir) / ARTIFACT_DIR
    path.mkdir(parents=True, exist_ok=True)
    return optuna.artifacts.FileSystemArtifactStore(str(path))


class ArtifactHook(TrialHook):
    """Uploads a trial's plots and best weights as Optuna artifacts when it ends (any state).

    Args:
        study_dir: ``<output_dir>/<study>``; the store is ``<study_dir>/artifacts``.
    """

    def __init__(self, study_dir: Path) -> None:
        self.store = artifact_store(study_dir)
        self._run_dir: Path | None = None

    def on_trial_start(self, trial: optuna.Trial, run_dir: Path, resume: bool) -> None:
        self._run_dir = Path(run_dir)

    def on_trial_end(self, trial: optuna.Trial, outcome: TrialOutcome) -> None:
        from hpo.collate import PLOT_PATTERNS, WEIGHT_PATTERNS

        run_dir, self._run_dir = self._run_dir, None
        if run_dir is None:
            return
        files = sorted({f for p in (*PLOT_PATTERNS, *WEIGHT_PATTERNS) for f in run_dir.glob(p)})
        for f in files:
            mimetype = mimetypes.guess_type(f.name)[0] or "application/octet-stream"
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    optuna.artifacts.upload_artifact(
                        artifact_store=self.store, file_path=str(f), study_or_trial=trial, mimetype=mimetype
                    )
            except Exception as e:  # noqa: BLE001 (a full disk must not fail the trial)
                _LOG.warning("trial %d: could not register artifact %s (%s: %s)", trial.number, f.name, type(e).__name__, e)
