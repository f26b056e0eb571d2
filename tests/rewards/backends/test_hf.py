import copy
import dataclasses

import numpy as np
import pytest
import torch

from habitat_eqarm.data import EpisodeMemory, EQAInstance
from habitat_eqarm.rewards.backends.base import GenerationRequest, SamplingParams
from habitat_eqarm.rewards.backends.hf import (
    HFBackend,
    PreallocatedCache,
    PreallocatedLayer,
    linear_patch_embed,
    pick_dtype,
    split_prompts,
)
from habitat_eqarm.rewards.prompts import REWARD_MODEL_PROMPT, build_messages

# Tests here compare two computation paths (shared vs plain prefill, batched vs alone, matmul vs
# convolution). In float32 their difference depends on which BLAS kernel and how many threads a
# CPU uses, and a greedy token can flip on a near-tie; in float64 both paths round at ~1e-16 per
# operation, so equal tokens and the tolerances below hold on any CPU.
EXACT = torch.float64


@pytest.fixture(scope="module")
def backend(tiny_model_path):
    return HFBackend(str(tiny_model_path), batch_size=2, dtype=EXACT)


@pytest.fixture(scope="module")
def requests_(demo_video):
    memory = EpisodeMemory.from_path(demo_video)
    frames = memory.frames(memory.keyframes(5))
    out = []
    for qid, n in (("a", 5), ("b", 3)):  # different lengths: left padding is exercised
        inst = EQAInstance(
            question_id=qid,
            question=f"How many chairs are there? ({qid})",
            predicted_answer="Eight",
            reasoning_steps=["I saw a dining table.", "Eight chairs stand around it."],
        )
        out.append(GenerationRequest(build_messages(REWARD_MODEL_PROMPT, inst, n), frames[:n]))
    return out


def capture_logits(model):
    seen = []
    handle = model.lm_head.register_forward_hook(lambda m, i, o: seen.append(o[:, -1].double()))
    return seen, handle


def test_shared_prefill_gives_exactly_the_tokens_and_logits_of_plain_generate(backend, requests_):
    k = 1  # greedy: one text per request (RewardBackend.generate repeats it K times)
    params = SamplingParams(k=k, temperature=0.0, max_new_tokens=12)
    inputs = backend.encode(requests_)
    assert inputs["attention_mask"][1].min() == 0  # the shorter prompt is padded

    plain_logits, handle = capture_logits(backend.model)
    plain = backend.generate_plain(inputs, params)
    handle.remove()
    shared_logits, handle = capture_logits(backend.model)
    shared = backend.generate_shared(backend.encode(requests_), params)
    handle.remove()

    assert plain.shape == shared.shape == (2 * k, 12)
    assert torch.equal(plain, shared)
    # greedy: both decode each request once; shared adds one prefix prefill
    assert len(shared_logits) == len(plain_logits) + 1
    for step, (p, s) in enumerate(zip(plain_logits, shared_logits[1:], strict=True)):
        assert p.shape == s.shape == (2, p.shape[-1])
        # float64 logits of a 64-wide, 2-layer model: both paths agree to ~1e-13; 1e-9 is far
        # above that and far below any difference a changed computation would make
        torch.testing.assert_close(
            p, s, atol=1e-9, rtol=1e-9, msg=lambda m, step=step: f"{step}: {m}"
        )


def test_shared_prefill_samples_k_ways_like_num_return_sequences(small_backend, requests_):
    backend = small_backend
    params = SamplingParams(k=3, temperature=0.8, top_p=0.9, max_new_tokens=12, seed=5)
    torch.manual_seed(5)
    plain = backend.generate_plain(backend.encode(requests_), params)
    torch.manual_seed(5)
    shared = backend.generate_shared(backend.encode(requests_), params)
    assert plain.shape == shared.shape == (2 * 3, 12)
    assert torch.equal(plain, shared)
    assert len({tuple(row.tolist()) for row in shared}) > 2  # the K samples do differ


