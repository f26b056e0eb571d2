"""A discriminative multi-response reward model: a value head on the last token of each response.

The N responses to one question are laid out as in the generative multi-response prompt
(:mod:`habitat_eqarm.rewards.multi_response`), each block followed by the ``<|endoftext|>``
token, and the frames and responses are run through the VLM once. A linear head reads the last
layer's hidden state at each response's end token, which has attended to the frames, the
question and that response (and, causally, the responses listed before it): one score per
response from one forward pass.

Training (``eqarm train value-head``) uses the bench's groups: responses to one question (same
:func:`~habitat_eqarm.data.schema.base_question_id`) with different GT scores, and either loss:

* Bradley-Terry: ``softplus(s_j - s_i)`` (= ``-log sigmoid(s_i - s_j)``) averaged over every
  pair with ``gt_i > gt_j``;
* listwise (ListNet): cross-entropy between ``softmax(gt / T)`` and ``softmax(s)`` over a group.

With the backbone frozen (the default) the features of each group are computed once per order
(``ORDERS_PER_GROUP`` seeded orders, cycled over the epochs, so the head cannot learn a
position) and only the head trains; ``train_backbone`` fine-tunes the VLM as well.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from habitat_eqarm.data.episode import EpisodeMemory
from habitat_eqarm.data.io import atomic_write_text
from habitat_eqarm.data.loading import load_instances
from habitat_eqarm.data.schema import EQAInstance, base_question_id
from habitat_eqarm.rewards.backends.base import GenerationRequest
from habitat_eqarm.rewards.multi_response import MULTI_RESPONSE_PROMPT, response_block, vote_orders
from habitat_eqarm.training.value_head_config import ValueHeadConfig

END_TOKEN = "<|endoftext|>"
ORDERS_PER_GROUP = 4
HEAD_FILE, INFO_FILE = "value_head.pt", "value_head.json"


def bradley_terry_loss(scores: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Mean ``-log sigmoid(s_i - s_j)`` over the pairs with ``gt_i > gt_j`` (0 if none)."""
    better = gt[:, None] > gt[None, :]
    margins = scores[:, None] - scores[None, :]
    if not better.any():
        return scores.sum() * 0.0
    return torch.nn.functional.softplus(-margins[better]).mean()


def listwise_loss(scores: torch.Tensor, gt: torch.Tensor, temperature: float = 1.0):
    """ListNet: cross-entropy of ``softmax(scores)`` against ``softmax(gt / temperature)``."""
    target = torch.softmax(gt.to(scores.dtype) / temperature, dim=0)
    return -(target * torch.log_softmax(scores, dim=0)).sum()


def pair_counts(scores: Sequence[float], gt: Sequence[float]) -> tuple[int, int]:
    """``(correct, pairs)`` of one group: pairs with different GT ordered right (ties miss)."""
    correct = pairs = 0
    for i in range(len(gt)):
        for j in range(len(gt)):
            if gt[i] > gt[j]:
                pairs += 1
                correct += scores[i] > scores[j]
    return correct, pairs


def load_groups(path: str, split: str | None, max_responses: int) -> list[list[EQAInstance]]:
    """Labelled responses grouped by question, in chunks of at most ``max_responses``; only
    chunks with two or more different GT scores (the ones a ranking loss can learn from)."""
    by_question: dict[str, list[EQAInstance]] = {}
    for inst in load_instances(path, split):
        if inst.gt_score is not None:
            by_question.setdefault(base_question_id(inst.question_id), []).append(inst)
    groups = []
    for members in by_question.values():
        for start in range(0, len(members), max_responses):
            chunk = members[start : start + max_responses]
            if len({inst.gt_score for inst in chunk}) > 1:
                groups.append(chunk)
    return groups


