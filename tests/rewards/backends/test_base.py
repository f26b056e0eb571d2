"""`RewardBackend.generate`: greedy requests are decoded once and repeated K times, by every
backend alike (the repetition lives in the base class, not in each backend)."""

import json

import httpx
import numpy as np
import pytest

from habitat_eqarm.rewards.backends.base import (
    GenerationRequest,
    GenerationResult,
    RewardBackend,
    SamplingParams,
)
from habitat_eqarm.rewards.backends.openai_compat import OpenAIBackend


class CountingBackend(RewardBackend):
    """Test double: answers sample i of a call with ``"<call>-<i>"`` and records each call's K."""

    def __init__(self):
        self.ks = []

    def sample(self, requests, params):
        self.ks.append(params.k)
        call = len(self.ks)
        return [
            GenerationResult([f"{call}-{i}" for i in range(params.k)], {"generate_s": 0.5})
            for _ in requests
        ]


def text_request(text="Q?"):
    messages = [{"role": "user", "content": [{"type": "text", "text": text}]}]
    return GenerationRequest(messages, np.zeros((0, 1, 1, 3), np.uint8), prompt_id="p")


def test_greedy_asks_for_one_text_and_repeats_it_k_times():
    backend = CountingBackend()
    results = backend.generate([text_request(), text_request()], SamplingParams(k=3, temperature=0))
    assert backend.ks == [1]
    assert [r.texts for r in results] == [["1-0"] * 3, ["1-0"] * 3]
    assert results[0].timings == {"generate_s": 0.5}


@pytest.mark.parametrize("params", [SamplingParams(k=3), SamplingParams(k=1, temperature=0)])
def test_sampling_and_single_greedy_requests_pass_through(params):
    backend = CountingBackend()
    (result,) = backend.generate([text_request()], params)
    assert backend.ks == [params.k] and result.texts == [f"1-{i}" for i in range(params.k)]


def test_a_backend_must_implement_sample():
    class Incomplete(RewardBackend):
        pass

    with pytest.raises(TypeError, match="sample"):
        Incomplete()


def test_openai_greedy_sends_one_call_and_caches_one_entry(tmp_path):
    """Greedy K=3: one HTTP call with n=1, one cache entry; the counters count that entry."""
    bodies = []

    def answer(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        choices = [{"index": 0, "message": {"role": "assistant", "content": "<score>7</score>"}}]
        return httpx.Response(200, json={"choices": choices})

    def backend() -> OpenAIBackend:
        made = OpenAIBackend("m", base_url="http://test/v1", cache_dir=tmp_path / "cache")
        made._client = httpx.Client(transport=httpx.MockTransport(answer))
        return made

    greedy = SamplingParams(k=3, temperature=0.0, max_new_tokens=4)
    first = backend()
    (result,) = first.generate([text_request()], greedy)
    assert result.texts == ["<score>7</score>"] * 3
    assert [b["n"] for b in bodies] == [1] and len(list(first.cache.root.rglob("*.json"))) == 1
    assert (first.stats["http_requests"], first.stats["cache_misses"]) == (1, 1)

    again = backend()  # a re-run: the one entry answers all three samples
    (cached,) = again.generate([text_request()], greedy)
    assert cached.texts == result.texts and len(bodies) == 1
    assert (again.stats["cache_hits"], again.stats["cache_misses"]) == (1, 0)
    first.close()
    again.close()