def test_split_prompts_right_aligns_the_prefix_and_masks_the_padding():
    inputs = {
        "input_ids": torch.tensor([[0, 0, 5, 6, 7], [1, 2, 3, 4, 9]]),
        "attention_mask": torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]),
        "mm_token_type_ids": torch.tensor([[0, 0, 1, 0, 0], [0, 1, 1, 0, 0]]),
        "pixel_values": torch.ones(3, 2),
    }
    prefill, cont = split_prompts(inputs, pad_token_id=0)
    assert "attention_mask" not in prefill and torch.equal(
        prefill["pixel_values"], torch.ones(3, 2)
    )
    assert prefill["input_ids"].tolist() == [[5, 6, 0, 0], [1, 2, 3, 4]]
    assert prefill["mm_token_type_ids"].tolist() == [[1, 0, 0, 0], [0, 1, 1, 0]]
    assert cont["input_ids"].tolist() == [[5, 6, 0, 0, 7], [1, 2, 3, 4, 9]]
    assert cont["attention_mask"].tolist() == [[1, 1, 0, 0, 1], [1, 1, 1, 1, 1]]
    assert cont["mm_token_type_ids"].tolist() == [[1, 0, 0, 0, 0], [0, 1, 1, 0, 0]]
    with pytest.raises(ValueError, match="two tokens"):
        split_prompts({**inputs, "attention_mask": torch.tensor([[0, 0, 0, 0, 1]] * 2)}, 0)


def test_sampling_is_seeded_and_returns_k_texts_per_request(backend, requests_):
    params = SamplingParams(k=3, temperature=0.8, top_p=0.9, max_new_tokens=8, seed=123)
    first = backend.generate(requests_, params)
    again = backend.generate(requests_, params)
    assert [len(r.texts) for r in first] == [3, 3]
    assert [r.texts for r in first] == [r.texts for r in again]
    assert first[0].timings["shared_prefill"] == 1.0 and first[0].timings["batch_size"] == 2.0


def test_fallback_without_shared_prefill(tiny_model_path, requests_):
    plain = HFBackend(str(tiny_model_path), share_prefill=False, batch_size=1)
    results = plain.generate(requests_, SamplingParams(k=2, temperature=0.8, max_new_tokens=4))
    assert [len(r.texts) for r in results] == [2, 2]
    assert results[0].timings["shared_prefill"] == 0.0 and results[0].timings["batch_size"] == 1.0


@pytest.mark.slow  # ~5 s
def test_text_only_requests_alone_and_beside_image_ones(backend, requests_):
    """Requests without frames (LLM-match marks): a text-only batch decodes plainly (shared
    decoding would start from the M-RoPE deltas an earlier call left on the model); beside an
    image request the shared prefill gives exactly the plain tokens."""
    question = "Is 'eight' the same answer as 'Eight chairs'? Reply with a mark from 1 to 5."
    text_only = GenerationRequest(
        [{"role": "user", "content": [{"type": "text", "text": question}]}],
        np.zeros((0, 1, 1, 3), np.uint8),
    )
    greedy = SamplingParams(k=2, temperature=0.0, max_new_tokens=6)
    backend.generate(requests_[:1], greedy)  # leaves that call's deltas on the model
    for _ in range(2):
        (alone,) = backend.generate([text_only], greedy)
        assert alone.timings["shared_prefill"] == 0.0 and len(alone.texts) == 2
    mixed = [requests_[1], text_only]
    once = dataclasses.replace(greedy, k=1)  # what generate passes on for a greedy request
    shared = backend.generate_shared(backend.encode(mixed), once)
    assert torch.equal(shared, backend.generate_plain(backend.encode(mixed), once))
    sampled = backend.generate(mixed, SamplingParams(k=2, max_new_tokens=4, seed=1))
    assert sampled[1].timings["shared_prefill"] == 1.0 and len(sampled[1].texts) == 2


