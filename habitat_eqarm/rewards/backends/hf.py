"""The ``hf`` backend: a local transformers vision-language model (Qwen2-VL and kin).

Test-time scaling at the cost it should have: for K > 1 samples, ``generate`` with
``num_return_sequences=K`` runs the vision encoder once but prefills the prompt K times
(spec §9). Here the prompt (minus its last token) is prefilled once per request, the KV cache
and the multimodal RoPE offsets are repeated K ways, and ``generate`` continues from that
cache, recomputing only the last prompt token for each sample. Under greedy decoding this
yields exactly the tokens of plain ``generate`` (tested). Models whose cache or position
handling we have not verified fall back to ``num_return_sequences``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from habitat_eqarm.rewards.backends.base import (
    GenerationRequest,
    GenerationResult,
    RewardBackend,
    SamplingParams,
    register_backend,
)

#: Model types whose cached continuation we verified to match plain generation.
SHARED_PREFILL_MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl")
MIN_PIXELS = 56 * 56


def pixel_size(max_pixels: int) -> dict[str, int]:
    """Qwen2-VL processor bounds: each frame resized to at most ``max_pixels`` pixels."""
    return {"longest_edge": int(max_pixels), "shortest_edge": MIN_PIXELS}


def pick_device(device: str | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(device: torch.device, dtype: str | torch.dtype | None = None) -> torch.dtype:
    """``dtype`` if given; bf16 on GPUs that support it; fp32 elsewhere (CPU bf16 is slow)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype and dtype != "auto":
        return getattr(torch, dtype)
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


