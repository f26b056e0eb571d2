"""Test helpers that ship with the package: a tiny Qwen2-VL checkpoint built locally."""

from habitat_eqarm.testing.tiny_model import make_processor, make_tiny_model, make_tokenizer

__all__ = ["make_processor", "make_tiny_model", "make_tokenizer"]
