"""The vllm backend's conversions, and (where vLLM can run: a CUDA GPU and the package) the
engine's prefix-sharing equivalence test. CI has no GPU: there the equivalence test skips with
its reason, and only the request, sampling and engine-argument conversions and the import guard
run."""

import importlib.util

import numpy as np
import pytest

from habitat_eqarm.data import EQAInstance
from habitat_eqarm.rewards.backends.base import GenerationRequest, SamplingParams, load_backend
from habitat_eqarm.rewards.backends.vllm_inproc import (
    mm_processor_kwargs,
    vllm_engine_kwargs,
    vllm_inputs,
    vllm_sampling_kwargs,
)
from habitat_eqarm.rewards.prompts import REWARD_MODEL_PROMPT, build_messages

INSTANCE = EQAInstance(question_id="q", question="Where is the lamp?", predicted_answer="desk")


@pytest.fixture(scope="module")
def processor(tiny_model_path):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_path)


def test_images_become_chat_templated_placeholders_and_pil_images(processor):
    frames = np.zeros((3, 28, 56, 3), np.uint8)
    request = GenerationRequest(build_messages(REWARD_MODEL_PROMPT, INSTANCE, 3), frames)
    inputs = vllm_inputs(request, processor)
    assert inputs["prompt"].count("<|vision_start|><|image_pad|><|vision_end|>") == 3
    assert inputs["prompt"].endswith("<|im_start|>assistant\n")
    assert [im.size for im in inputs["multi_modal_data"]["image"]] == [(56, 28)] * 3


def test_a_video_goes_as_one_array(processor):
    frames = np.zeros((4, 28, 28, 3), np.uint8)
    messages = build_messages(REWARD_MODEL_PROMPT, INSTANCE, 4, as_video=True)
    inputs = vllm_inputs(GenerationRequest(messages, frames, as_video=True), processor)
    assert inputs["prompt"].count("<|video_pad|>") == 1
    assert inputs["multi_modal_data"]["video"] is frames


def test_mismatched_frames_are_refused(processor):
    request = GenerationRequest(
        build_messages(REWARD_MODEL_PROMPT, INSTANCE, 2), np.zeros((1, 8, 8, 3), np.uint8)
    )
    with pytest.raises(ValueError, match="2 image placeholder"):
        vllm_inputs(request, processor)


def test_sampling_parameters():
    sampled = vllm_sampling_kwargs(
        SamplingParams(k=4, temperature=0.8, top_p=0.9, max_new_tokens=64, seed=3)
    )
    assert sampled == {
        "n": 4,
        "temperature": 0.8,
        "top_p": 0.9,
        "max_tokens": 64,
        "min_tokens": 0,
        "seed": 3,
    }
    # greedy requests reach the backend with k=1 (RewardBackend.generate repeats the text)
    greedy = vllm_sampling_kwargs(SamplingParams(k=1, temperature=0.0, min_new_tokens=5))
    assert greedy["n"] == 1 and greedy["temperature"] == 0.0 and greedy["min_tokens"] == 5
    assert "seed" not in greedy


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_without_vllm_the_backend_says_what_to_install():
    with pytest.raises(ImportError, match=r"pip install 'habitat-eqarm\[vllm\]'"):
        load_backend("vllm", "any/model")


def test_the_pixel_cap_reaches_the_processor_in_its_current_form(processor):
    """vLLM passes ``mm_processor_kwargs`` to the HF processor: it must cap frames, silently."""
    import warnings

    cap = 28 * 28 * 16
    frames = np.zeros((2, 280, 560, 3), np.uint8)
    request = GenerationRequest(build_messages(REWARD_MODEL_PROMPT, INSTANCE, 2), frames)
    inputs = vllm_inputs(request, processor)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = processor(
            text=[inputs["prompt"]],
            images=inputs["multi_modal_data"]["image"],
            **mm_processor_kwargs(cap),
        )
    patch = processor.image_processor.patch_size
    pixels = [h * w * patch * patch for _, h, w in out["image_grid_thw"].tolist()]
    assert len(pixels) == 2 and all(cap / 2 <= p <= cap for p in pixels)


def test_prefix_caching_is_on_unless_the_caller_says_otherwise():
    kwargs = vllm_engine_kwargs(28 * 28 * 16, 8, tensor_parallel_size=4)
    assert kwargs["enable_prefix_caching"] is True and kwargs["tensor_parallel_size"] == 4
    assert kwargs["limit_mm_per_prompt"] == {"image": 8, "video": 1}
    assert vllm_engine_kwargs(1, 1, enable_prefix_caching=False)["enable_prefix_caching"] is False


def _vllm_skip_reason() -> str | None:
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed (it needs CUDA: pip install 'habitat-eqarm[vllm]' on a GPU)"
    import torch

    if not torch.cuda.is_available():
        return "vLLM runs on CUDA GPUs and none is visible here"
    return None


VLLM_SKIP = _vllm_skip_reason()


@pytest.fixture(scope="module")
def vllm_pair(tiny_model_path):
    """The tiny model in vLLM twice: prefix caching on (our default) and off."""
    from habitat_eqarm.rewards.backends.vllm_inproc import VLLMBackend

    common = {"dtype": "float32", "gpu_memory_utilization": 0.3, "max_model_len": 4096}
    cached = VLLMBackend(str(tiny_model_path), enforce_eager=True, **common)
    plain = VLLMBackend(
        str(tiny_model_path), enforce_eager=True, enable_prefix_caching=False, **common
    )
    yield cached, plain
    cached.close()
    plain.close()


@pytest.fixture(scope="module")
def vllm_requests(synthetic_folder):
    """Two questions about one episode: their prompts share the system prompt and frames."""
    memory, questions = synthetic_folder
    frames = memory.frames(memory.keyframes(3))
    return [
        GenerationRequest(build_messages(REWARD_MODEL_PROMPT, q, 3), frames) for q in questions[:2]
    ]


@pytest.mark.skipif(VLLM_SKIP is not None, reason=VLLM_SKIP or "")
def test_vllm_prefix_sharing_gives_the_tokens_of_plain_generation(vllm_pair, vllm_requests):
    """The hf backend's shared-prefill equivalence, for vLLM: greedy texts, and seeded n=K
    samples, are the same with prefix caching on and off, and across repeated calls (the
    second call reads the prefix from the cache)."""
    cached, plain = vllm_pair
    for params in (
        SamplingParams(k=1, temperature=0.0, max_new_tokens=12),
        SamplingParams(k=3, temperature=0.8, top_p=0.9, max_new_tokens=12, seed=7),
    ):
        first = [r.texts for r in cached.generate(vllm_requests, params)]
        again = [r.texts for r in cached.generate(vllm_requests, params)]
        reference = [r.texts for r in plain.generate(vllm_requests, params)]
        assert first == again == reference
        assert all(len(texts) == params.k for texts in first)
