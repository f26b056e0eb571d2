"""The backend interface: turn chat requests with frames into K sampled texts each.

A backend knows nothing of EQA: :class:`~habitat_eqarm.rewards.model.EQARewardModel` builds the
prompt, picks the frames and parses the answers. Backends register by name in
:data:`BACKENDS`: ``hf`` (local transformers), ``vllm`` (in-process vLLM) and ``openai`` (any
OpenAI-compatible endpoint, our own ``eqarm serve`` included). Every backend opened by name,
from the library or any command, comes from :func:`load_backend`; its options from a flag or a
config file are read by :func:`backend_kwargs`.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: The per-frame pixel cap of the paper (Qwen2-VL's processor resizes each frame to at most
#: this many pixels), and the processor's floor.
MAX_PIXELS = 401_408
MIN_PIXELS = 56 * 56


def pixel_size(max_pixels: int) -> dict[str, int]:
    """Qwen2-VL processor bounds: each frame resized to at most ``max_pixels`` pixels.

    transformers' current form of the bounds (``size``); passing ``max_pixels`` /
    ``min_pixels`` to a processor call is deprecated.
    """
    return {"longest_edge": int(max_pixels), "shortest_edge": MIN_PIXELS}


@dataclass
class GenerationRequest:
    """One prompt: chat ``messages`` and its frames, as images or as one video ``(T, H, W, 3)``.

    ``prompt_id`` names the prompt's wording (:attr:`Prompt.id`) for caches and records.
    """

    messages: list[dict[str, Any]]
    frames: np.ndarray
    as_video: bool = False
    prompt_id: str = ""


@dataclass
class SamplingParams:
    """How to sample: K texts per request; ``temperature == 0`` means greedy."""

    k: int = 1
    temperature: float = 0.8
    top_p: float = 0.9
    max_new_tokens: int = 512
    seed: int | None = None


@dataclass
class GenerationResult:
    """The K texts of one request and where its time went (seconds, shared across a batch)."""

    texts: list[str]
    timings: dict[str, float] = field(default_factory=dict)


class RewardBackend(ABC):
    """A text generator over images; subclasses implement :meth:`sample`."""

    name: str = "base"
    model_id: str = ""

    def generate(
        self, requests: Sequence[GenerationRequest], params: SamplingParams
    ) -> list[GenerationResult]:
        """K texts for each request, in order.

        Greedy decoding (``temperature <= 0``) gives K identical texts, so the backend is asked
        for one per request and it is repeated K times: no backend decodes, sends or caches a
        greedy text twice. Sampling asks the backend for all K.
        """
        if params.temperature > 0 or params.k == 1:
            return self.sample(requests, params)
        once = self.sample(requests, dataclasses.replace(params, k=1))
        return [GenerationResult(r.texts * params.k, r.timings) for r in once]

    @abstractmethod
    def sample(
        self, requests: Sequence[GenerationRequest], params: SamplingParams
    ) -> list[GenerationResult]:
        """``params.k`` texts for each request, in order; greedy requests come with ``k == 1``."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release what the backend holds (models, connections); idempotent."""


BackendFactory = Callable[..., RewardBackend]
BACKENDS: dict[str, BackendFactory] = {}
#: Built-in backends, imported on first use (each pulls heavy or optional dependencies).
LAZY_BACKENDS = {
    "hf": "habitat_eqarm.rewards.backends.hf",
    "openai": "habitat_eqarm.rewards.backends.openai_compat",
    "vllm": "habitat_eqarm.rewards.backends.vllm_inproc",
}


def register_backend(name: str) -> Callable[[BackendFactory], BackendFactory]:
    """Class decorator: make a backend available as ``from_pretrained(..., backend=name)``."""

    def wrap(factory: BackendFactory) -> BackendFactory:
        BACKENDS[name] = factory
        return factory

    return wrap


def load_backend(name: str, model: str, **kwargs: Any) -> RewardBackend:
    """Instantiate the backend registered as ``name`` for ``model`` (a path or hub id); an
    option the backend does not take is a ValueError naming the options and the backend."""
    if name in LAZY_BACKENDS and name not in BACKENDS:
        importlib.import_module(LAZY_BACKENDS[name])  # the module registers itself
    if name not in BACKENDS:
        known = ", ".join(sorted(BACKENDS)) or "none"
        raise ValueError(f"unknown backend {name!r} (registered: {known})")
    try:
        return BACKENDS[name](model, **kwargs)
    except TypeError as err:  # an option the backend does not take: name it, not a traceback
        if "keyword argument" not in str(err):
            raise
        raise ValueError(
            f"backend options {sorted(kwargs)} do not fit the {name!r} backend ({err})"
        ) from None


def backend_kwargs(value: str | dict[str, Any] | None, option: str = "backend_kwargs") -> dict:
    """Keyword arguments for a backend: a dict (from YAML) or a JSON object string (flag)."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return dict(value)
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as err:
        raise ValueError(f"--{option} must be a JSON object, got {value!r} ({err.msg})") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"--{option} must be a JSON object, got {value!r}")
    return parsed
