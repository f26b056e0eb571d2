"""Test helpers that ship with the package: a tiny Qwen2-VL checkpoint built locally.

The names are imported on first use.
"""

from typing import TYPE_CHECKING

from habitat_eqarm._lazy import lazy_exports

if TYPE_CHECKING:
    from habitat_eqarm.testing.tiny_model import make_processor, make_tiny_model, make_tokenizer

__all__ = ["make_processor", "make_tiny_model", "make_tokenizer"]

__getattr__, __dir__ = lazy_exports(__name__, __all__)
