"""Nucleus (top-p) sampling without sorting the vocabulary.

transformers samples top-p by sorting every row of the vocabulary (``TopPLogitsWarper``), then
``torch.multinomial`` draws one exponential per vocabulary entry. Both grow with the rows of a
batch: on CPU, at Qwen2-VL's 151,936 tokens, that is ~16 ms per row and step; at a tiny model's
2,048, it is most of the per-row cost of a decode step (``benchmarks/vector_reward.py``).

:func:`sample_top_p` draws from the same distribution with a few passes over each row and
one uniform number per draw: it draws a token from the full (temperature-scaled) distribution
by inverse CDF, and accepts it when it is in the nucleus, i.e. when the tokens more probable
than it hold less than ``top_p`` of the mass (transformers' rule: the smallest set of most
probable tokens whose mass reaches ``top_p``, the most probable always kept). A rejected row
draws again. Conditioning the full distribution on the nucleus is the renormalised nucleus
distribution, which is what transformers samples. A draw is accepted with probability equal to
the nucleus mass, at least ``top_p``, so a row needs ``1 / top_p`` draws on average; the few
rows still rejected after :data:`REJECTION_ROUNDS` (a small ``top_p`` over a flat
distribution) are sampled by sorting. (FlashInfer's GPU sampling kernels also sample top-p by
rejection rather than by sorting.)

One difference: tokens of *equal* probability at the nucleus' edge are all kept here, where a
sort keeps as many of them as the mass needs, picked by the sort's (unspecified) order. With
float32 logits such ties are rare; with bf16 logits (the default on GPUs) they are common, and
a step's distribution can then differ from transformers' by up to ~1e-3 in total variation
(a 152k-token row at top-p 0.9): the tied tokens get equal chances instead of arbitrary ones.
The sorting fallback follows the sort order, like transformers.

:class:`NucleusSampler` runs it inside ``generate`` as the last logits processor: it samples
the token and leaves only that token finite, so ``generate``'s own selection (argmax, or a
multinomial draw from a one-hot distribution) returns it. Its uniform numbers come from its own
``torch.Generator``, so the tokens do not depend on whether ``generate`` itself also draws.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

#: Rounds of rejection before the rows still pending are sampled by sorting. A round accepts a
#: row with probability equal to its nucleus mass (>= top_p): at top_p = 0.9, 8 rounds leave a
#: row pending with probability <= 1e-8.
REJECTION_ROUNDS = 8


def check_sampling(temperature: float, top_p: float) -> None:
    """Raise ValueError unless ``temperature > 0`` and ``0 <= top_p <= 1``."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 for sampling, got {temperature}")
    if not 0.0 <= top_p <= 1.0:
        raise ValueError(f"top_p must be in [0, 1], got {top_p}")


def sample_top_p(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One token per row of ``logits`` ``(B, V)``: softmax(logits / temperature), top-p.

    ``-inf`` logits (tokens a processor forbade) are never drawn; ``top_p=0`` keeps the most
    probable token only, as transformers does. Rows still rejected after
    :data:`REJECTION_ROUNDS` rounds (a small nucleus in a flat distribution) are sampled by
    sorting, as transformers does. Returns a ``(B,)`` long tensor.
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must be (batch, vocab), got shape {tuple(logits.shape)}")
    check_sampling(temperature, top_p)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p == 0.0:  # transformers keeps min_tokens_to_keep = 1: the most probable token
        return probs.argmax(dim=-1)
    # float64: in float32 a 152k-token cumulative sum near 1 has steps of 6e-8, and the tokens
    # of the long tail, each below that, could never be drawn
    cdf = probs.cumsum(dim=-1, dtype=torch.float64)
    out = torch.empty(probs.shape[0], dtype=torch.long, device=probs.device)
    pending = None  # the rows still to draw: all of them at first, then the rejected ones
    for _ in range(REJECTION_ROUNDS):
        tokens = _inverse_cdf(cdf, generator).clamp_(max=probs.shape[1] - 1)
        drawn = probs.gather(1, tokens)
        # drawn > 0: u * total may round up to the total, and the clamp then picks the last
        # token, which may be forbidden; such a draw is rejected like one outside the nucleus
        accepted = drawn > 0
        if top_p < 1.0:  # in the nucleus: the tokens more probable than it hold < top_p
            accepted &= (probs * (probs > drawn)).sum(dim=-1, keepdim=True) < top_p
        if pending is None:
            out.copy_(tokens[:, 0])
            pending = torch.arange(probs.shape[0], device=probs.device)
        else:
            out[pending] = tokens[:, 0]  # rejected rows are overwritten by a later round
        if bool(accepted.all()):
            return out
        rejected = ~accepted[:, 0]
        pending, probs, cdf = pending[rejected], probs[rejected], cdf[rejected]
    # NaN logits, or a row of -inf only, give NaN probabilities: never accepted, they end here
    if not bool(torch.isfinite(cdf[:, -1]).all()):
        raise ValueError("top-p sampling: the logits hold NaN, or every token is -inf in a row")
    if pending is None:  # REJECTION_ROUNDS = 0
        pending = torch.arange(probs.shape[0], device=probs.device)
    out[pending] = _sorted_top_p(probs, top_p, generator)
    return out


def _inverse_cdf(cdf: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One draw per row ``(rows, 1)`` from the unnormalised cumulative distribution ``cdf``.

    ``right=True``: the first index whose cdf exceeds u, so a zero-probability token (its cdf
    equal to its predecessor's) is never chosen.
    """
    u = torch.rand((cdf.shape[0], 1), generator=generator, device=cdf.device, dtype=cdf.dtype)
    return torch.searchsorted(cdf, u * cdf[:, -1:], right=True)


def _sorted_top_p(
    probs: torch.Tensor, top_p: float, generator: torch.Generator | None
) -> torch.Tensor:
    """transformers' way: sort each row, keep the prefix whose earlier mass is < top_p, draw."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    earlier = sorted_probs.cumsum(dim=-1) - sorted_probs
    in_nucleus = earlier < top_p  # a prefix of each row; the first token always
    kept = torch.where(in_nucleus, sorted_probs, 0.0)
    last = in_nucleus.sum(dim=-1, keepdim=True) - 1  # u * total rounding up stays inside
    cdf = kept.cumsum(dim=-1, dtype=torch.float64)
    position = torch.minimum(_inverse_cdf(cdf, generator), last)
    return order.gather(1, position)[:, 0]


class NucleusSampler(LogitsProcessor):
    """Temperature + top-p sampling as ``generate``'s last logits processor (see module doc).

    Pass it in ``logits_processor`` with ``generate``'s own temperature and top-p off
    (temperature 1, top_p 1, top_k 0). ``seed`` seeds its generator; None draws a seed from
    torch's global generator, so ``torch.manual_seed`` still makes a run reproducible.
    """

    def __init__(self, temperature: float, top_p: float, seed: int | None = None) -> None:
        check_sampling(temperature, top_p)
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.seed = int(torch.randint(0, 2**62, ()).item()) if seed is None else int(seed)
        self.generator: torch.Generator | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.generator is None or self.generator.device != scores.device:
            self.generator = torch.Generator(device=scores.device).manual_seed(self.seed)
        tokens = sample_top_p(
            scores, temperature=self.temperature, top_p=self.top_p, generator=self.generator
        )
        chosen = torch.full_like(scores, float("-inf"))
        return chosen.scatter_(1, tokens.unsqueeze(1), 0.0)
