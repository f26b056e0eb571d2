"""Contract: the transformers internals behind transformers_compat keep the shape we rely on."""

import numpy as np
import pytest
import torch
import transformers
from PIL import Image
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

from habitat_eqarm.rewards.backends import transformers_compat as compat
from habitat_eqarm.rewards.backends.transformers_compat import TransformersChanged

CHANGED = rf"transformers {transformers.__version__}: .*needs updating"


@pytest.fixture(scope="module")
def model_and_inputs():
    """A tiny random Qwen2-VL (built in memory) and a two-row batch with one image each."""
    from transformers import Qwen2VLForConditionalGeneration

    from habitat_eqarm.testing.tiny_model import make_processor, tiny_config

    processor = make_processor(0)
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(tiny_config(processor.tokenizer)).eval()
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "a"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (56, 56, 3), np.uint8))
    inputs = processor(text=[text] * 2, images=[image] * 2, return_tensors="pt", padding=True)
    return model, dict(inputs)


def test_the_model_independent_shapes_hold():
    compat.check_transformers()


def test_cache_init_takes_a_layer_factory_that_grows_our_layers():
    class Mine(DynamicLayer):
        pass

    class MyCache(DynamicCache):
        def __init__(self):
            compat.init_cache_of_layers(self, Mine)

    cache = MyCache()
    keys = torch.zeros(1, 2, 3, 4)
    out_keys, _ = cache.update(keys, keys.clone(), 0)
    assert isinstance(cache.layers[0], Mine) and out_keys.shape == (1, 2, 3, 4)
    assert cache.get_seq_length() == 3


def test_the_qwen2_vl_model_has_what_the_backend_uses(model_and_inputs):
    model, inputs = model_and_inputs
    compat.check_model(model)
    with torch.inference_mode():
        out = model(**inputs, use_cache=True)
    # the forward returns its cache under the name it takes it by, and keeps M-RoPE offsets
    assert isinstance(out[compat.cache_argument(model)], Cache)
    assert model.model.rope_deltas.shape == (2, 1)
    before = model.model.rope_deltas.clone()
    compat.repeat_rope_deltas(model, 3)
    assert torch.equal(model.model.rope_deltas, before.repeat_interleave(3, dim=0))


def test_the_patch_embed_is_a_patchwise_conv_our_matmul_reproduces(model_and_inputs):
    model, inputs = model_and_inputs
    embed = compat.patch_embedding(model)
    proj = embed.proj
    assert isinstance(proj, torch.nn.Conv3d) and tuple(proj.kernel_size) == tuple(proj.stride)
    pixels = inputs["pixel_values"]
    with torch.inference_mode():
        conv = embed(pixels)
        assert compat.linear_patch_embed(model)
        linear = embed(pixels)
    del embed.forward  # back to the class's convolution for the other tests
    torch.testing.assert_close(linear, conv, rtol=1e-4, atol=1e-5)


def test_checkpoint_load_hook_runs_after_the_trainers_own_load():
    calls = []

    class Trainer:
        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            calls.append(("trainer", resume_from_checkpoint, model))

    class Resuming(compat.CheckpointLoadHook, Trainer):
        def after_checkpoint_load(self, resume_from_checkpoint, model=None):
            calls.append(("ours", resume_from_checkpoint, model))

    Resuming()._load_from_checkpoint("ckpt", "m")
    assert calls == [("trainer", "ckpt", "m"), ("ours", "ckpt", "m")]


def test_a_changed_cache_or_trainer_is_named_with_the_version(monkeypatch):
    monkeypatch.setattr(Cache, "__init__", lambda self, layers=None: None)
    with pytest.raises(TransformersChanged, match=CHANGED + ".*") as err:
        compat.check_cache()
    assert "layer_class_to_replicate" in str(err.value)
    monkeypatch.undo()
    monkeypatch.setattr(transformers.Trainer, "_load_from_checkpoint", lambda self, path: None)
    with pytest.raises(TransformersChanged, match="_load_from_checkpoint takes"):
        compat.check_trainer()
    monkeypatch.delattr(transformers.Trainer, "_load_from_checkpoint")
    with pytest.raises(TransformersChanged, match=CHANGED):
        compat.check_trainer()


def test_a_model_without_our_shapes_is_named_with_the_version():
    with pytest.raises(TransformersChanged, match=CHANGED) as err:
        compat.check_model(torch.nn.Linear(2, 2))
    assert "Linear" in str(err.value)


def test_the_fast_processor_is_picked_without_a_deprecation(tmp_path):
    import logging

    from transformers import AutoProcessor
    from transformers.utils import logging as hf_logging

    from habitat_eqarm.testing.tiny_model import make_processor

    make_processor(0).save_pretrained(tmp_path)
    hf_logging.warning_once.cache_clear()
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        processor = AutoProcessor.from_pretrained(
            tmp_path
        )  # the default: 5.6+ pick torchvision quietly
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage() for r in records if "deprecated" in r.getMessage()] == []
    assert getattr(processor.image_processor, "backend", "torchvision") == "torchvision"
    assert getattr(processor.tokenizer, "backend", "tokenizers") == "tokenizers"
