"""What several commands share: the default (tiny, untrained) model and progress bars."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from habitat_eqarm.data.io import cache_dir

UNTRAINED_WARNING = (
    "NOTE: no --model given, so this runs the tiny Qwen2-VL built locally with RANDOM weights. "
    "It is untrained: its critiques are noise and it rarely writes a well-formed score. Pass "
    "--model PATH_OR_ID (e.g. Qwen/Qwen2-VL-2B-Instruct or a trained EQA-RM) for real scores."
)


def default_model(seed: int = 0) -> str:
    """The tiny model's folder, built once (atomically: a temporary folder, then rename).

    The tiny model's builder lives in :mod:`habitat_eqarm.testing`, the tests' helper package.
    This is the one place in the product path that imports it, and only here, lazily: it runs
    when a command is given no ``--model`` (the user asked for the tiny untrained model, and
    :func:`resolve_model` says so). ``tests/test_layers.py`` allows this import and no other.
    """
    from habitat_eqarm.testing import make_tiny_model
    from habitat_eqarm.testing.tiny_model import TINY_MODEL_VERSION

    target = cache_dir() / f"tiny-qwen2-vl-v{TINY_MODEL_VERSION}-seed{seed}"
    if not (target / "model.safetensors").is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tiny-", dir=target.parent))
        try:
            make_tiny_model(tmp, seed=seed)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def resolve_model(model: str | None) -> tuple[str, bool]:
    """``(model, is_default)``: the given path or id, or the tiny default with a warning."""
    if model:
        return model, False
    print(UNTRAINED_WARNING)
    return default_model(), True


def progress_bar(total: int, desc: str):
    """A tqdm bar (on stderr) for long loops."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="inst", dynamic_ncols=True)
