"""The ``hf`` backend: a local transformers vision-language model (Qwen2-VL and kin).

Test-time scaling at the cost it should have: for K > 1 samples, ``generate`` with
``num_return_sequences=K`` runs the vision encoder once but prefills the prompt K times
(docs/method.md §9). Here the prompt (minus its last token) is prefilled once per request, the KV
cache and the multimodal RoPE offsets are repeated K ways, and ``generate`` continues from that
cache, recomputing only the last prompt token for each sample. Under greedy decoding this
yields exactly the tokens of plain ``generate`` (tested). Models whose cache or position
handling we have not verified fall back to ``num_return_sequences``.

Batches without padding waste: the processor pads prompts on the left, and a padded prefill
needs an attention mask, which makes sdpa compute every query against every key (a causal
prefill skips the upper half) and copy the keys per head. So the prefix is prefilled
right-aligned, i.e. each prompt from column 0 with its padding after it, without a mask: causal
attention is exact for every real token and each row computes what it would alone. Decoding
then masks the padding columns, wherever they are (:func:`split_prompts`).

Decoding writes each step's keys and values into a cache allocated once with room for the new
tokens (:class:`PreallocatedCache`), instead of transformers' default of concatenating, i.e.
copying the whole cache, at every step; that copy grows with the batch and the prompt length.
The attention sees the same values, so the tokens are bitwise those of the default (tested).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessorList
from transformers.cache_utils import DynamicCache, DynamicLayer

from habitat_eqarm.rewards.backends.base import (
    MAX_PIXELS,
    GenerationRequest,
    GenerationResult,
    RewardBackend,
    SamplingParams,
    pixel_size,
    register_backend,
)
from habitat_eqarm.rewards.backends.cpu_memory import retain_cpu_memory
from habitat_eqarm.rewards.backends.sampling import NucleusSampler
from habitat_eqarm.rewards.backends.transformers_compat import (
    cache_argument,
    init_cache_of_layers,
    linear_patch_embed,
    repeat_rope_deltas,
)

#: Model types whose cached continuation we verified to match plain generation.
SHARED_PREFILL_MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl")


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


class PreallocatedLayer(DynamicLayer):
    """A :class:`DynamicLayer` whose keys and values are views into buffers with spare room.

    ``update`` writes the new states in place and returns the grown views; a buffer is
    (re)allocated, with ``headroom`` more positions than needed, only when the states no longer
    fit or were replaced by another method (``batch_select_indices``, ...).
    """

    def __init__(self, headroom: int = 0) -> None:
        super().__init__()
        self.headroom = max(0, int(headroom))
        self.key_buffer: torch.Tensor | None = None
        self.value_buffer: torch.Tensor | None = None

    def _fits(self, new: torch.Tensor, total: int) -> bool:
        buf, keys = self.key_buffer, self.keys
        if buf is None or keys is None:
            return False
        if keys.numel() and (keys.data_ptr() != buf.data_ptr() or keys.stride() != buf.stride()):
            return False  # the states were replaced (e.g. batch_select_indices)
        return buf.shape[-2] >= total and buf.shape[:2] == new.shape[:2]

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append the new states in place; return all keys and values so far."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n = self.get_seq_length()
        total = n + key_states.shape[-2]
        if not self._fits(key_states, total):
            shape = (*key_states.shape[:-2], total + self.headroom, key_states.shape[-1])
            keys, values = key_states.new_empty(shape), value_states.new_empty(shape)
            if n:
                keys[:, :, :n].copy_(self.keys)
                values[:, :, :n].copy_(self.values)
            self.key_buffer, self.value_buffer = keys, values
        self.key_buffer[:, :, n:total].copy_(key_states)
        self.value_buffer[:, :, n:total].copy_(value_states)
        self.keys = self.key_buffer[:, :, :total]
        self.values = self.value_buffer[:, :, :total]
        return self.keys, self.values

    def batch_repeat_interleave(self, repeats: int) -> None:
        """Repeat the cache ``repeats`` times in the batch dimension, keeping the spare room."""
        n = self.get_seq_length()
        if n and self.key_buffer is not None and self._fits(self.keys, n):
            self.key_buffer = self.key_buffer.repeat_interleave(repeats, dim=0)
            self.value_buffer = self.value_buffer.repeat_interleave(repeats, dim=0)
            self.keys = self.key_buffer[:, :, :n]
            self.values = self.value_buffer[:, :, :n]
        else:
            super().batch_repeat_interleave(repeats)


class PreallocatedCache(DynamicCache):
    """A :class:`DynamicCache` of :class:`PreallocatedLayer`: each layer reserves ``headroom``
    positions beyond the prompt, so decoding up to ``headroom`` tokens never copies the cache.
    """

    def __init__(self, headroom: int) -> None:
        init_cache_of_layers(self, lambda: PreallocatedLayer(headroom))


SEQUENCE_INPUTS = ("input_ids", "attention_mask", "mm_token_type_ids")


def split_prompts(
    inputs: dict[str, torch.Tensor], pad_token_id: int
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Left-padded processor outputs -> (prefill inputs, continuation inputs).

    Prefill: each prompt without its last token, moved to start at column 0 (padding after it),
    and no attention mask, so the prefill is plainly causal. M-RoPE positions and offsets come
    out as for the unpadded prompt: padding after the last real token does not move them.
    Continuation (for ``generate`` with the prefill's cache): those columns, then each prompt's
    last token, with the padding columns masked out.
    """
    mask = inputs["attention_mask"].bool()
    width = mask.shape[1]
    lengths = mask.sum(dim=1)
    if bool((lengths < 2).any()):
        raise ValueError("every prompt needs at least two tokens to split off a prefix")
    cols = torch.arange(width - 1, device=mask.device)
    real = cols[None, :] < (lengths - 1)[:, None]  # (batch, width - 1)
    # column j of row i's prefix is its real token j, found at width - length + j
    source = torch.where(real, (width - lengths)[:, None] + cols[None, :], width - 1)
    fills = {"input_ids": pad_token_id, "attention_mask": 0, "mm_token_type_ids": 0}
    prefix = {
        name: torch.where(real, torch.gather(inputs[name], 1, source), fills[name])
        for name in SEQUENCE_INPUTS
        if name in inputs
    }
    cont = {name: torch.cat([prefix[name], inputs[name][:, -1:]], dim=1) for name in prefix}
    prefill = {name: value for name, value in prefix.items() if name != "attention_mask"}
    prefill.update({name: value for name, value in inputs.items() if name not in SEQUENCE_INPUTS})
    return prefill, cont


