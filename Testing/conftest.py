"""Test-suite settings. The mirror check (a second ResUNet pass in every ``predict``) is switched
off for the suite's many end-to-end runs, to keep CI within its time; the tests of the check turn
it back on (``test_robustness.py``: its measure on real heads, and ``predict`` with it on).

Under pytest-xdist (``make test``: two processes on CI's two cores) each process and the
commands it starts use one thread for torch and ITK: two processes of two threads each on two
cores took a fifth longer per scan."""
import locale
import os

import pytest

os.environ["BRAINAGE_MIRROR_CHECK"] = "0"     # before BrainAgeLib.pipeline is imported; workers inherit it
if os.environ.get("PYTEST_XDIST_WORKER"):      # before torch and SimpleITK are imported
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
        os.environ.setdefault(name, "1")


@pytest.fixture(autouse=True)
def _keep_the_locale():
    """ITK's GDCM writer, which tests use to make DICOM series, leaves the process in the C locale
    (ASCII text by default) and a later test in the same process would read UTF-8 as ASCII.
    BrainAge's DICOM reading leaves the locale alone (``test_readers.py``)."""
    before = locale.setlocale(locale.LC_CTYPE)
    yield
    if locale.setlocale(locale.LC_CTYPE) != before:
        locale.setlocale(locale.LC_CTYPE, before)
