"""`StageRun.ask`, the ask-and-retry loop the generate and judge stages share."""

from types import SimpleNamespace

import numpy as np

from habitat_eqarm.bench.builder.common import StageReport, StageRun
from habitat_eqarm.rewards.backends.base import GenerationRequest, GenerationResult, RewardBackend


class FlakyBackend(RewardBackend):
    """Test double: answers each request with its text plus the call number; a request whose
    text is in ``fail_at[call]`` makes that call raise."""

    def __init__(self, fail_at):
        self.fail_at, self.calls = fail_at, []

    def sample(self, requests, params):
        self.calls.append([r.messages[0]["content"] for r in requests])
        if any(r.messages[0]["content"] in self.fail_at.get(len(self.calls), ()) for r in requests):
            raise RuntimeError("endpoint refused it")
        return [
            GenerationResult([f"{r.messages[0]['content']}@{len(self.calls)}"]) for r in requests
        ]


class Run(StageRun):
    def chunk(self, items):
        raise AssertionError("not used here")


def request(text):
    return GenerationRequest([{"role": "user", "content": text}], np.zeros((0, 1, 1, 3), np.uint8))


def test_ask_retries_the_unusable_and_drops_what_fails_even_after_an_attempt():
    cfg = SimpleNamespace(max_attempts=3, seed=0, temperature=0.8, top_p=0.9, max_new_tokens=8)
    # call 1: the batch of a, b, c; call 3 (b and c again) fails, and so does c alone after it
    backend = FlakyBackend({3: {"c"}, 5: {"c"}})
    report = StageReport("test")
    run = Run(cfg, None, report, backend, lambda n: None)
    got = run.ask(
        {text: request(text) for text in "abc"},
        parse=lambda item, result, attempt: (result.texts[0], attempt),
        retry=lambda answer: answer[0][0] != "a",  # only a is usable at once
        what="generation",
    )
    assert backend.calls[:3] == [["a", "b", "c"], ["b", "c"], ["b", "c"]]
    assert backend.calls[3:] == [["b"], ["c"]]  # the failed call, request by request
    assert got == {"a": ("a@1", 1), "b": ("b@4", 3)}  # c's earlier answer is not kept
    assert report.skipped == [
        {"id": "c", "reason": "generation failed: RuntimeError: endpoint refused it"}
    ]
