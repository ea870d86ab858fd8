"""Real spectra -> the dataset contract, with the generator's grouping and units.

``python -m fspnet.preprocess --spectra DIR --out F.h5 [--skip-bad]``

For every OGIP PHA spectrum in ``DIR`` (backgrounds, i.e. files named by another spectrum's
``BACKFILE``, with ``HDUCLAS2 = 'BKG'`` or named like ``*_bkg.*``, are used as backgrounds only):

- the net rate per channel is the XSPEC one,
  ``S / (a_s t_s) - (b_s / b_b) * B / (a_b t_b)``, where ``S``/``B`` are source/background counts,
  ``t`` the ``EXPOSURE``, ``b`` the ``BACKSCAL`` and ``a`` the ``AREASCAL`` of each file. FSP-Net's
  original code divided the source counts by the *background* exposure and the background
  counts by the *source* exposure (the two were swapped in a call) and ignored ``BACKSCAL``;
  this is the corrected form, so spectra whose two exposures differ will not match FSP-Net's
  numbers;
- channels are summed into FSP-Net's 240 groups (:meth:`fspnet.response.Grouping.fspnet`) and
  divided by the number of detectors and the group width (counts s^-1 keV^-1 detector^-1), as
  :mod:`fspnet.synthesize` does. The detector count comes from ``_dNN`` in the ``RESPFILE``
  name (FSP-Net's convention) or else from ``--detectors``; without either, 52 is assumed and
  a warning lists the files it was assumed for;
- a spectrum whose ``BACKFILE`` is empty or ``none`` (common for NICER, whose background is
  modelled separately) is skipped with that reason unless ``--allow-no-background`` is given;
- uncertainties are ``sqrt(max(S + (scale t_s / t_b)^2 B, 1)) / t_s`` per group, in the same
  units (the generator's formula).

A file that cannot be used (no ``EXPOSURE``, a keyword of the wrong type, background missing,
channel count that does not match, non-finite counts, truncated or unreadable) is reported with
its name and the reason; the good files are still written (atomically).

Exit status: 0 every spectrum was used; 3 some were skipped (0 with ``--skip-bad``); 4 nothing
usable, nothing written; 2 bad usage (arguments, no such folder, no spectra in it).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import sys
import typing as tp
from pathlib import Path

import numpy as np
from astropy.io import fits
from tqdm import tqdm

from fspnet import __version__
from fspnet.data import SpectrumDataset, write_dataset
from fspnet.errors import DataError, FspnetError
from fspnet.response import Grouping, Pha, read_pha

__all__ = [
    "DEFAULT_DETECTORS",
    "EXIT_NOTHING_USABLE",
    "EXIT_OK",
    "EXIT_SOME_SKIPPED",
    "EXIT_USAGE",
    "BadSpectrum",
    "PreprocessResult",
    "correct_spectrum",
    "detectors_from_response",
    "main",
    "preprocess",
]

_log = logging.getLogger(__name__)

SPECTRUM_UNIT = "counts s^-1 keV^-1 detector^-1"
PATTERNS = ("*.pha", "*.pi", "*.fits", "*.fit", "*.fak", "*.pha.gz", "*.pi.gz", "*.fits.gz")
_DETECTORS = re.compile(r"_d(\d+)")
_BKG_NAME = re.compile(r"(^|[_.\-])bkg([_.\-]|$)")  # obs_bkg.pha, bkg.pi; not "nobkg.pha"
DEFAULT_DETECTORS = 52  # NICER XTI's usual count of active detectors (FSP-Net's default)

# Exit statuses of ``python -m fspnet.preprocess`` (1 is left to Python's own uncaught errors).
EXIT_OK = 0
EXIT_USAGE = 2
EXIT_SOME_SKIPPED = 3
EXIT_NOTHING_USABLE = 4


@dataclasses.dataclass(frozen=True)
class BadSpectrum:
    """A spectrum that was left out, and why."""

    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


@dataclasses.dataclass
class PreprocessResult:
    """What :func:`preprocess` made: the dataset of good spectra (``None`` if none) and the bad files."""

    dataset: SpectrumDataset | None
    bad: list[BadSpectrum]


def detectors_from_response(respfile: str) -> int | None:
    """The detector count in a NICER response name such as ``nixti_d52.rmf`` (``None`` if absent)."""
    m = _DETECTORS.search(Path(respfile).name)
    return int(m.group(1)) if m else None


def correct_spectrum(
    source: Pha,
    background: Pha | None,
    grouping: Grouping,
    detectors: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Background-subtract, group and normalise one spectrum.

    Args:
        source: the source spectrum.
        background: its background spectrum, or ``None`` (no subtraction).
        grouping: channel grouping (e.g. ``Grouping.fspnet()``).
        detectors: number of detectors to divide by.

    Returns:
        ``(spectrum, uncertainty)``: [G] counts s^-1 keV^-1 detector^-1 each.

    Raises:
        DataError: if the channels do not match each other or the grouping, or a value is not finite.
    """
    where = Path(source.path).name
    if not np.all(np.isfinite(source.counts)):
        raise DataError(f"non-finite counts in {where} ({int((~np.isfinite(source.counts)).sum())} channels)")
    ts = source.exposure
    a_s = np.asarray(source.areascal, dtype=np.float64)
    try:
        g_src = grouping.matrix(source.channels)
    except FspnetError as e:
        raise DataError(f"channel count does not match the grouping: {e}") from None
    net_rate = source.counts / (a_s * ts)
    var_counts = source.counts.copy()  # in source-count units
    if background is not None:
        bwhere = Path(background.path).name
        if len(background.channels) != len(source.channels) or not np.array_equal(background.channels, source.channels):
            raise DataError(
                f"channel count does not match: {where} has {len(source.channels)} channels, "
                f"background {bwhere} has {len(background.channels)}"
            )
        if not np.all(np.isfinite(background.counts)):
            raise DataError(f"non-finite counts in background {bwhere}")
        scale = np.asarray(source.backscal, dtype=np.float64) / np.asarray(background.backscal, dtype=np.float64)
        if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            raise DataError(f"BACKSCAL of {where} / {bwhere} is not a positive number")
        a_b = np.asarray(background.areascal, dtype=np.float64)
        net_rate = net_rate - scale * background.counts / (a_b * background.exposure)
        alpha = scale * ts / background.exposure  # weight of one background count in source counts
        var_counts = var_counts + alpha**2 * background.counts
    width = grouping.energy_widths
    spectrum = np.asarray(net_rate @ g_src) / (detectors * width)
    sigma = np.sqrt(np.maximum(np.asarray(var_counts @ g_src), 1.0)) / (ts * detectors * width)
    if not (np.all(np.isfinite(spectrum)) and np.all(np.isfinite(sigma))):
        raise DataError(f"non-finite values after background subtraction in {where}")
    with np.errstate(over="ignore"):
        fits_float32 = np.all(np.isfinite(spectrum.astype(np.float32))) and np.all(np.isfinite(sigma.astype(np.float32)))
    if not fits_float32:  # the dataset stores float32: such a file would sink the whole dataset
        raise DataError(
            f"values beyond float32 range in {where} (largest |rate| {float(np.max(np.abs(spectrum))):.3g}); "
            "check EXPOSURE, AREASCAL and the counts"
        )
    return spectrum, sigma


