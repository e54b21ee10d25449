"""A tiny BIDS dataset made from the committed IXI fixtures (shared by test_bids and test_cohort).

sub-01 has two sessions (ages in sub-01_sessions.tsv: 49.5 and 51.25 years; the second scan is
run-1), sub-02 none (age 38.78 in participants.tsv)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCANS = {
    "sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz": ROOT / "Testing" / "data" / "IXI013-HH-1212_T1.nii.gz",
    "sub-01/ses-2/anat/sub-01_ses-2_run-1_T1w.nii.gz": ROOT / "Testing" / "data" / "IXI014-HH-1236_T1.nii.gz",
    "sub-02/anat/sub-02_T1w.nii.gz": ROOT / "BrainAge" / "Resources" / "SampleData" / "IXI012-HH-1211_T1.nii.gz",
}
AGES = {"sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz": 49.5,
        "sub-01/ses-2/anat/sub-01_ses-2_run-1_T1w.nii.gz": 51.25,
        "sub-02/anat/sub-02_T1w.nii.gz": 38.78}


def make_dataset(root: Path) -> Path:
    """Write the dataset under ``root`` and return it."""
    for rel, src in SCANS.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, root / rel)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "tiny", "BIDSVersion": "1.10.0"}))
    (root / "participants.tsv").write_text("participant_id\tage\tsex\nsub-01\t47\tF\nsub-02\t38.78\tM\n")
    (root / "sub-01" / "sub-01_sessions.tsv").write_text("session_id\tage\nses-1\t49.5\nses-2\t51.25\n")
    return root
