"""`VLMAgent`: an EQA agent that answers from its episode memory with a vision-language model.

It keeps the frames it is shown (an :class:`~habitat_eqarm.data.recorder.EpisodeMemoryRecorder`
in memory, so a long episode costs at most ``max_frames`` frames), and when it answers it picks
``num_keyframes`` keyframes of them (:mod:`habitat_eqarm.data.keyframes`), asks its model with
the generator prompt (``eqarm-gen-v1``, :data:`~habitat_eqarm.rewards.prompts.GENERATOR_PROMPT`)
and reads the reply with :func:`~habitat_eqarm.rewards.parsing.parse_response`: reasoning steps
(one per line in the action) and the answer. Generation goes through a
:class:`~habitat_eqarm.rewards.backends.base.RewardBackend` (``hf`` in-process, ``openai`` for
any OpenAI-compatible endpoint, ``vllm``), so the tiny local Qwen2-VL of the tests and a real
checkpoint (Qwen2-VL-2B/7B, Qwen2.5-VL) run the same code.

When it answers: at once if the observation holds several keyframes (``obs["frames"]``,
episodic mode), else after ``watch_frames`` observations or on the episode's last frame
(``info["frame_index"]`` / ``info["num_frames"]`` where the env gives them); until then it
sends ``continue_kind``. A reply without a parsable answer still gives a valid answer action,
with an empty answer (the reward wrappers then give their no-answer reward), and the reason is
logged and kept in :attr:`VLMAgent.last_output`; it never raises.

Two-turn mode of :class:`~habitat_eqarm.rewards.wrapper.EQARMReward`: on an observation with
``turn == 1`` it revises its first answer from the critique and score it holds, with the
revision prompt (:mod:`habitat_eqarm.rewards.revision`) and the same keyframes, and sends
``{"kind": REVISE, ...}`` (``revise=False``: keeps its answer).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from habitat_eqarm.data.recorder import EpisodeMemoryRecorder
from habitat_eqarm.data.schema import TEXT_CHARSET, EQAInstance
from habitat_eqarm.envs.emeqa import ANSWER, CONTINUE, MAX_ANSWER, MAX_REASONING
from habitat_eqarm.rewards.backends.base import (
    GenerationRequest,
    RewardBackend,
    SamplingParams,
    load_backend,
)
from habitat_eqarm.rewards.episode_scoring import FRAME_KEYS, frames_in
from habitat_eqarm.rewards.parsing import ParsedResponse, parse_response
from habitat_eqarm.rewards.prompts import GENERATOR_PROMPT, build_messages
from habitat_eqarm.rewards.revision import REVISION_PROMPT, revision_messages
from habitat_eqarm.rewards.wrapper import REVISE

log = logging.getLogger(__name__)


def action_text(text: str, limit: int, charset: frozenset[str] | None) -> str:
    """Text as an env's Text space takes it: cut to ``limit``, characters outside ``charset``
    (None: any) replaced by "?"."""
    text = text[:limit]
    return text if charset is None else "".join(c if c in charset else "?" for c in text)


def unparsable_reason(text: str) -> str:
    """Why a generator reply gave no answer, for the log and ``last_output``."""
    if not text.strip():
        return "the reply is empty"
    count = text.count("<predicted_answer>")
    if count == 0:
        return "the reply has no <predicted_answer> block"
    if count > 1:
        return f"the reply has {count} <predicted_answer> blocks, not one"
    return "the reply's <predicted_answer> block is empty or unclosed"


class VLMAgent:
    """A VLM EQA agent over a backend (see module doc); a :class:`~habitat_eqarm.envs.Policy`.

    ``backend``: a :class:`RewardBackend`, or a model path / hub id / API model name loaded
    with ``backend_name`` and ``backend_kwargs`` (then closed with the agent). Sampling:
    ``temperature`` 0 is greedy; ``seed`` seeds generation n of the agent with ``seed + n``.
    ``charset``: characters the env's answer and reasoning spaces allow (None: no filter).
    """

    def __init__(
        self,
        backend: RewardBackend | str,
        *,
        backend_name: str = "hf",
        backend_kwargs: dict[str, Any] | None = None,
        num_keyframes: int = 5,
        keyframe_method: str = "uniform",
        frames_as: str = "images",
        watch_frames: int = 20,
        continue_kind: int = CONTINUE,
        answer_kind: int = ANSWER,
        revise: bool = True,
        temperature: float = 0.0,
        top_p: float = 0.9,
        max_new_tokens: int = 512,
        seed: int | None = None,
        max_frames: int = 256,
        charset: frozenset[str] | None = TEXT_CHARSET,
    ) -> None:
        if frames_as not in ("images", "video"):
            raise ValueError(f"frames_as must be images or video, got {frames_as!r}")
        if num_keyframes < 1 or watch_frames < 1:
            raise ValueError("num_keyframes and watch_frames must be at least 1")
        self.owns_backend = isinstance(backend, str)
        if isinstance(backend, str):
            backend = load_backend(backend_name, backend, **(backend_kwargs or {}))
        self.backend = backend
        self.num_keyframes, self.keyframe_method = num_keyframes, keyframe_method
        self.as_video = frames_as == "video"
        self.watch_frames, self.revise = watch_frames, revise
        self.continue_kind, self.answer_kind = continue_kind, answer_kind
        self.temperature, self.top_p, self.max_new_tokens = temperature, top_p, max_new_tokens
        self.seed, self.charset = seed, charset
        self.memory = EpisodeMemoryRecorder(max_frames)
        self.generations = 0
        #: The episode's last reply and what was read from it: text, prompt_id, answer, steps,
        #: format_ok, reason (None when an answer was read), keyframe_steps (episode steps).
        self.last_output: dict[str, Any] | None = None
        self.reset()

    @classmethod
    def from_pretrained(cls, model: str, backend: str = "hf", **kwargs: Any) -> VLMAgent:
        """An agent over ``model`` loaded with backend ``backend``; ``kwargs`` as the
        constructor's, plus ``backend_kwargs``."""
        return cls(model, backend_name=backend, **kwargs)

    # -- the policy API ---------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the previous episode's frames and answer."""
        self.memory.clear()
        self.last_output = None
        self._seen = 0
        self._first: tuple[EQAInstance, np.ndarray, list[int]] | None = None

    def act(self, obs: dict[str, Any], info: dict[str, Any] | None = None) -> dict[str, Any]:
        """Continue, answer from the memory, or (after a critique) revise; never raises on a
        bad reply."""
        info = info or {}
        if int(obs.get("turn", 0)) == 1:
            return self._revision(obs)
        key = next((k for k in FRAME_KEYS if k in obs), None)
        if key is None:
            raise ValueError(f"VLMAgent: the observation has no frames ({FRAME_KEYS}): {list(obs)}")
        for frame in frames_in(obs, key):
            self.memory.add(np.ascontiguousarray(frame[..., :3]))
        self._seen += 1
        last = "num_frames" in info and int(info.get("frame_index", 0)) + 1 >= int(
            info["num_frames"]
        )
        if key != "frames" and self._seen < self.watch_frames and not last:
            return {"kind": self.continue_kind, "answer": "", "reasoning": ""}
        question = EQAInstance(
            question_id=str(info.get("question_id", "")), question=obs["question"]
        )
        return self._answer(question)

    # -- internals --------------------------------------------------------------------------------

    def _answer(self, question: EQAInstance) -> dict[str, Any]:
        memory = self.memory.memory()
        indices = memory.keyframes(self.num_keyframes, self.keyframe_method)
        frames = memory.frames(indices)
        steps = [self.memory.step_indices[i] for i in indices]
        messages = build_messages(GENERATOR_PROMPT, question, len(indices), as_video=self.as_video)
        parsed = self._ask(messages, frames, GENERATOR_PROMPT.id, steps)
        first = EQAInstance(
            question_id=question.question_id,
            question=question.question,
            predicted_answer=parsed.answer,
            reasoning_steps=parsed.steps,
        )
        self._first = (first, frames, steps)
        return self._action(self.answer_kind, parsed)

    def _revision(self, obs: dict[str, Any]) -> dict[str, Any]:
        if not self.revise or self._first is None:
            return {"kind": self.answer_kind, "answer": "", "reasoning": ""}  # keep the answer
        first, frames, steps = self._first
        score = float(np.asarray(obs.get("critique_score", -1.0)))
        messages = revision_messages(
            first, str(obs.get("critique", "")), score, len(frames), as_video=self.as_video
        )
        parsed = self._ask(messages, frames, REVISION_PROMPT.id, steps)
        return self._action(REVISE, parsed)

    def _ask(
        self, messages: list[dict], frames: np.ndarray, prompt_id: str, steps: Sequence[int]
    ) -> ParsedResponse:
        seed = None if self.seed is None else self.seed + self.generations
        self.generations += 1
        params = SamplingParams(
            k=1,
            temperature=self.temperature,
            top_p=self.top_p,
            max_new_tokens=self.max_new_tokens,
            seed=seed,
        )
        request = GenerationRequest(messages, frames, as_video=self.as_video, prompt_id=prompt_id)
        (result,) = self.backend.generate([request], params)
        text = result.texts[0] if result.texts else ""
        parsed = parse_response(text)
        reason = None if parsed.answer else unparsable_reason(text)
        if reason is not None:
            log.warning("VLMAgent (%s): no answer read: %s", prompt_id, reason)
        self.last_output = {
            "text": text,
            "prompt_id": prompt_id,
            "answer": parsed.answer,
            "steps": parsed.steps,
            "format_ok": parsed.format_ok,
            "reason": reason,
            "keyframe_steps": list(steps),
        }
        return parsed

    def _action(self, kind: int, parsed: ParsedResponse) -> dict[str, Any]:
        reasoning = "\n".join(" ".join(step.split()) for step in parsed.steps)
        return {
            "kind": kind,
            "answer": action_text(
                " ".join((parsed.answer or "").split()), MAX_ANSWER, self.charset
            ),
            "reasoning": action_text(reasoning, MAX_REASONING, self.charset),
        }

    def close(self) -> None:
        """Close the backend if the agent loaded it."""
        self.memory.close()
        if self.owns_backend:
            self.backend.close()

    def __enter__(self) -> VLMAgent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
