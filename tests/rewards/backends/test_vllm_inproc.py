"""The vllm backend's conversions. vLLM itself needs a CUDA GPU, which CI lacks: the engine
is not run here, only the request and sampling conversions and the import guard."""

import importlib.util

import numpy as np
import pytest

from habitat_eqarm.data import EQAInstance
from habitat_eqarm.rewards.backends.base import GenerationRequest, SamplingParams, load_backend
from habitat_eqarm.rewards.backends.vllm_inproc import (
    mm_processor_kwargs,
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