@register_backend("hf")
class HFBackend(RewardBackend):
    """Generate with ``AutoModelForImageTextToText`` + ``AutoProcessor`` from a path or hub id.

    ``share_prefill``: prefill each prompt once, right-aligned, and decode its K samples from
    that cache (see module doc); None (auto: on for the model types we verified), True or False;
    batches of text-only requests always decode plainly.
    ``preallocate_cache``: decode into a :class:`PreallocatedCache` (same auto rule).
    ``fast_patch_embed``: run the vision patch embedding as a matrix product
    (:func:`.transformers_compat.linear_patch_embed`).
    ``retain_memory``: on CPU, keep large allocations in the heap rather than page-faulting
    them afresh each batch (:func:`.cpu_memory.retain_cpu_memory`, process-wide); None: on
    when the device is the CPU.
    ``batch_size``: requests per forward pass. ``max_pixels`` caps each frame (the paper uses
    401,408). ``min_new_tokens`` (benchmarks only) makes every sample at least that long, so
    timings compare fixed-length critiques. Extra keyword arguments go to ``from_pretrained``
    (e.g. ``attn_implementation``).
    """

    name = "hf"

    def __init__(
        self,
        model: str,
        *,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        batch_size: int = 4,
        max_pixels: int = MAX_PIXELS,
        share_prefill: bool | None = None,
        preallocate_cache: bool | None = None,
        fast_patch_embed: bool = True,
        retain_memory: bool | None = None,
        min_new_tokens: int = 0,
        **load_kwargs: Any,
    ) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.model_id = str(model)
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device, dtype)
        self.batch_size = max(1, int(batch_size))
        if retain_memory is None:
            retain_memory = self.device.type == "cpu"
        self.retains_memory = bool(retain_memory) and retain_cpu_memory()
        self.max_pixels = int(max_pixels)
        self.min_new_tokens = int(min_new_tokens)
        self.processor = AutoProcessor.from_pretrained(self.model_id)
        self.processor.tokenizer.padding_side = "left"  # generation continues on the right
        self.model = AutoModelForImageTextToText.from_pretrained(
            self.model_id, dtype=self.dtype, **load_kwargs
        )
        self.model.to(self.device).eval()
        model_type = getattr(self.model.config, "model_type", "")
        verified = model_type in SHARED_PREFILL_MODEL_TYPES
        self.share_prefill = verified if share_prefill is None else share_prefill
        self.preallocate_cache = verified if preallocate_cache is None else preallocate_cache
        self.linear_patch_embed = linear_patch_embed(self.model) if fast_patch_embed else False
        self.cache_argument = cache_argument(self.model)

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

    def new_cache(self, params: SamplingParams) -> dict[str, Any]:
        """The cache argument of a fresh generation: a preallocated cache, or none (default)."""
        if not self.preallocate_cache:
            return {}
        return {self.cache_argument: PreallocatedCache(params.max_new_tokens)}

    def _sampling_kwargs(self, params: SamplingParams, *, multinomial: bool) -> dict[str, Any]:
        """``generate`` arguments. Sampling runs in a :class:`NucleusSampler` (exact top-p without
        a sort, see :mod:`.sampling`), which leaves one finite logit per row; ``generate`` then
        selects it by argmax, or, where ``num_return_sequences`` needs sampling mode
        (``multinomial``), by a draw from that one-hot distribution. transformers' own
        temperature, top-p and top-k are off, which also overrides the checkpoint's
        (Qwen2-VL-Instruct ships top_k=1, top_p=0.001); its other settings, such as a
        repetition penalty, still apply before the sampler.
        """
        greedy = params.temperature <= 0
        do_sample = multinomial and not greedy  # greedy: argmax, no sampler
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "do_sample": do_sample,
            "temperature": 1.0,
            "top_p": 1.0,
            # 0 turns top-k off when sampling; without sampling it is unused, and 50 (its
            # default) keeps transformers from warning about a sampling-only flag
            "top_k": 0 if do_sample else 50,
        }
        if self.min_new_tokens:
            kwargs["min_new_tokens"] = min(self.min_new_tokens, params.max_new_tokens)
        if not greedy:  # a fresh sampler per call: its seed comes from torch's generator
            kwargs["logits_processor"] = LogitsProcessorList(
                [NucleusSampler(params.temperature, params.top_p)]
            )
        return kwargs

    @torch.inference_mode()
    def generate_plain(
        self, inputs: dict[str, torch.Tensor], params: SamplingParams
    ) -> torch.Tensor:
        """``generate`` with ``num_return_sequences=K``: new tokens, ``(B*K, T)``.

        Greedy takes ``K == 1`` (:meth:`RewardBackend.generate` repeats the one text).
        """
        sampling = self._sampling_kwargs(params, multinomial=params.k > 1)
        out = self.model.generate(
            **inputs, num_return_sequences=params.k, **self.new_cache(params), **sampling
        )
        return out[:, inputs["input_ids"].shape[1] :]

    @torch.inference_mode()
    def generate_shared(
        self, inputs: dict[str, torch.Tensor], params: SamplingParams
    ) -> torch.Tensor:
        """Prefill once (right-aligned, causal), repeat the cache K ways, decode: new tokens,
        ``(B*K, T)``. Greedy takes ``K == 1`` (:meth:`RewardBackend.generate` repeats the text).
        """
        k = params.k
        sampling = self._sampling_kwargs(params, multinomial=False)
        prefill_inputs, cont = split_prompts(inputs, self.processor.tokenizer.pad_token_id)
        prefill = self.model(
            **prefill_inputs, use_cache=True, logits_to_keep=1, **self.new_cache(params)
        )
        cache = prefill[self.cache_argument]
        if k > 1:
            cache.batch_repeat_interleave(k)
            repeat_rope_deltas(self.model, k)
            cont = {name: value.repeat_interleave(k, dim=0) for name, value in cont.items()}
        out = self.model.generate(**cont, **{self.cache_argument: cache}, **sampling)
        return out[:, cont["input_ids"].shape[1] :]

    def sample(
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
        shared = self.share_prefill and has_media
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
