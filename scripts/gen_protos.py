#!/usr/bin/env python3
"""Regenerate the Python stubs in voxmesh/v1 from protos/voxmesh/v1/*.proto.

Usage: python scripts/gen_protos.py [--check]

--check generates into a temporary directory and exits 1 if the committed
stubs differ, so CI fails when someone edits a .proto without regenerating.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PACKAGE_DIR = Path("voxmesh") / "v1"


def generate(out_dir: Path) -> list[Path]:
    """Run protoc for every .proto file and return the generated files."""
    protos = sorted((PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))
    (out_dir / PACKAGE_DIR).mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(p.relative_to(PROTO_ROOT)) for p in protos),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    init = out_dir / PACKAGE_DIR / "__init__.py"
    init.write_text('"""Generated gRPC stubs for voxmesh.v1 (scripts/gen_protos.py)."""\n')
    return sorted(p for p in (out_dir / PACKAGE_DIR).iterdir() if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if committed stubs are stale")
    opts = parser.parse_args()
    if not opts.check:
        for path in generate(ROOT):
            print(f"wrote {path.relative_to(ROOT)}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        stale = [
            str(PACKAGE_DIR / p.name)
            for p in fresh
            if not (ROOT / PACKAGE_DIR / p.name).exists()
            or not filecmp.cmp(p, ROOT / PACKAGE_DIR / p.name, shallow=False)
        ]
    if stale:
        print("stale generated stubs (run: python scripts/gen_protos.py):", *stale, sep="\n  ")
        return 1
    print("generated stubs are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
