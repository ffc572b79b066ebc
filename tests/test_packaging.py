"""A built wheel carries what the package needs at run time: the bundled models by name."""

import subprocess
import sys
import zipfile
from pathlib import Path

from dynnmr.modelfile import BUNDLED_DIR

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_bundled_models_and_example_data(tmp_path):
    # A non-editable install (pip install dynnmr / .) sees only the wheel's files; without
    # the models `dynnmr analyze` has no default model. Built from the working tree
    # without network or build isolation (setuptools is in the test environment).
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("dynnmr-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    bundled = {f"dynnmr/data/models/{p.name}" for p in BUNDLED_DIR.iterdir() if p.is_file()}
    assert {"dynnmr/data/models/sio2.pt", "dynnmr/data/models/silicate-29si.pt"} <= bundled
    assert bundled <= names, sorted(bundled - names)
    assert {"dynnmr/data/alpha_quartz.extxyz", "dynnmr/data/alpha_cristobalite.extxyz"} <= names
