"""The policy API every agent shares, an episode loop over it, and a scripted baseline agent.

:class:`Policy`: ``reset()`` at the start of each episode, then ``act(obs, info) -> action``
until the episode ends; :func:`play_episode` is that loop. The scripted agents here, the VLM
agent (:class:`habitat_eqarm.agents.VLMAgent`) and a user's own policy all speak it, so any of
them drives :class:`~habitat_eqarm.envs.emeqa.EMEQAEnv`, the habitat gymnasium adapter and any
env that :class:`~habitat_eqarm.rewards.wrapper.EQARMReward` wraps.

:class:`ScriptedAgent` (tests and demo) watches the stream for a fixed number of frames, then
answers with whatever its ``answer_fn(question_id, question)`` returns and a short reasoning
trace, one step per line. It neither looks at pixels nor learns: it exists to drive env +
reward wrapper end to end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym

from habitat_eqarm.envs.emeqa import ANSWER, CONTINUE


@runtime_checkable
class Policy(Protocol):
    """An EQA agent: ``reset()`` when an episode starts, then one action per observation.

    ``info`` is the env's info of the same step (may be empty); the action is what the env's
    ``step`` takes (for the EQA envs here ``{"kind", "answer", "reasoning"}``).
    """

    def reset(self) -> None:
        """Forget the previous episode."""

    def act(self, obs: Any, info: dict[str, Any] | None = None) -> Any:
        """The next action."""


@dataclass
class PlayedEpisode:
    """What :func:`play_episode` saw: the return, the last step's info, the step count."""

    reward: float
    info: dict[str, Any]
    steps: int
    terminated: bool
    actions: list[Any] = field(default_factory=list)


def play_episode(
    env: gym.Env,
    policy: Policy,
    *,
    seed: int | None = None,
    options: dict[str, Any] | None = None,
    max_steps: int = 100_000,
    on_step: Callable[[Any, dict[str, Any], Any, bool], None] | None = None,
) -> PlayedEpisode:
    """Reset ``env`` and ``policy`` and play one episode to its end.

    ``on_step(obs, info, action, done)`` is called for the reset's observation (action None)
    and after every step. More than ``max_steps`` steps is an error naming the env.
    """
    obs, info = env.reset(seed=seed, options=options)
    policy.reset()
    if on_step is not None:
        on_step(obs, info, None, False)
    total, actions = 0.0, []
    for step in range(1, max_steps + 1):
        action = policy.act(obs, info)
        actions.append(action)
        obs, reward, terminated, truncated, info = env.step(action)
        total += float(reward)
        if on_step is not None:
            on_step(obs, info, action, terminated or truncated)
        if terminated or truncated:
            return PlayedEpisode(total, info, step, bool(terminated), actions)
    raise RuntimeError(f"play_episode: {env} did not end its episode within {max_steps} steps")


class ScriptedAgent:
    """Continue for ``watch_frames`` steps (or until the last frame), then answer."""

    def __init__(
        self,
        answer_fn: Callable[[str, str], str] | None = None,
        watch_frames: int = 20,
        *,
        continue_kind: int = CONTINUE,
        answer_kind: int = ANSWER,
    ) -> None:
        self.answer_fn = answer_fn or (lambda question_id, question: "I do not know")
        self.watch_frames = watch_frames
        # the action indices of another env's continue and answer (e.g. the habitat adapter's)
        self.continue_kind, self.answer_kind = continue_kind, answer_kind

    def reset(self) -> None:
        """Nothing to forget: the agent decides from the step's info alone."""

    def act(self, obs: dict[str, Any], info: dict[str, Any] | None = None) -> dict[str, Any]:
        """The next action for one env, from its observation and info."""
        info = info or {}
        seen = int(info.get("frame_index", 0)) + 1
        last = seen >= int(info.get("num_frames", seen))
        if "frames" not in obs and seen < self.watch_frames and not last:
            return {"kind": self.continue_kind, "answer": "", "reasoning": ""}
        answer = self.answer_fn(str(info.get("question_id", "")), str(obs["question"]))
        reasoning = "\n".join(
            [
                f"I watched {seen} frame(s) of my episode memory.",
                f"The question asks: {obs['question']}",
                f"From what I saw, the answer is: {answer}",
            ]
        )
        return {"kind": self.answer_kind, "answer": answer, "reasoning": reasoning}

    def act_batch(
        self, obs: dict[str, Any], infos: dict[str, Any], num_envs: int
    ) -> dict[str, Any]:
        """Actions for a vector env (dicts of arrays in, a dict of arrays out)."""
        import numpy as np

        actions = []
        for i in range(num_envs):
            one_obs = {key: value[i] for key, value in obs.items()}
            one_info = {
                key: infos[key][i]
                for key in ("question_id", "frame_index", "num_frames")
                if key in infos and infos.get(f"_{key}", np.ones(num_envs, bool))[i]
            }
            actions.append(self.act(one_obs, one_info))
        return {
            "kind": np.array([a["kind"] for a in actions]),
            "answer": tuple(a["answer"] for a in actions),
            "reasoning": tuple(a["reasoning"] for a in actions),
        }
