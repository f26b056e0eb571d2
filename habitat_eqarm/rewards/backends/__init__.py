"""Reward-model backends: ``hf`` (local transformers), ``vllm`` (in-process vLLM), ``openai``
(any OpenAI-compatible chat endpoint). See :mod:`.base` for the interface.

The interface is exported here (imported on first use); a backend itself comes from
``load_backend(name, model)``, which imports only the module of the backend it opens.
"""

from typing import TYPE_CHECKING

from habitat_eqarm._lazy import lazy_exports

if TYPE_CHECKING:
    from habitat_eqarm.rewards.backends.base import (
        BACKENDS,
        MAX_PIXELS,
        MIN_PIXELS,
        GenerationRequest,
        GenerationResult,
        RewardBackend,
        SamplingParams,
        backend_kwargs,
        load_backend,
        pixel_size,
        register_backend,
    )

__all__ = [
    "BACKENDS",
    "MAX_PIXELS",
    "MIN_PIXELS",
    "GenerationRequest",
    "GenerationResult",
    "RewardBackend",
    "SamplingParams",
    "backend_kwargs",
    "load_backend",
    "pixel_size",
    "register_backend",
]

__getattr__, __dir__ = lazy_exports(__name__, __all__)