def _is_background(path: Path, header: fits.Header) -> bool:
    return str(header.get("HDUCLAS2", "")).strip().upper() == "BKG" or bool(_BKG_NAME.search(path.name.lower()))


def _spectrum_files(directory: Path, patterns: tp.Sequence[str]) -> tuple[list[Path], set[str]]:
    """Candidate source spectra (sorted) and the names every spectrum uses as its background."""
    files = sorted({p for pattern in patterns for p in directory.glob(pattern) if p.is_file()})
    sources, backfiles = [], set()
    for path in files:
        try:
            with fits.open(path, memmap=False) as hdul:
                if "SPECTRUM" not in hdul:
                    if any(n in hdul for n in ("MATRIX", "SPECRESP", "EBOUNDS", "SPECRESP MATRIX")):
                        continue  # a response file: not a spectrum
                    sources.append(path)  # reported as bad when read
                    continue
                header = hdul["SPECTRUM"].header
                back = str(header.get("BACKFILE", "")).strip()
                is_background = _is_background(path, header)
        except Exception:  # noqa: BLE001  # damaged in any way: read_pha reports it by name
            sources.append(path)
            continue
        if back and back.lower() != "none":
            backfiles.add(Path(back).name)
        if not is_background:
            sources.append(path)
    return [p for p in sources if p.name not in backfiles], backfiles


