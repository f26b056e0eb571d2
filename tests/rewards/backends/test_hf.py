import numpy as np
import pytest
import torch

from habitat_eqarm.data import EpisodeMemory, EQAInstance
from habitat_eqarm.rewards.backends.base import GenerationRequest, SamplingParams
from habitat_eqarm.rewards.backends.hf import HFBackend, pick_dtype
from habitat_eqarm.rewards.prompts import REWARD_MODEL_PROMPT, build_messages


@pytest.fixture(scope="module")
def backend(tiny_model_path):
    return HFBackend(str(tiny_model_path), batch_size=2)


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
    handle = model.lm_head.register_forward_hook(lambda m, i, o: seen.append(o[:, -1].float()))
    return seen, handle


def test_shared_prefill_gives_exactly_the_tokens_and_logits_of_plain_generate(backend, requests_):
    k = 4
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
    # shared: one prefix prefill, then one call per new token for all B*K rows
    assert len(shared_logits) == len(plain_logits) + 1
    for step, (p, s) in enumerate(zip(plain_logits, shared_logits[1:], strict=True)):
        torch.testing.assert_close(
            p.repeat_interleave(k, 0), s, atol=1e-4, rtol=1e-4, msg=str(step)
        )


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
    shared = backend.generate_shared(backend.encode(mixed), greedy)
    assert torch.equal(shared, backend.generate_plain(backend.encode(mixed), greedy))
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
