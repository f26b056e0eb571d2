import hashlib

import numpy as np
import pytest
import torch

from habitat_eqarm.data import EpisodeMemory
from habitat_eqarm.testing import make_tiny_model
from habitat_eqarm.testing.tiny_model import SPECIAL_TOKENS


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_checkpoint_is_a_few_megabytes_with_a_full_processor(tiny_model_path):
    names = {p.name for p in tiny_model_path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "processor_config.json"} <= names
    assert "chat_template.jinja" in names
    total = sum(p.stat().st_size for p in tiny_model_path.iterdir())
    assert total < 5 * 2**20


def test_same_seed_same_bytes_other_seed_other_weights(tiny_model_path, tmp_path):
    assert digest(make_tiny_model(tmp_path / "again", seed=0)) == digest(tiny_model_path)
    other = digest(make_tiny_model(tmp_path / "other", seed=1))
    assert other["model.safetensors"] != digest(tiny_model_path)["model.safetensors"]


def test_loads_through_the_auto_classes(tiny_model_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_path)
    processor = AutoProcessor.from_pretrained(tiny_model_path)
    assert type(model).__name__ == "Qwen2VLForConditionalGeneration"
    assert type(processor).__name__ == "Qwen2VLProcessor"
    tokenizer = processor.tokenizer
    for token in SPECIAL_TOKENS:
        ids = tokenizer.encode(token, add_special_tokens=False)
        assert len(ids) == 1, token  # each special token is one id, never split
    assert model.config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert model.config.video_token_id == tokenizer.convert_tokens_to_ids("<|video_pad|>")
    text = "<critique>The sofa is grey, as frame two shows.</critique><score>7</score>"
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_chat_template_lays_out_turns_like_qwen2_vl(tiny_model_path):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model_path)
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q?"}]},
        {"role": "assistant", "content": "A."},
    ]
    assert processor.apply_chat_template(messages, tokenize=False) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Q?<|im_end|>\n"
        "<|im_start|>assistant\nA.<|im_end|>\n"
    )


def generate(model, processor, messages, **media):
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], return_tensors="pt", **media)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    return inputs, out[0, inputs["input_ids"].shape[1] :]


@pytest.mark.slow
def test_generates_from_five_real_keyframes_as_images_and_as_video(tiny_model_path, demo_video):
    from PIL import Image
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    model = Qwen2VLForConditionalGeneration.from_pretrained(tiny_model_path).eval()
    processor = AutoProcessor.from_pretrained(tiny_model_path)
    memory = EpisodeMemory.from_path(demo_video)
    frames = memory.frames(memory.keyframes(5))
    size = {"longest_edge": 401_408, "shortest_edge": 56 * 56}  # the paper's max_pixels

    parts = [{"type": "image"}] * 5 + [{"type": "text", "text": "How many chairs are there?"}]
    inputs, new = generate(
        model,
        processor,
        [{"role": "user", "content": parts}],
        images=[Image.fromarray(f) for f in frames],
        images_kwargs={"size": size},
    )
    # a 1280x720 frame becomes 448x840 pixels = 480 merged visual tokens (docs/method.md §9)
    assert inputs["image_grid_thw"].tolist() == [[1, 32, 60]] * 5
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == 5 * 480
    assert 0 < len(new) <= 12

    parts = [{"type": "video"}, {"type": "text", "text": "How many chairs are there?"}]
    inputs, new = generate(
        model,
        processor,
        [{"role": "user", "content": parts}],
        videos=[np.asarray(frames)],
        videos_kwargs={"size": size, "do_sample_frames": False},
    )
    n_video = int((inputs["input_ids"] == model.config.video_token_id).sum())
    assert 0 < n_video < 5 * 480  # two frames share a temporal patch: about half the tokens
    assert 0 < len(new) <= 12
