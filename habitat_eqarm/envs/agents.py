"""A scripted baseline agent for :class:`~habitat_eqarm.envs.emeqa.EMEQAEnv` (tests and demo).

It watches the stream for a fixed number of frames, then answers with whatever its
``answer_fn(question_id, question)`` returns and a short reasoning trace, one step per line.
It neither looks at pixels nor learns: it exists to drive env + reward wrapper end to end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from habitat_eqarm.envs.emeqa import ANSWER, CONTINUE


class ScriptedAgent:
    """Continue for ``watch_frames`` steps (or until the last frame), then answer."""

    def __init__(
        self,
        answer_fn: Callable[[str, str], str] | None = None,
        watch_frames: int = 20,
    ) -> None:
        self.answer_fn = answer_fn or (lambda question_id, question: "I do not know")
        self.watch_frames = watch_frames

    def act(self, obs: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
        """The next action for one env, from its observation and info."""
        seen = int(info.get("frame_index", 0)) + 1
        last = seen >= int(info.get("num_frames", seen))
        if "frames" not in obs and seen < self.watch_frames and not last:
            return {"kind": CONTINUE, "answer": "", "reasoning": ""}
        answer = self.answer_fn(str(info.get("question_id", "")), str(obs["question"]))
        reasoning = "\n".join(
            [
                f"I watched {seen} frame(s) of my episode memory.",
                f"The question asks: {obs['question']}",
                f"From what I saw, the answer is: {answer}",
            ]
        )
        return {"kind": ANSWER, "answer": answer, "reasoning": reasoning}

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