@register_backend("hf")
class HFBackend(RewardBackend):
    """Generate with ``AutoModelForImageTextToText`` + ``AutoProcessor`` from a path or hub id.

    ``share_prefill``: None (auto: on for the model types we verified), True or False; batches
    of text-only requests always decode plainly.
    ``batch_size``: requests per forward pass. ``max_pixels`` caps each frame (the paper uses
    401,408). Extra keyword arguments go to ``from_pretrained`` (e.g. ``attn_implementation``).
    """

    name = "hf"

    def __init__(
        self,
        model: str,
        *,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        batch_size: int = 4,
        max_pixels: int = 401_408,
        share_prefill: bool | None = None,
        **load_kwargs: Any,
    ) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.model_id = str(model)
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device, dtype)
        self.batch_size = max(1, int(batch_size))
        self.max_pixels = int(max_pixels)
        self.processor = AutoProcessor.from_pretrained(self.model_id)
        self.processor.tokenizer.padding_side = "left"  # generation continues on the right
        self.model = AutoModelForImageTextToText.from_pretrained(
            self.model_id, dtype=self.dtype, **load_kwargs
        )
        self.model.to(self.device).eval()
        model_type = getattr(self.model.config, "model_type", "")
        self.share_prefill = (
            model_type in SHARED_PREFILL_MODEL_TYPES if share_prefill is None else share_prefill
        )

    # -- inputs ---------------------------------------------------------------------------------

    def encode(self, requests: Sequence[GenerationRequest]) -> dict[str, torch.Tensor]:
        """Processor outputs for a batch of requests, on the model's device."""
        from PIL import Image

        texts = [
            self.processor.apply_chat_template(
                r.messages, add_generation_prompt=True, tokenize=False
            )
            for r in requests
        ]
        kwargs: dict[str, Any] = {}
        images = [Image.fromarray(f) for r in requests if not r.as_video for f in r.frames]
        videos = [np.asarray(r.frames) for r in requests if r.as_video]
        if images:
            kwargs.update(images=images, images_kwargs={"size": pixel_size(self.max_pixels)})
        if videos:
            video_kwargs: dict[str, Any] = {
                "size": pixel_size(self.max_pixels),
                "do_sample_frames": False,
            }
            if hasattr(self.processor.video_processor, "cap_pixels_per_frame"):
                video_kwargs["cap_pixels_per_frame"] = True  # qwen-vl-utils' behaviour
            kwargs.update(videos=videos, videos_kwargs=video_kwargs)
        inputs = self.processor(text=texts, padding=True, return_tensors="pt", **kwargs)
        return {k: v.to(self.device) if hasattr(v, "to") else v for k, v in inputs.items()}

    # -- generation -----------------------------------------------------------------------------

    def _sampling_kwargs(self, params: SamplingParams) -> dict[str, Any]:
        greedy = params.temperature <= 0
        kwargs: dict[str, Any] = {"max_new_tokens": params.max_new_tokens, "do_sample": not greedy}
        if params.min_new_tokens:
            kwargs["min_new_tokens"] = params.min_new_tokens
        if not greedy:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        return kwargs

    @torch.inference_mode()
    def generate_plain(
        self, inputs: dict[str, torch.Tensor], params: SamplingParams
    ) -> torch.Tensor:
        """``generate`` with ``num_return_sequences=K``: new tokens, ``(B*K, T)``.

        Greedy decoding gives K identical samples, so it runs once and repeats the tokens.
        """
        greedy = params.temperature <= 0
        out = self.model.generate(
            **inputs,
            num_return_sequences=1 if greedy else params.k,
            **self._sampling_kwargs(params),
        )
        new = out[:, inputs["input_ids"].shape[1] :]
        return new.repeat_interleave(params.k, dim=0) if greedy else new

    @torch.inference_mode()
    def generate_shared(
        self, inputs: dict[str, torch.Tensor], params: SamplingParams
    ) -> torch.Tensor:
        """Prefill once, repeat the cache K ways, decode: new tokens, ``(B*K, T)``."""
        k = params.k
        prefix = {
            name: (
                value[:, :-1]
                if name in ("input_ids", "attention_mask", "mm_token_type_ids")
                else value
            )
            for name, value in inputs.items()
        }
        prefill = self.model(**prefix, use_cache=True, logits_to_keep=1)
        cache = prefill.past_key_values
        cache.batch_repeat_interleave(k)
        inner = self.model.model
        inner.rope_deltas = inner.rope_deltas.repeat_interleave(k, dim=0)
        expanded = {
            name: inputs[name].repeat_interleave(k, dim=0)
            for name in ("input_ids", "attention_mask", "mm_token_type_ids")
            if name in inputs
        }
        out = self.model.generate(
            **expanded, past_key_values=cache, **self._sampling_kwargs(params)
        )
        return out[:, inputs["input_ids"].shape[1] :]

    def generate(
        self, requests: Sequence[GenerationRequest], params: SamplingParams
    ) -> list[GenerationResult]:
        """K texts per request, ``batch_size`` requests per forward pass."""
        if params.seed is not None:
            torch.manual_seed(params.seed)
        results: list[GenerationResult] = []
        for start in range(0, len(requests), self.batch_size):
            batch = requests[start : start + self.batch_size]
            results += self._generate_batch(batch, params)
        return results

    def _generate_batch(
        self, batch: Sequence[GenerationRequest], params: SamplingParams
    ) -> list[GenerationResult]:
        t0 = time.perf_counter()
        inputs = self.encode(batch)
        t1 = time.perf_counter()
        # A batch without images or videos (text only, e.g. LLM-match marks) decodes plainly:
        # the model then keeps the M-RoPE deltas of an earlier call, and shared decoding would
        # go on from those stale deltas (a shape error, or wrong positions).
        has_media = "image_grid_thw" in inputs or "video_grid_thw" in inputs
        shared = self.share_prefill and params.k > 1 and has_media
        tokens = (
            self.generate_shared(inputs, params) if shared else self.generate_plain(inputs, params)
        )
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t2 = time.perf_counter()
        texts = self.processor.tokenizer.batch_decode(tokens, skip_special_tokens=True)
        timings = {
            "preprocess_s": (t1 - t0) / len(batch),
            "generate_s": (t2 - t1) / len(batch),
            "batch_size": float(len(batch)),
            "shared_prefill": float(shared),
        }
        k = params.k
        return [
            GenerationResult(texts=texts[i * k : (i + 1) * k], timings=dict(timings))
            for i in range(len(batch))
        ]

    def close(self) -> None:
        """Drop the model and processor (frees GPU memory once nothing else refers to them)."""
        self.model = None
        self.processor = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
