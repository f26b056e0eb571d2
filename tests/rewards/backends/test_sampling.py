"""The sort-free top-p sampler draws from exactly transformers' top-p distribution."""

import math

import pytest
import torch
from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

from habitat_eqarm.rewards.backends import sampling
from habitat_eqarm.rewards.backends.sampling import NucleusSampler, sample_top_p


def transformers_distribution(logits: torch.Tensor, temperature: float, top_p: float):
    """The probabilities transformers samples from: temperature, top-p, softmax."""
    scores = TemperatureLogitsWarper(temperature)(None, logits.clone())
    if top_p < 1.0:
        scores = TopPLogitsWarper(top_p)(None, scores)
    return torch.softmax(scores, dim=-1)


@pytest.mark.parametrize(
    ("temperature", "top_p", "scale"),
    [(0.8, 0.9, 2.0), (1.0, 0.5, 1.0), (0.7, 1.0, 1.0), (1.3, 0.95, 4.0)],
)
def test_draws_follow_transformers_top_p_distribution(temperature, top_p, scale):
    gen = torch.Generator().manual_seed(0)
    vocab, n = 40, 60_000
    logits = torch.randn(1, vocab, generator=gen) * scale
    expected = transformers_distribution(logits, temperature, top_p)[0]
    tokens = sample_top_p(
        logits.expand(n, vocab).contiguous(), temperature=temperature, top_p=top_p, generator=gen
    )
    freq = torch.bincount(tokens, minlength=vocab).double() / n
    # exactly the tokens transformers keeps can be drawn ...
    assert set(torch.nonzero(freq).flatten().tolist()) <= set(
        torch.nonzero(expected).flatten().tolist()
    )
    # ... and each as often as its probability says: within 5 standard errors
    sigma = torch.sqrt(expected.double() * (1 - expected.double()) / n)
    assert torch.all((freq - expected.double()).abs() <= 5 * sigma + 1e-9)
    # a chi-square check over the kept tokens (df = kept - 1; mean df, sd sqrt(2 df))
    kept = expected > 0
    counts, want = freq[kept] * n, expected[kept].double() * n
    chi2 = float(((counts - want) ** 2 / want).sum())
    df = int(kept.sum()) - 1
    assert chi2 < df + 6 * math.sqrt(2 * max(df, 1))


def test_nucleus_edges():
    gen = torch.Generator().manual_seed(1)
    # the most probable token alone holds more than top_p: it is always drawn
    peaked = torch.tensor([[10.0, 0.0, 0.0, 0.0]])
    assert sample_top_p(peaked.expand(500, 4), top_p=0.9, generator=gen).eq(0).all()
    # forbidden (-inf) tokens are never drawn, top_p = 1 reaches the least probable token
    logits = torch.tensor([[0.0, float("-inf"), -3.0, float("-inf")]])
    tokens = sample_top_p(logits.expand(4000, 4), top_p=1.0, generator=gen)
    assert set(tokens.tolist()) == {0, 2}
    # a row per distribution, in one call
    mixed = torch.tensor([[0.0, 9.0, 0.0], [9.0, 0.0, 0.0], [0.0, 0.0, 9.0]])
    assert sample_top_p(mixed, top_p=0.5, generator=gen).tolist() == [1, 0, 2]


def test_seeded_and_checked():
    logits = torch.randn(16, 100)
    a = sample_top_p(logits, top_p=0.9, generator=torch.Generator().manual_seed(3))
    b = sample_top_p(logits, top_p=0.9, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="top_p"):
        sample_top_p(logits, top_p=-0.1)
    # top_p = 0 keeps the most probable token only, as transformers does
    assert torch.equal(sample_top_p(logits, top_p=0.0), logits.argmax(dim=1))
    expected = transformers_distribution(logits, 1.0, 0.0)
    assert torch.equal(expected.argmax(dim=1), logits.argmax(dim=1))
    assert torch.all(expected.max(dim=1).values == 1.0)
    with pytest.raises(ValueError, match="temperature"):
        sample_top_p(logits, temperature=0.0)
    with pytest.raises(ValueError, match="batch, vocab"):
        sample_top_p(logits[0])
    with pytest.raises(ValueError, match="top_p"):
        NucleusSampler(0.8, 1.5)


def test_processor_leaves_only_the_drawn_token():
    logits = torch.randn(5, 30)
    sampler = NucleusSampler(0.8, 0.9, seed=7)
    out = sampler(torch.zeros(5, 1, dtype=torch.long), logits.clone())
    assert torch.isfinite(out).sum(dim=1).tolist() == [1] * 5
    drawn = out.argmax(dim=1)
    again = sample_top_p(
        logits, temperature=0.8, top_p=0.9, generator=torch.Generator().manual_seed(7)
    )
    assert torch.equal(drawn, again)
    # a seed drawn from torch's generator: torch.manual_seed makes the sampler reproducible
    torch.manual_seed(11)
    first = NucleusSampler(0.8, 0.9)(None, logits.clone())
    torch.manual_seed(11)
    assert torch.equal(NucleusSampler(0.8, 0.9)(None, logits.clone()), first)


@pytest.mark.parametrize(("temperature", "top_p"), [(0.8, 0.9), (1.0, 0.3)])
def test_the_sorting_fallback_draws_the_same_distribution(monkeypatch, temperature, top_p):
    """Rows rejected for REJECTION_ROUNDS rounds are sampled by sorting: with no rounds at all,
    every row goes that way, and the draws still follow transformers' distribution."""
    monkeypatch.setattr(sampling, "REJECTION_ROUNDS", 0)
    gen = torch.Generator().manual_seed(4)
    vocab, n = 30, 60_000
    logits = torch.randn(1, vocab, generator=gen) * 2
    expected = transformers_distribution(logits, temperature, top_p)[0].double()
    tokens = sample_top_p(
        logits.expand(n, vocab).contiguous(), temperature=temperature, top_p=top_p, generator=gen
    )
    freq = torch.bincount(tokens, minlength=vocab).double() / n
    assert set(torch.nonzero(freq).flatten().tolist()) <= set(
        torch.nonzero(expected).flatten().tolist()
    )
    sigma = torch.sqrt(expected * (1 - expected) / n)
    assert torch.all((freq - expected).abs() <= 5 * sigma + 1e-9)


def test_small_nucleus_in_a_flat_distribution_and_bad_logits():
    gen = torch.Generator().manual_seed(5)
    flat = torch.zeros(64, 5000)
    flat[:, 7] = 0.5  # the most probable token, by a little: top_p this small keeps only it
    assert sample_top_p(flat, top_p=1e-4, generator=gen).eq(7).all()
    with pytest.raises(ValueError, match="NaN"):
        sample_top_p(torch.tensor([[0.0, float("nan")]]), top_p=0.9)
    with pytest.raises(ValueError, match="NaN"):
        sample_top_p(torch.full((1, 3), float("-inf")), top_p=0.9)
