#!/usr/bin/env python3
"""Take the Smart Turn v3.2 ONNX model (and its licence) out of the pipecat-ai wheel.

Usage: python scripts/fetch_smart_turn.py [--dest DIR]

The model ships inside the ``pipecat-ai`` wheel on PyPI. This script downloads
that one wheel (``pip download --no-deps``, the interpreter's own pip and index
settings), unzips only the model and the licence into the VoxMesh models
directory (``voxmesh.models.models_dir()``), checks the model's size and
sha256, and deletes the wheel. Pipecat is never installed or imported. It does
nothing when a verified copy is already there.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voxmesh.models import (  # noqa: E402 - needs the repository root on sys.path first
    SMART_TURN_FILE,
    SMART_TURN_SHA256,
    SMART_TURN_SIZE,
    models_dir,
)

WHEEL = "pipecat-ai==1.14.0"
MEMBER = "pipecat/audio/turn/smart_turn/data/" + SMART_TURN_FILE
LICENSE_MEMBER = "pipecat_ai-1.14.0.dist-info/licenses/LICENSE"
LICENSE_FILE = "smart-turn-LICENSE.txt"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_valid(path: Path) -> bool:
    """True when ``path`` is the expected model file."""
    return (
        path.is_file()
        and path.stat().st_size == SMART_TURN_SIZE
        and sha256_of(path) == SMART_TURN_SHA256
    )


def fetch(dest: Path) -> Path:
    """Make sure ``dest`` holds the verified model; return its path."""
    target = dest / SMART_TURN_FILE
    if is_valid(target):
        return target
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", WHEEL, "-d", tmp],
            check=True,
        )
        wheels = sorted(Path(tmp).glob("pipecat_ai-*.whl"))
        if not wheels:
            raise SystemExit(f"smart turn: pip download {WHEEL} produced no wheel")
        with zipfile.ZipFile(wheels[0]) as wheel:
            partial = target.with_suffix(".part")
            with wheel.open(MEMBER) as src, partial.open("wb") as out:
                shutil.copyfileobj(src, out)
            if not is_valid(partial):
                partial.unlink()
                raise SystemExit(f"smart turn: {MEMBER} in {wheels[0].name} failed verification")
            partial.replace(target)  # atomic: a reader never sees half a model
            if LICENSE_MEMBER in wheel.namelist():
                (dest / LICENSE_FILE).write_bytes(wheel.read(LICENSE_MEMBER))
    print(f"smart turn: extracted {target}", file=sys.stderr)
    return target


def main() -> None:
    """Parse arguments and fetch."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=None,
                        help="directory for the model (default: the VoxMesh models directory)")
    args = parser.parse_args()
    fetch(args.dest or models_dir())


if __name__ == "__main__":
    main()
