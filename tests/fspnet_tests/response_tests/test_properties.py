"""Property tests (Hypothesis) of the FITS readers and fspnet.preprocess on damaged real files.

Whatever is done to one file (cut short at any byte, a keyword of the wrong type, NaN in random
channels), reading it ends in a result or a ResponseError naming it, never another exception,
and preprocessing a folder still keeps the good spectrum beside it.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fspnet.errors import ResponseError
from fspnet.preprocess import preprocess
from fspnet.response import read_arf, read_pha, read_rmf
from tests.fspnet_tests.response_tests.fits_helpers import write_arf, write_pha, write_rmf

N_CHANNELS = 1501
PROPERTY = settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
pytestmark = [
    pytest.mark.filterwarnings("ignore:File may have been truncated"),
    pytest.mark.filterwarnings("ignore::astropy.io.fits.verify.VerifyWarning"),
    pytest.mark.filterwarnings("ignore::astropy.utils.exceptions.AstropyUserWarning"),
]


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    """A good source + background pair, and a valid source / RMF / ARF to damage."""
    rng = np.random.default_rng(7)
    folder = tmp_path_factory.mktemp("templates")
    good = folder / "good"
    good.mkdir()
    write_pha(good / "good.pha", rng.poisson(30.0, N_CHANNELS), backfile="good_bkg.pha", respfile="ni_d52.rmf")
    write_pha(good / "good_bkg.pha", rng.poisson(8.0, N_CHANNELS), exposure=4000.0, hduclas2="BKG")
    victim = write_pha(folder / "victim.pha", rng.poisson(20.0, N_CHANNELS), backfile="good_bkg.pha", respfile="ni_d52.rmf")
    edges = np.linspace(0.2, 12.0, 81)
    matrix = rng.random((80, 50))
    matrix[matrix < 0.5] = 0.0
    rmf = write_rmf(folder / "r.rmf", edges, matrix)
    arf = write_arf(folder / "a.arf", edges, np.linspace(10.0, 100.0, 80))
    return {"good": good, "victim": victim, "rmf": rmf, "arf": arf}


def _preprocess_beside_good(templates, make_victim) -> tuple[list[str], dict[str, str]]:
    """Copy the good pair into a fresh folder, add the damaged file, preprocess; names and bad reasons."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for p in templates["good"].iterdir():
            shutil.copy(p, folder)
        make_victim(folder / "victim.pha")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = preprocess(folder, folder / "out.h5", progress=False)
        assert result.dataset is not None and (folder / "out.h5").is_file()
        return list(result.dataset.names), {b.name: b.reason for b in result.bad}


def _check_outcome(names: list[str], bad: dict[str, str]) -> None:
    assert "good" in names, "the good spectrum beside a damaged one was lost"
    assert ("victim" in names) != ("victim.pha" in bad), "the damaged file must be used or reported, once"
    if "victim.pha" in bad:
        assert bad["victim.pha"].strip()


@PROPERTY
@given(cut=st.integers(min_value=0, max_value=20160))
def test_truncated_pha_never_costs_the_good_file(templates, cut):
    data = templates["victim"].read_bytes()
    names, bad = _preprocess_beside_good(templates, lambda p: p.write_bytes(data[:cut]))
    _check_outcome(names, bad)
    if cut < 2 * 2880 + N_CHANNELS * 8:  # headers or table rows missing: cannot be used
        assert "victim.pha" in bad


_TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=12)
_VALUES = st.one_of(
    _TEXT,
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
)
_KEYS = st.sampled_from(["EXPOSURE", "BACKSCAL", "AREASCAL", "DETCHANS", "TLMIN1", "QUALITY", "RESPFILE", "POISSERR"])


@PROPERTY
@given(key=_KEYS, value=_VALUES)
def test_keyword_of_any_type_never_costs_the_good_file(templates, key, value):
    with tempfile.TemporaryDirectory() as tmp:
        edited = Path(tmp) / "victim.pha"
        shutil.copy(templates["victim"], edited)
        try:
            with fits.open(edited, mode="update") as hdul:
                hdul["SPECTRUM"].header[key] = value
        except (ValueError, TypeError):
            assume(False)  # astropy itself refuses to write such a header: not a file a user can have
        data = edited.read_bytes()
    names, bad = _preprocess_beside_good(templates, lambda p: p.write_bytes(data))
    _check_outcome(names, bad)
    if key in ("EXPOSURE", "BACKSCAL", "AREASCAL", "DETCHANS") and isinstance(value, (str, bool)):
        try:
            float(value) if isinstance(value, str) else float("x")
        except ValueError:
            assert f"{key} must be a number" in bad["victim.pha"]


@PROPERTY
@given(
    channels=st.lists(st.integers(min_value=0, max_value=N_CHANNELS - 1), min_size=1, max_size=20),
    value=st.sampled_from([np.nan, np.inf, -np.inf]),
)
def test_nonfinite_counts_are_reported(templates, channels, value):
    counts = np.random.default_rng(3).poisson(20.0, N_CHANNELS).astype(np.float64)
    counts[channels] = value
    names, bad = _preprocess_beside_good(
        templates, lambda p: write_pha(p, counts, rate=True, backfile="good_bkg.pha", respfile="ni_d52.rmf")
    )
    _check_outcome(names, bad)
    assert bad["victim.pha"].startswith("non-finite counts in victim.pha")


@PROPERTY
@given(which=st.sampled_from(["rmf", "arf", "victim"]), cut=st.floats(min_value=0.0, max_value=1.0))
def test_readers_raise_only_response_errors_on_truncation(templates, which, cut):
    data = templates[which].read_bytes()
    reader = {"rmf": read_rmf, "arf": read_arf, "victim": read_pha}[which]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"cut.{which}"
        path.write_bytes(data[: int(len(data) * cut)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                reader(path)
            except ResponseError as e:
                assert str(e).startswith(str(path))