def preprocess(
    spectra_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    detectors: float | None = None,
    background_dir: str | os.PathLike[str] | None = None,
    allow_no_background: bool = False,
    patterns: tp.Sequence[str] = PATTERNS,
    grouping: Grouping | None = None,
    progress: bool = True,
) -> PreprocessResult:
    """Preprocess every spectrum in ``spectra_dir``; write the good ones to ``out`` (atomically).

    Args:
        spectra_dir: folder of OGIP PHA files (and their backgrounds).
        out: HDF5 dataset to write, or ``None``. Nothing is written when no spectrum is good.
        detectors: detector count when the ``RESPFILE`` name has no ``_dNN`` (default 52, with
            a warning that names the files it was assumed for).
        background_dir: where ``BACKFILE`` names are looked up (default: ``spectra_dir``).
        allow_no_background: accept spectra whose ``BACKFILE`` is empty or ``none`` (no
            subtraction) instead of reporting them as bad.
        patterns: glob patterns of candidate files.
        grouping: channel grouping (default :meth:`Grouping.fspnet`).
        progress: show a tqdm progress bar.

    Returns:
        The :class:`PreprocessResult` (dataset of good spectra, list of bad files).

    Raises:
        DataError: if ``spectra_dir`` is not a folder or holds no spectra.

    Example:
        >>> result = preprocess("spectra/", "real.h5")  # doctest: +SKIP
        >>> [str(b) for b in result.bad]  # doctest: +SKIP
        ['obs3.pha: missing EXPOSURE keyword in the SPECTRUM extension']
    """
    directory = Path(spectra_dir)
    if not directory.is_dir():
        raise DataError(f"{directory}: spectra folder not found")
    bkg_dir = Path(background_dir) if background_dir is not None else directory
    grouping = Grouping.fspnet() if grouping is None else grouping
    files, _ = _spectrum_files(directory, patterns)
    if not files:
        raise DataError(f"{directory}: no spectra matching {', '.join(patterns)}")
    rows: list[tuple[np.ndarray, np.ndarray]] = []
    names: list[str] = []
    info: list[dict[str, tp.Any]] = []
    bad: list[BadSpectrum] = []
    assumed_detectors: list[str] = []
    for path in tqdm(files, unit="spectra", desc="preprocess", disable=not progress, leave=False):
        try:
            src = read_pha(path)
            background = None
            if src.backfile:
                bpath = bkg_dir / src.backfile
                if not bpath.is_file():
                    bpath = bkg_dir / Path(src.backfile).name
                if not bpath.is_file():
                    raise DataError(f"background file {src.backfile!r} not found in {bkg_dir}")
                background = read_pha(bpath)
            elif not allow_no_background:
                raise DataError("missing background (BACKFILE is empty or 'none'; use --allow-no-background to keep it)")
            from_name = detectors_from_response(src.respfile) if src.respfile else None
            det_source = "respfile" if from_name is not None else ("config" if detectors is not None else "default")
            n_det: float = from_name if from_name is not None else (DEFAULT_DETECTORS if detectors is None else detectors)
            spectrum, sigma = correct_spectrum(src, background, grouping, n_det)
        except FspnetError as e:
            # ResponseError messages already start with the file path; keep just the reason.
            reason = str(e).removeprefix(f"{path}: ")
            bad.append(BadSpectrum(path.name, reason))
            _log.debug("preprocess: skipping %s: %s", path.name, reason)
            continue
        except Exception as e:  # noqa: BLE001  # one broken file must never cost the others
            reason = f"unreadable ({type(e).__name__}: {str(e).strip() or 'no message'})"
            bad.append(BadSpectrum(path.name, reason))
            _log.debug("preprocess: skipping %s", path.name, exc_info=True)
            continue
        if det_source == "default":
            assumed_detectors.append(path.name)
        rows.append((spectrum, sigma))
        names.append(path.stem)
        info.append(
            {
                "file": path.name,
                "exposure_s": src.exposure,
                "background": None if background is None else Path(background.path).name,
                "background_exposure_s": None if background is None else background.exposure,
                "detectors": n_det,
                "detectors_from": det_source,
                "bad_quality_channels": int(np.count_nonzero(src.quality)) if src.quality is not None else 0,
                **{k.lower(): v for k, v in src.header.items() if k in ("OBJECT", "OBS_ID", "DATE-OBS")},
            }
        )
    if assumed_detectors:
        shown = ", ".join(assumed_detectors[:5]) + (
            f" and {len(assumed_detectors) - 5} more" if len(assumed_detectors) > 5 else ""
        )
        _log.warning(
            "preprocess: assumed %d detectors for %d spectr%s whose RESPFILE name carries no _dNN (%s); "
            "if another number of detectors was active, pass --detectors N (preprocess(detectors=N))",
            DEFAULT_DETECTORS,
            len(assumed_detectors),
            "um" if len(assumed_detectors) == 1 else "a",
            shown,
        )
    if not rows:
        return PreprocessResult(None, bad)
    ds = SpectrumDataset(
        spectra=np.stack([r[0] for r in rows]).astype(np.float32),
        energy_centres=grouping.energy_centres,
        energy_widths=grouping.energy_widths,
        uncertainties=np.stack([r[1] for r in rows]).astype(np.float32),
        names=names,
        units={"spectra": SPECTRUM_UNIT, "uncertainties": SPECTRUM_UNIT, "energy": "keV"},
        source={
            "generator": "fspnet.preprocess",
            "fspnet_version": __version__,
            "spectra_dir": str(directory),
            "background": "XSPEC: S/(a_s t_s) - (b_s/b_b) B/(a_b t_b)",
            "grouping": "fspnet: PI groups 2/3/4/5/6/2 at 20/248/600/1200/1494, 0.3-10 keV, first 240",
            "files": info,
            "bad": [dataclasses.asdict(b) for b in bad],
        },
    )
    if out is not None:
        write_dataset(out, ds)
    return PreprocessResult(ds, bad)