class ValueHeadScorer:
    """A VLM (an ``hf`` backend's model and processor) plus a linear value head."""

    def __init__(self, backend: Any, head: torch.nn.Linear, num_keyframes: int = 5) -> None:
        self.backend = backend
        self.head = head
        self.num_keyframes = num_keyframes
        self.end_id = backend.processor.tokenizer.convert_tokens_to_ids(END_TOKEN)
        self._frames: dict[tuple[str, tuple[int, ...]], Any] = {}

    def request(self, group: Sequence[EQAInstance]) -> GenerationRequest:
        """The one prompt of a group: its frames, the question, each response + end token."""
        first = group[0]
        if not first.episode_path:
            raise ValueError(f"instance {first.question_id!r} has no episode_path")
        memory = EpisodeMemory.from_path(first.episode_path)
        indices = tuple(first.keyframe_indices or memory.keyframes(self.num_keyframes, "uniform"))
        key = (first.episode_path, indices)
        if key not in self._frames:
            self._frames[key] = memory.frames(list(indices))
        blocks = [response_block(i, inst) + END_TOKEN for i, inst in enumerate(group, 1)]
        text = f"Question: {first.question.strip()}\n\n" + "\n\n".join(blocks)
        media = [{"type": "image"} for _ in indices]
        messages = [
            {"role": "system", "content": [{"type": "text", "text": MULTI_RESPONSE_PROMPT.system}]},
            {"role": "user", "content": [*media, {"type": "text", "text": text}]},
        ]
        return GenerationRequest(messages, self._frames[key], prompt_id="eqarm-value-head-v1")

    def features(self, group: Sequence[EQAInstance]) -> torch.Tensor:
        """Last-layer hidden states at each response's end token, ``(N, hidden)`` float32."""
        inputs = self.backend.encode([self.request(group)])
        ends = (inputs["input_ids"][0] == self.end_id).nonzero().flatten()
        if len(ends) != len(group):
            raise ValueError(
                f"group of {group[0].question_id!r}: {len(ends)} end tokens for {len(group)} "
                f"responses (does a response contain {END_TOKEN}?)"
            )
        hidden = self.backend.model.model(**inputs).last_hidden_state[0]
        return hidden[ends].float()

    def scores(self, group: Sequence[EQAInstance]) -> torch.Tensor:
        """One score per response of ``group``, in its order."""
        return self.head(self.features(group)).squeeze(-1)

    @torch.no_grad()
    def score_groups(self, groups: Sequence[Sequence[EQAInstance]]) -> list[list[float]]:
        """Scores of every group's responses (no gradients)."""
        return [self.scores(group).tolist() for group in groups]

    def save(self, output_dir: str | Path, info: dict[str, Any]) -> None:
        """``value_head.pt`` (the head's weights) and ``value_head.json`` (``info``)."""
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / f".{HEAD_FILE}.tmp"
        torch.save(self.head.state_dict(), tmp)
        tmp.replace(out / HEAD_FILE)
        atomic_write_text(out / INFO_FILE, json.dumps(info, indent=2) + "\n")

    @classmethod
    def load(cls, output_dir: str | Path, **backend_kwargs: Any) -> ValueHeadScorer:
        """A trained scorer from ``output_dir`` (its backbone: the one it names, or the saved
        fine-tuned one)."""
        from habitat_eqarm.rewards.backends.hf import HFBackend

        out = Path(output_dir)
        info = json.loads((out / INFO_FILE).read_text())
        backend = HFBackend(info["backbone"], max_pixels=info["max_pixels"], **backend_kwargs)
        head = torch.nn.Linear(info["hidden_size"], 1).to(backend.device)
        head.load_state_dict(torch.load(out / HEAD_FILE, map_location=backend.device))
        return cls(backend, head, info["num_keyframes"])


def pairwise_accuracy(scorer: ValueHeadScorer, groups: Sequence[Sequence[EQAInstance]]) -> dict:
    """Share of pairs with different GT (each counted once) that the scores order right."""
    correct = pairs = 0
    for group, scores in zip(groups, scorer.score_groups(groups), strict=True):
        c, p = pair_counts(scores, [inst.gt_score for inst in group])
        correct, pairs = correct + c, pairs + p
    return {"accuracy": correct / pairs if pairs else None, "pairs": pairs}


