"""Multi-response scoring: N answers to one question judged in one prompt (issue 14, point 2).

The frames of an episode dominate a reward-model prompt (5 keyframes are ~2,400 of ~2,700
tokens), so scoring the N responses to one question one by one prefills the same frames N
times. The ``eqarm-rm-multi-v1`` prompt lists all N responses, each between ``[Response i]`` and
``[End of response i]``, and asks for one evaluation per response::

    <evaluation response="1"><critique>...</critique><score>7</score></evaluation>
    <evaluation response="2"><critique>...</critique><score>2</score></evaluation>

:func:`parse_multi_evaluation` reads that strictly and never raises: anything but exactly one
well-formed evaluation for each of the N labels (blocks in any order, whitespace between them,
nothing else) makes the whole sample invalid, with the reason. A sample with a wrong count,
a missing or repeated label, or a score outside 0..10 tells nothing reliable about any one
response, so none of its scores is kept.

:func:`score_groups` (``EQARewardModel.score_multi``) draws K votes per group. With ``shuffle``
each vote lists the responses in its own seeded order (the position of a response in the prompt
biases a judge) and the scores are mapped back to the responses; every vote is then its own
prompt. Without it the K votes are K samples of one prompt (one prefill). Either way each
response gets a :class:`~habitat_eqarm.rewards.model.Judgement` with one sample per vote, so
the K-prefix and aggregate machinery of the pointwise protocol applies unchanged.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from habitat_eqarm.data.episode import EpisodeMemory
from habitat_eqarm.data.schema import EQAInstance
from habitat_eqarm.rewards.backends.base import GenerationRequest, SamplingParams
from habitat_eqarm.rewards.model import (
    EQARewardModel,
    Judgement,
    Sample,
    check_call,
    judgement_from_samples,
    open_memories,
)
from habitat_eqarm.rewards.parsing import SCORE_MAX, SCORE_MIN, parse_evaluation
from habitat_eqarm.rewards.prompts import RM_RUBRIC, Prompt, format_reasoning

MULTI_RESPONSE_PROMPT = Prompt(
    id="eqarm-rm-multi-v1",
    system=(
        "You evaluate answers to embodied questions. An agent explored an indoor scene; then "
        "several responses, each a reasoning trace and an answer, were given to a question "
        "about it. You see keyframes of the episode memory, the question and the numbered "
        "responses. You do not know the correct answer: judge each response on its own, from "
        "what the frames show and how sound its reasoning is."
    ),
    user=(
        "The images above are keyframes of the agent's episode memory, in time order.\n\n"
        "Question: {question}\n\n"
        "{responses}\n\n"
        "Score each of the {n} responses from 0 (worst) to 10 (best), independently of the "
        "others and of their order:\n"
        + RM_RUBRIC
        + "Reply with exactly one evaluation per response ({labels}), each a short critique "
        "then the integer score, and nothing else:\n"
        '<evaluation response="1"><critique>your critique</critique><score>N</score>'
        "</evaluation>\n...one block per response..."
    ),
)

_BLOCK = re.compile(r'<evaluation response="([^"<>]*)">(.*?)</evaluation>', re.DOTALL)
_LABEL = re.compile(r"\A[1-9][0-9]*\Z")
_SCORE_VALUE = re.compile(r"<score>\s*([+-]?[0-9]+)\s*</score>\s*\Z")


@dataclass(frozen=True)
class ParsedMultiEvaluation:
    """One multi-response sample: per-response critiques and scores (index i = label i + 1).

    ``format_ok`` is False with a ``reason`` unless the text holds exactly one well-formed
    evaluation for each label 1..N; an invalid sample's scores and critiques are all None.
    """

    critiques: list[str | None]
    scores: list[int | None]
    format_ok: bool
    reason: str | None = None


def _invalid(n: int, reason: str) -> ParsedMultiEvaluation:
    return ParsedMultiEvaluation([None] * n, [None] * n, False, reason)


def _check_label(label: str, n: int, seen: dict[int, object]) -> str | None:
    if not _LABEL.match(label):
        return f"response label {label!r} is not a number 1..{n}"
    if int(label) > n:
        return f"response label {label} names no response (there are {n})"
    if int(label) in seen:
        return f"two evaluations of response {label}"
    return None


def _check_body(label: str, body: str) -> str | None:
    parsed = parse_evaluation(body)
    if parsed.format_ok:
        return None
    value = _SCORE_VALUE.search(body)
    if value and not SCORE_MIN <= int(value.group(1)) <= SCORE_MAX:
        return f"response {label}: score {value.group(1)} outside {SCORE_MIN}..{SCORE_MAX}"
    return f"response {label}: not one non-empty <critique> then one integer <score>"


def parse_multi_evaluation(text: str, n: int) -> ParsedMultiEvaluation:
    """Parse a multi-response output for ``n`` responses strictly; never raises."""
    if not isinstance(text, str):
        return _invalid(n, "output is not text")
    blocks, cursor = {}, 0
    for match in _BLOCK.finditer(text):
        if text[cursor : match.start()].strip():
            return _invalid(n, "text outside the evaluation blocks")
        label, body = match.group(1), match.group(2)
        problem = _check_label(label, n, blocks) or _check_body(label, body)
        if problem:
            return _invalid(n, problem)
        blocks[int(label)] = parse_evaluation(body)
        cursor = match.end()
    if text[cursor:].strip():
        return _invalid(n, "text outside the evaluation blocks")
    if len(blocks) != n:
        missing = sorted(set(range(1, n + 1)) - set(blocks))
        return _invalid(n, f"{len(blocks)} evaluations for {n} responses (missing {missing})")
    ordered = [blocks[i] for i in range(1, n + 1)]
    return ParsedMultiEvaluation([p.critique for p in ordered], [p.score for p in ordered], True)


def response_block(label: int, instance: EQAInstance) -> str:
    """One response between ``[Response i]`` and ``[End of response i]``: trace, then answer."""
    answer = (instance.predicted_answer or "(no answer)").strip()
    return (
        f"[Response {label}]\nReasoning trace:\n{format_reasoning(instance.reasoning_steps)}\n"
        f"Predicted answer: {answer}\n[End of response {label}]"
    )


def responses_text(instances: Sequence[EQAInstance]) -> str:
    """The responses as delimited blocks, labelled 1..N in the given order."""
    return "\n\n".join(response_block(i, inst) for i, inst in enumerate(instances, 1))


def multi_prompt_text(instances: Sequence[EQAInstance], prompt: Prompt = MULTI_RESPONSE_PROMPT):
    """The user text of the multi-response prompt for one group, responses in the given order."""
    n = len(instances)
    return prompt.render(
        question=instances[0].question.strip(),
        responses=responses_text(instances),
        n=str(n),
        labels=", ".join(str(i) for i in range(1, n + 1)),
    )


def check_group(group: Sequence[EQAInstance]) -> None:
    """A group is responses to one question about one episode, each with its own id."""
    if not group:
        raise ValueError("an empty group of responses")
    first = group[0]
    ids = [inst.question_id for inst in group]
    if len(set(ids)) != len(ids):
        raise ValueError(f"group of {first.question_id!r}: repeated question_id")
    for inst in group[1:]:
        for name in ("question", "episode_path", "keyframe_indices"):
            if getattr(inst, name) != getattr(first, name):
                raise ValueError(
                    f"group of {first.question_id!r}: {inst.question_id!r} has another {name}"
                )


def vote_orders(n: int, k: int, seed: int | None, shuffle: bool) -> list[list[int]]:
    """The order of the responses in each of the K votes (identity without ``shuffle``)."""
    rng = random.Random(f"multi-order/{seed}")
    orders = []
    for _ in range(k):
        order = list(range(n))
        if shuffle:
            rng.shuffle(order)
        orders.append(order)
    return orders


def group_requests(
    model: EQARewardModel,
    group: Sequence[EQAInstance],
    orders: Sequence[Sequence[int]],
    memory: EpisodeMemory | None,
    prompt: Prompt,
) -> tuple[list[GenerationRequest], list[int]]:
    """One request per distinct order of ``group`` (frames read once) and the keyframes used."""
    frames, indices = model.keyframes_for(group[0], memory)
    as_video = model.frames_as == "video"
    media = [{"type": "video"}] if as_video else [{"type": "image"} for _ in indices]
    requests = []
    for order in orders:
        text = multi_prompt_text([group[i] for i in order], prompt)
        messages = [
            {"role": "system", "content": [{"type": "text", "text": prompt.system}]},
            {"role": "user", "content": [*media, {"type": "text", "text": text}]},
        ]
        requests.append(GenerationRequest(messages, frames, as_video, prompt_id=prompt.id))
    return requests, indices


def votes_to_judgements(
    group: Sequence[EQAInstance],
    votes: Sequence[tuple[Sequence[int], str]],
    *,
    aggregate: str,
    prompt_id: str,
    model: str,
    keyframe_indices: Sequence[int] = (),
    timings: dict[str, float] | None = None,
) -> list[Judgement]:
    """Per-response judgements from K ``(order, text)`` votes; scores mapped back by order.

    Each response's sample i holds vote i's full text, that response's critique, score and
    position in the vote, and the vote's validity and reason (the same for its every response).
    """
    per_response: list[list[Sample]] = [[] for _ in group]
    for order, text in votes:
        parsed = parse_multi_evaluation(text, len(order))
        for position, index in enumerate(order):
            per_response[index].append(
                Sample(
                    text=text,
                    critique=parsed.critiques[position],
                    score=parsed.scores[position],
                    format_ok=parsed.format_ok,
                    reason=parsed.reason,
                    position=position,
                )
            )
    return [
        judgement_from_samples(
            inst,
            samples,
            aggregate=aggregate,
            prompt_id=prompt_id,
            model=model,
            keyframe_indices=keyframe_indices,
            timings=timings,
        )
        for inst, samples in zip(group, per_response, strict=True)
    ]


def score_groups(
    model: EQARewardModel,
    groups: Sequence[Sequence[EQAInstance]],
    k: int = 1,
    temperature: float = 0.8,
    top_p: float = 0.9,
    aggregate: str = "mean",
    seed: int | None = None,
    *,
    shuffle: bool = True,
    max_new_tokens: int = 1024,
    memories: Sequence[EpisodeMemory | None] | None = None,
    min_new_tokens: int = 0,
    prompt: Prompt = MULTI_RESPONSE_PROMPT,
) -> list[list[Judgement]]:
    """K multi-response votes per group; for each group, one judgement per response, in order.

    ``memories``: one episode memory per group (default: read each group's ``episode_path``).
    Timings are the group's seconds split evenly over its responses, so summed over instances
    they compare with pointwise ones.
    """
    memories = check_call(k, aggregate, memories, len(groups), "groups")
    for group in groups:
        check_group(group)
    t0 = time.perf_counter()
    memories = open_memories([group[0] for group in groups], memories)  # one reader an episode
    built, plans = [], []
    for g, (group, memory) in enumerate(zip(groups, memories, strict=True)):
        base = None if seed is None else seed + g
        orders = vote_orders(len(group), k, base, shuffle)
        requests, indices = group_requests(
            model, group, orders if shuffle else orders[:1], memory, prompt
        )
        built += requests
        plans.append((orders, indices, len(requests)))
    frames_s = time.perf_counter() - t0
    per_request_k = 1 if shuffle else k
    params = SamplingParams(per_request_k, temperature, top_p, max_new_tokens, seed, min_new_tokens)
    results = model.backend.generate(built, params)
    out, start = [], 0
    for group, (orders, indices, n_requests) in zip(groups, plans, strict=True):
        mine = results[start : start + n_requests]
        start += n_requests
        texts = [t for r in mine for t in r.texts]
        out.append(
            votes_to_judgements(
                group,
                list(zip(orders, texts, strict=True)),
                aggregate=aggregate,
                prompt_id=prompt.id,
                model=model.name,
                keyframe_indices=indices,
                timings=group_timings(mine, frames_s / len(groups), len(group)),
            )
        )
    return out


def group_timings(results, frames_s: float, n: int) -> dict[str, float]:
    """A group's seconds (``*_s``: summed over its requests) per response; other keys kept."""
    timings = {"frames_s": frames_s}
    for result in results:
        for key, value in result.timings.items():
            if key.endswith("_s"):
                timings[key] = timings.get(key, 0.0) + value
            else:
                timings.setdefault(key, value)
    return {key: value / n if key.endswith("_s") else value for key, value in timings.items()}