def main(argv: list[str] | None = None) -> int:
    """``python -m fspnet.preprocess``: parse arguments, call :func:`preprocess`, report.

    Returns:
        0 all spectra used, 3 some skipped (0 with ``--skip-bad``), 4 nothing usable, 2 bad usage.
    """
    parser = argparse.ArgumentParser(
        prog="python -m fspnet.preprocess",
        description=__doc__.splitlines()[0],
        epilog=(
            f"exit status: {EXIT_OK} every spectrum was used; {EXIT_SOME_SKIPPED} some files were skipped "
            f"(each reported with its reason; {EXIT_OK} with --skip-bad); {EXIT_NOTHING_USABLE} no usable "
            f"spectrum, nothing written; {EXIT_USAGE} bad usage (arguments, folder missing or without spectra)"
        ),
    )
    parser.add_argument("--spectra", type=Path, required=True, help="folder of OGIP PHA spectra")
    parser.add_argument("--out", type=Path, required=True, help="output HDF5 dataset")
    parser.add_argument("--skip-bad", action="store_true", help=f"exit {EXIT_OK} even when some files are bad")
    parser.add_argument(
        "--detectors",
        type=float,
        default=None,
        help=f"detectors when the RESPFILE name has no _dNN (default {DEFAULT_DETECTORS}, with a warning)",
    )
    parser.add_argument("--background-dir", type=Path, default=None, help="where BACKFILEs are (default: --spectra)")
    parser.add_argument(
        "--allow-no-background",
        action="store_true",
        help="keep spectra whose BACKFILE is empty or 'none' (no subtraction) instead of skipping them",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        result = preprocess(
            args.spectra,
            args.out,
            detectors=args.detectors,
            background_dir=args.background_dir,
            allow_no_background=args.allow_no_background,
            progress=not args.no_progress,
        )
    except FspnetError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    for b in result.bad:
        print(f"bad spectrum: {b}", file=sys.stderr)
    if result.dataset is None:
        print(f"error: no usable spectra in {args.spectra}; nothing written", file=sys.stderr)
        return EXIT_NOTHING_USABLE
    print(f"wrote {args.out}: {len(result.dataset)} spectra, {len(result.bad)} bad")
    return EXIT_SOME_SKIPPED if result.bad and not args.skip_bad else EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
