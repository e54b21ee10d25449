"""Test-suite settings. The mirror check (a second ResUNet pass in every ``predict``) is switched
off for the suite's many end-to-end runs, to keep CI within its time; the tests of the check turn
it back on (``test_robustness.py``: its measure on real heads, and ``predict`` with it on)."""
import os

os.environ["BRAINAGE_MIRROR_CHECK"] = "0"     # before BrainAgeLib.pipeline is imported; workers inherit it