def test_video_frames(backend, requests_):
    video = GenerationRequest(
        [{**m, "content": m["content"]} for m in requests_[0].messages[:1]]
        + [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Q?"}]}],
        requests_[0].frames,
        as_video=True,
    )
    (result,) = backend.generate([video], SamplingParams(k=2, temperature=0.0, max_new_tokens=4))
    assert len(result.texts) == 2 and result.texts[0] == result.texts[1]


def test_dtype_choice():
    assert pick_dtype(torch.device("cpu")) == torch.float32
    assert pick_dtype(torch.device("cpu"), "bfloat16") == torch.bfloat16


SMALL_FRAMES = 64 * 28 * 28  # 64 vision tokens a frame: quick tests of decoding


@pytest.fixture(scope="module")
def small_backend(tiny_model_path):
    return HFBackend(str(tiny_model_path), batch_size=2, max_pixels=SMALL_FRAMES, dtype=EXACT)


@pytest.fixture(scope="module")
def default_cache_backend(tiny_model_path):
    return HFBackend(
        str(tiny_model_path),
        batch_size=2,
        max_pixels=SMALL_FRAMES,
        preallocate_cache=False,
        dtype=EXACT,
    )


@pytest.mark.parametrize(
    ("params", "min_new_tokens"),
    [
        (SamplingParams(k=1, temperature=0.0, max_new_tokens=16), 0),
        (SamplingParams(k=1, temperature=0.8, max_new_tokens=16, seed=7), 16),
        (SamplingParams(k=3, temperature=0.8, max_new_tokens=16, seed=7), 0),  # shared prefill
    ],
    ids=["greedy", "sampled", "sampled-k3-shared-prefill"],
)
def test_preallocated_cache_gives_bitwise_the_tokens_of_the_default_cache(
    small_backend, default_cache_backend, requests_, params, min_new_tokens, monkeypatch
):
    backend = small_backend
    for b in (backend, default_cache_backend):  # the backend option, as if constructed with it
        monkeypatch.setattr(b, "min_new_tokens", min_new_tokens)
    assert backend.preallocate_cache and not default_cache_backend.preallocate_cache
    for method in ("generate_plain", "generate_shared"):
        torch.manual_seed(params.seed or 0)
        ours = getattr(backend, method)(backend.encode(requests_), params)
        torch.manual_seed(params.seed or 0)
        theirs = getattr(default_cache_backend, method)(
            default_cache_backend.encode(requests_), params
        )
        assert ours.shape == theirs.shape == (2 * params.k, 16), method
        assert torch.equal(ours, theirs), method


def test_batched_greedy_equals_one_request_at_a_time(small_backend, requests_, monkeypatch):
    backend = small_backend
    monkeypatch.setattr(backend, "min_new_tokens", 16)  # fixed-length samples
    params = SamplingParams(k=1, temperature=0.0, max_new_tokens=16)
    batched = backend.generate(requests_, params)
    assert batched[0].timings["batch_size"] == 2.0
    alone = [backend.generate([r], params)[0] for r in requests_]
    assert alone[0].timings["batch_size"] == 1.0
    assert [r.texts for r in batched] == [r.texts for r in alone]


def test_preallocated_layer_writes_in_place_and_grows_when_full():
    torch.manual_seed(0)
    layer = PreallocatedLayer(headroom=3)
    prompt = torch.randn(2, 2, 5, 4), torch.randn(2, 2, 5, 4)
    keys, values = layer.update(*prompt)
    assert torch.equal(keys, prompt[0]) and torch.equal(values, prompt[1])
    buffer = layer.key_buffer
    assert buffer.shape == (2, 2, 8, 4)
    steps = [(torch.randn(2, 2, 1, 4), torch.randn(2, 2, 1, 4)) for _ in range(5)]
    for i, step in enumerate(steps):
        keys, values = layer.update(*step)
        if i < 3:  # within the headroom: no new buffer
            assert layer.key_buffer is buffer
    assert layer.key_buffer is not buffer  # grown once the headroom was used up
    want_k = torch.cat([prompt[0], *(k for k, _ in steps)], dim=-2)
    want_v = torch.cat([prompt[1], *(v for _, v in steps)], dim=-2)
    assert torch.equal(keys, want_k) and torch.equal(values, want_v)
    assert layer.get_seq_length() == 10


def test_preallocated_layer_after_batch_changes():
    torch.manual_seed(0)
    layer = PreallocatedLayer(headroom=4)
    k0, v0 = torch.randn(2, 1, 3, 4), torch.randn(2, 1, 3, 4)
    layer.update(k0, v0)
    layer.batch_repeat_interleave(2)  # shared prefill: B -> B*K rows, room kept
    assert layer.keys.shape == (4, 1, 3, 4) and layer.key_buffer.shape == (4, 1, 7, 4)
    k1, v1 = torch.randn(4, 1, 1, 4), torch.randn(4, 1, 1, 4)
    keys, _ = layer.update(k1, v1)
    assert torch.equal(keys, torch.cat([k0.repeat_interleave(2, 0), k1], dim=-2))
    layer.batch_select_indices(torch.tensor([3, 0]))  # replaces the states: next update copies
    k2, v2 = torch.randn(2, 1, 1, 4), torch.randn(2, 1, 1, 4)
    keys, values = layer.update(k2, v2)
    want = torch.cat([k0.repeat_interleave(2, 0), k1], dim=-2)[[3, 0]]
    assert torch.equal(keys, torch.cat([want, k2], dim=-2))
    assert values.shape == (2, 1, 5, 4)
    layer.crop(-2)
    assert layer.get_seq_length() == 3
    keys, _ = layer.update(k2, v2)
    assert torch.equal(keys, torch.cat([want[:, :, :3], k2], dim=-2))


def test_preallocated_cache_builds_one_layer_per_model_layer(backend, requests_):
    cache = PreallocatedCache(headroom=4)
    inputs = backend.encode(requests_[1:])
    with torch.inference_mode():
        backend.model(**inputs, use_cache=True, **{backend.cache_argument: cache})
    n_layers = backend.model.config.text_config.num_hidden_layers
    assert len(cache.layers) == n_layers
    assert all(isinstance(layer, PreallocatedLayer) for layer in cache.layers)
    length = inputs["input_ids"].shape[1]
    assert cache.get_seq_length() == length
    assert cache.layers[0].key_buffer.shape[-2] == length + 4


def test_linear_patch_embed_matches_the_convolution(tiny_model_path, backend, requests_):
    """The patch embedding as a matrix product: same features, same greedy tokens, same
    weights (shared, not copied)."""
    conv = HFBackend(str(tiny_model_path), batch_size=2, fast_patch_embed=False, dtype=EXACT)
    assert backend.linear_patch_embed and not conv.linear_patch_embed
    inputs = backend.encode(requests_)
    with torch.inference_mode():
        fast = backend.model.model.visual.patch_embed(inputs["pixel_values"])
        slow = conv.model.model.visual.patch_embed(inputs["pixel_values"])
    assert fast.shape == slow.shape == (inputs["pixel_values"].shape[0], slow.shape[1])
    # float64, one dot product of 3*2*14*14 = 1,176 terms per feature: ~1e-13 apart at most
    torch.testing.assert_close(fast, slow, atol=1e-10, rtol=1e-10)
    params = SamplingParams(k=1, temperature=0.0, max_new_tokens=8)
    assert torch.equal(
        backend.generate_shared(inputs, params),
        conv.generate_shared(conv.encode(requests_), params),
    )
    proj = backend.model.model.visual.patch_embed.proj
    assert "model.visual.patch_embed.proj.weight" in backend.model.state_dict()
    assert (
        proj.weight.data_ptr()
        == backend.model.state_dict()["model.visual.patch_embed.proj.weight"].data_ptr()
    )
    assert not linear_patch_embed(torch.nn.Linear(2, 2))  # nothing to replace: left alone
    # a deep copy runs the product on its own weights
    visual = copy.deepcopy(backend.model.model.visual)
    with torch.inference_mode():
        visual.patch_embed.proj.weight.zero_()
        assert visual.patch_embed(inputs["pixel_values"]).abs().max() == 0
        assert backend.model.model.visual.patch_embed(inputs["pixel_values"]).abs().max() > 0


def test_min_new_tokens_is_a_construction_option_of_the_backend(tiny_model_path):
    from habitat_eqarm.rewards.backends.base import load_backend

    backend = load_backend("hf", str(tiny_model_path), max_pixels=56 * 56, min_new_tokens=8)
    eos = backend.processor.tokenizer.eos_token_id
    frames = np.random.default_rng(0).integers(0, 255, (2, 56, 56, 3), dtype=np.uint8)
    messages = [
        {"role": "user", "content": [{"type": "image"}] * 2 + [{"type": "text", "text": "?"}]}
    ]
    request = GenerationRequest(messages, frames)
    greedy = SamplingParams(k=1, temperature=0.0, max_new_tokens=8)
    tokens = backend.generate_plain(backend.encode([request]), greedy)
    assert tokens.shape == (1, 8) and eos not in tokens.tolist()[0]  # EOS held off for 8 tokens
    short = dataclasses.replace(greedy, max_new_tokens=4)
    assert backend._sampling_kwargs(short, multinomial=False)["min_new_tokens"] == 4  # capped
    with pytest.raises(ValueError, match=r"\['min_new_token'\] do not fit the 'hf' backend"):
        load_backend("hf", str(tiny_model_path), min_new_token=8)
