"""The ``vllm`` backend: vLLM's offline engine in this process (CUDA GPUs only).

The prompt text comes from the model's own processor (its chat template lays out the vision
placeholders); frames go to vLLM as ``multi_modal_data`` (PIL images, or one video array), so
vLLM's Qwen2-VL processing sees what the ``hf`` backend's would. K samples are vLLM's ``n``
(greedy decoding asks for one, which :meth:`RewardBackend.generate` repeats). Each request
gets ``seed`` itself, so seeded samples do not depend on what else is in the batch.

Prefix sharing is vLLM's own, like the ``hf`` backend's shared prefill: with ``n=K`` the K
samples of a request share one prefill of its prompt (frames included), and automatic prefix
caching (``enable_prefix_caching``, on by default here) reuses the KV blocks of a prompt
prefix across requests too: the system prompt and, for the many answers scored about one
episode, its vision tokens.

Not exercised in our CI (no GPU there): :func:`vllm_inputs`, :func:`vllm_sampling_kwargs` and
:func:`vllm_engine_kwargs`, the conversions, are tested without vLLM; the engine is tested by
``tests/rewards/backends/test_vllm_inproc.py``'s equivalence tests, which skip without a
CUDA GPU and vLLM.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Sequence
from typing import Any

from habitat_eqarm.rewards.backends.base import (
    MAX_PIXELS,
    GenerationRequest,
    GenerationResult,
    RewardBackend,
    SamplingParams,
    pixel_size,
    register_backend,
)
from habitat_eqarm.rewards.backends.chat_format import check_placeholders


def require_vllm() -> None:
    """Raise a clear error unless vLLM is installed and a CUDA GPU is visible."""
    if importlib.util.find_spec("vllm") is None:
        raise ImportError(
            "the 'vllm' backend needs vLLM, which runs on CUDA GPUs: "
            "pip install 'habitat-eqarm[vllm]' (or use backend='hf' on a CPU)"
        )
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("the 'vllm' backend needs a CUDA GPU; none is visible (use 'hf')")


def vllm_inputs(request: GenerationRequest, processor: Any) -> dict[str, Any]:
    """vLLM's prompt dict for one request: chat-templated text plus its frames."""
    from PIL import Image

    check_placeholders(request)
    text = processor.apply_chat_template(
        request.messages, add_generation_prompt=True, tokenize=False
    )
    if request.as_video:
        media: dict[str, Any] = {"video": request.frames}
    else:
        media = (
            {"image": [Image.fromarray(f) for f in request.frames]} if len(request.frames) else {}
        )
    return {"prompt": text, "multi_modal_data": media} if media else {"prompt": text}


def vllm_sampling_kwargs(params: SamplingParams) -> dict[str, Any]:
    """Keyword arguments of ``vllm.SamplingParams`` for ``params`` (``n`` = K)."""
    greedy = params.temperature <= 0
    kwargs: dict[str, Any] = {
        "n": params.k,
        "temperature": 0.0 if greedy else params.temperature,
        "top_p": 1.0 if greedy else params.top_p,
        "max_tokens": params.max_new_tokens,
        "min_tokens": params.min_new_tokens,
    }
    if params.seed is not None:
        kwargs["seed"] = params.seed
    return kwargs


def mm_processor_kwargs(max_pixels: int) -> dict[str, Any]:
    """What vLLM hands the model's HF processor on every call: the per-frame pixel bounds.

    As ``size`` (transformers' current form); ``max_pixels`` / ``min_pixels`` there warn.
    """
    return {"size": pixel_size(max_pixels)}


def vllm_engine_kwargs(max_pixels: int, max_images: int, **llm_kwargs: Any) -> dict[str, Any]:
    """Keyword arguments of ``vllm.LLM`` besides the model: frame limits, prefix caching on
    (unless ``llm_kwargs`` says otherwise), and whatever else the caller passes."""
    return {
        "limit_mm_per_prompt": {"image": max_images, "video": 1},
        "mm_processor_kwargs": mm_processor_kwargs(max_pixels),
        "enable_prefix_caching": True,
        **llm_kwargs,
    }


@register_backend("vllm")
class VLLMBackend(RewardBackend):
    """Generate with ``vllm.LLM``; ``max_pixels`` caps each frame like the ``hf`` backend.

    ``max_images`` bounds images per prompt (vLLM reserves memory for them). Other keyword
    arguments go to ``vllm.LLM`` (``tensor_parallel_size``, ``gpu_memory_utilization``,
    ``max_model_len``, ``dtype``, ``enable_prefix_caching=False`` to compare, ...).
    """

    name = "vllm"

    def __init__(
        self,
        model: str,
        *,
        max_pixels: int = MAX_PIXELS,
        max_images: int = 32,
        **llm_kwargs: Any,
    ) -> None:
        require_vllm()
        import vllm
        from transformers import AutoProcessor

        self.model_id = str(model)
        self.processor = AutoProcessor.from_pretrained(self.model_id)
        self.llm = vllm.LLM(
            model=self.model_id, **vllm_engine_kwargs(max_pixels, max_images, **llm_kwargs)
        )
        self._sampling_params = vllm.SamplingParams

    def sample(
        self, requests: Sequence[GenerationRequest], params: SamplingParams
    ) -> list[GenerationResult]:
        """K texts per request from one ``LLM.generate`` call over the whole batch."""
        t0 = time.perf_counter()
        inputs = [vllm_inputs(r, self.processor) for r in requests]
        sampling = self._sampling_params(**vllm_sampling_kwargs(params))
        outputs = self.llm.generate(inputs, sampling, use_tqdm=False)
        per_request = (time.perf_counter() - t0) / max(1, len(requests))
        timings = {"generate_s": per_request, "batch_size": float(len(requests))}
        return [
            GenerationResult(texts=[o.text for o in out.outputs], timings=dict(timings))
            for out in outputs
        ]

    def close(self) -> None:
        """Drop the engine (vLLM frees GPU memory when it is collected)."""
        self.llm = None
