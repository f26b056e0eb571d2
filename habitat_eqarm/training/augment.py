"""C-GRPO's perturbations (docs/method.md §4): pure, seeded functions of frames and traces.

* temporal ``v^t``: :func:`shuffle_frames`, the keyframes in another order;
* spatial ``v^s``: :func:`mask_frames`, 16x16-pixel squares set to 0.0 over 15 % of each frame;
* reasoning ``z^r``: :func:`jumble_reasoning`, the trace's steps in another order.

**[ours]** A perturbation must differ from the original: permutations are redrawn until they
are not the identity. With fewer than 2 frames (or steps) there is no other order, so the
contrast is inactive: the function returns None and the trainer logs it.

The same three on a chat prompt, which is what the C-GRPO trainer perturbs, are
:data:`PERTURBATIONS` (one function per condition, keyed by its name) and
:func:`perturb_prompt`, which applies one to a copy of the prompt.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from habitat_eqarm.data.schema import EQAInstance
from habitat_eqarm.rewards.prompts import REWARD_MODEL_PROMPT, prompt_text

T = TypeVar("T")
Seed = int | np.random.Generator | None


def _rng(seed: Seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def non_identity_permutation(n: int, seed: Seed = None) -> np.ndarray | None:
    """A uniformly random permutation of ``range(n)`` other than the identity; None if n < 2."""
    if n < 2:
        return None
    rng = _rng(seed)
    while True:
        perm = rng.permutation(n)
        if not np.array_equal(perm, np.arange(n)):
            return perm


def shuffle_frames(frames: np.ndarray, seed: Seed = None) -> tuple[np.ndarray, np.ndarray] | None:
    """The frames ``(N, ...)`` in a non-identity order, and that order; None if N < 2."""
    perm = non_identity_permutation(len(frames), seed)
    if perm is None:
        return None
    return np.asarray(frames)[perm], perm


def mask_frames(
    frames: np.ndarray,
    seed: Seed = None,
    *,
    fraction: float = 0.15,
    patch: int = 16,
    value: float = 0.0,
) -> np.ndarray:
    """A copy of ``frames (N, H, W, C)`` with ``patch x patch`` squares set to ``value``.

    Each frame gets its own random squares, on the ``patch``-pixel grid and without overlap,
    as many as bring the masked area closest to ``fraction`` of the frame (at least one).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    frames = np.asarray(frames)
    if frames.ndim != 4:
        raise ValueError(f"frames must be (N, H, W, C), got shape {frames.shape}")
    n, h, w = frames.shape[:3]
    rows, cols = h // patch, w // patch
    if rows == 0 or cols == 0:
        raise ValueError(f"frames of {h}x{w} pixels are smaller than one {patch}x{patch} square")
    count = max(1, round(fraction * h * w / (patch * patch)))
    count = min(count, rows * cols)
    rng = _rng(seed)
    out = frames.copy()
    for i in range(n):
        for cell in rng.choice(rows * cols, size=count, replace=False):
            r, c = divmod(int(cell), cols)
            out[i, r * patch : (r + 1) * patch, c * patch : (c + 1) * patch] = value
    return out


def jumble_reasoning(steps: Sequence[T], seed: Seed = None) -> list[T] | None:
    """The reasoning steps in a non-identity order; None with fewer than 2 steps.

    The order of positions always changes; if steps repeat word for word, the text may not.
    """
    perm = non_identity_permutation(len(steps), seed)
    if perm is None:
        return None
    return [steps[int(i)] for i in perm]


# -- the perturbations of a chat prompt ---------------------------------------------------------

#: ``f(parts, row, rng, args) -> parts | None``: the user message's content ``parts`` (a list of
#: copies, changed in place or replaced), the dataset ``row`` (``question_id``, ``instance``
#: JSON), the seeded ``rng`` and the trainer's config (``mask_*``); None: the contrast is
#: inactive for this prompt.
PromptPerturbation = Callable[
    [list[dict[str, Any]], dict[str, Any], np.random.Generator, Any], list[dict[str, Any]] | None
]


def _image_slots(parts: list[dict[str, Any]]) -> list[int]:
    return [i for i, p in enumerate(parts) if p.get("type") == "image"]


def perturb_temporal(parts, row, rng, args) -> list[dict[str, Any]] | None:
    """``v^t``: the prompt's images in a non-identity order; None with fewer than 2."""
    image_slots = _image_slots(parts)
    order = non_identity_permutation(len(image_slots), rng)
    if order is None:
        return None
    images = [parts[i]["image"] for i in image_slots]
    for slot, j in zip(image_slots, order, strict=True):
        parts[slot] = {**parts[slot], "image": images[int(j)]}
    return parts


def perturb_spatial(parts, row, rng, args) -> list[dict[str, Any]] | None:
    """``v^s``: each image masked by :func:`mask_frames` with ``args.mask_*``; None if none."""
    image_slots = _image_slots(parts)
    if not image_slots:
        return None
    from PIL import Image

    frames = np.stack([np.asarray(parts[i]["image"].convert("RGB")) for i in image_slots])
    masked = mask_frames(
        frames, rng, fraction=args.mask_fraction, patch=args.mask_patch, value=args.mask_value
    )
    for slot, frame in zip(image_slots, masked, strict=True):
        parts[slot] = {**parts[slot], "image": Image.fromarray(frame)}
    return parts


def perturb_reasoning(parts, row, rng, args) -> list[dict[str, Any]] | None:
    """``z^r``: the prompt's text rebuilt with the row's reasoning steps jumbled; None with
    fewer than 2 steps."""
    inst = EQAInstance.from_dict(json.loads(row["instance"]), where=row["question_id"])
    steps = jumble_reasoning(inst.reasoning_steps, rng)
    if steps is None:
        return None
    inst.reasoning_steps = steps
    text = next(i for i, p in enumerate(parts) if p.get("type") == "text")
    parts[text] = {**parts[text], "text": prompt_text(REWARD_MODEL_PROMPT, inst)}
    return parts


#: Condition name -> its perturbation of a prompt, in the order the trainer runs them.
PERTURBATIONS: dict[str, PromptPerturbation] = {
    "temporal": perturb_temporal,
    "spatial": perturb_spatial,
    "reasoning": perturb_reasoning,
}
CONDITIONS = tuple(PERTURBATIONS)


def perturb_prompt(
    condition: str,
    prompt: list[dict[str, Any]],
    row: dict[str, Any],
    rng: np.random.Generator,
    args: Any,
) -> list[dict[str, Any]] | None:
    """A copy of the chat ``prompt`` (images embedded) under ``condition``, or None if that
    contrast is inactive for it; ``prompt`` itself is left as it is."""
    if condition not in PERTURBATIONS:
        raise ValueError(f"unknown condition {condition!r}")
    messages = [dict(m) for m in prompt]
    user = next(i for i, m in enumerate(messages) if m["role"] == "user")
    parts = [dict(p) for p in messages[user]["content"]]
    parts = PERTURBATIONS[condition](parts, row, rng, args)
    if parts is None:
        return None
    messages[user] = {**messages[user], "content": parts}
    return messages