def _loss(cfg: ValueHeadConfig, scores: torch.Tensor, group) -> torch.Tensor:
    gt = torch.tensor([float(inst.gt_score) for inst in group], device=scores.device)
    if cfg.loss == "listwise":
        return listwise_loss(scores, gt, cfg.listwise_temperature)
    return bradley_terry_loss(scores, gt)


def build_scorer(cfg: ValueHeadConfig) -> ValueHeadScorer:
    """The backbone (frozen unless ``train_backbone``) and a fresh, zero head."""
    from habitat_eqarm.rewards.backends.hf import HFBackend

    backend = HFBackend(
        cfg.model_name_or_path, device=cfg.device, dtype=cfg.dtype, max_pixels=cfg.max_pixels
    )
    backend.model.requires_grad_(cfg.train_backbone)
    backend.model.train(cfg.train_backbone)
    head = torch.nn.Linear(backend.model.config.get_text_config().hidden_size, 1)
    # a fresh head scores every response alike (all pairs tie): any order it ends with is learnt
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    return ValueHeadScorer(backend, head.to(backend.device), cfg.num_keyframes)


def train_value_head(cfg: ValueHeadConfig, progress: Any = None) -> dict[str, Any]:
    """Train the head (and the backbone if asked); save it; return the metrics.

    ``progress``: called with 1 after each group step (a progress bar's ``update``).
    """
    if not cfg.data:
        raise ValueError("value-head training needs --data: labelled instances with gt_score")
    groups = load_groups(cfg.data, cfg.data_split, cfg.max_responses)
    if not groups:
        raise ValueError(f"{cfg.data}: no question with two responses of different gt_score")
    scorer = build_scorer(cfg)
    params = list(scorer.head.parameters())
    if cfg.train_backbone:
        params += [p for p in scorer.backend.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    rng = random.Random(cfg.seed)
    orders = [
        vote_orders(len(g), ORDERS_PER_GROUP, cfg.seed + i, cfg.shuffle)
        for i, g in enumerate(groups)
    ]
    cached: dict[tuple[int, int], torch.Tensor] = {}
    before = pairwise_accuracy(scorer, groups)
    losses = []
    for epoch in range(cfg.epochs):
        total = 0.0
        for g in rng.sample(range(len(groups)), len(groups)):
            order = orders[g][epoch % ORDERS_PER_GROUP]
            listed = [groups[g][i] for i in order]
            if cfg.train_backbone:
                feats = scorer.features(listed)
            else:
                if (g, epoch % ORDERS_PER_GROUP) not in cached:
                    with torch.no_grad():
                        cached[g, epoch % ORDERS_PER_GROUP] = scorer.features(listed)
                feats = cached[g, epoch % ORDERS_PER_GROUP]
            loss = _loss(cfg, scorer.head(feats).squeeze(-1), listed)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
            if progress:
                progress(1)
        losses.append(total / len(groups))
    scorer.backend.model.eval()
    metrics = {
        "groups": len(groups),
        "loss": cfg.loss,
        "epoch_losses": losses,
        "train_pairwise_before": before,
        "train_pairwise": pairwise_accuracy(scorer, groups),
    }
    if cfg.eval_data:
        held_out = load_groups(cfg.eval_data, None, cfg.max_responses)
        metrics["eval_pairwise"] = pairwise_accuracy(scorer, held_out)
    backbone = cfg.model_name_or_path
    if cfg.train_backbone:
        scorer.backend.model.save_pretrained(cfg.output_dir)
        scorer.backend.processor.save_pretrained(cfg.output_dir)
        backbone = str(cfg.output_dir)
    info = {
        "backbone": backbone,
        "hidden_size": scorer.head.in_features,
        "num_keyframes": cfg.num_keyframes,
        "max_pixels": cfg.max_pixels,
        "end_token": END_TOKEN,
        "metrics": metrics,
    }
    scorer.save(cfg.output_dir, info)
    return metrics
