"""`EQARMVectorReward`: EQA-RM rewards for a vector env, batched across sub-envs.

All sub-envs whose episodes end on the same step are scored in ONE reward-model call, which
costs far less than one call per env. Sub-envs must not be wrapped in :class:`EQARMReward`
themselves (that scores per env, one call each, and works through
``gymnasium.make_vec(..., wrappers=[...])`` too).

Two delivery modes:

* synchronous (default): the reward of an episode is returned on the step that ends it, as
  RL algorithms expect.
* ``async_scoring=True``: scoring runs in a background thread and stepping goes on. The reward
  of an episode that ended on step t is added to that sub-env's reward on the first later step
  at which scoring has finished (and on :meth:`flush`); ``info["eqarm"][i]["delayed_from_step"]``
  says which step it belongs to. Use this only where the learner can re-attribute rewards.

Autoreset: Gymnasium's ``NEXT_STEP`` (the default) and ``SAME_STEP`` modes are supported.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper

from habitat_eqarm.data.recorder import EpisodeMemoryRecorder
from habitat_eqarm.rewards.config import ScoringConfig
from habitat_eqarm.rewards.episode_scoring import (
    EpisodeState,
    FinishedEpisode,
    RewardSetup,
    answer_text,
    find_frame_key,
    finish_episode,
    frames_in,
    lookup,
    parse_source,
    score_finished,
    unanswered,
)
from habitat_eqarm.rewards.gymnasium_compat import add_env_info
from habitat_eqarm.rewards.model import EQARewardModel


def _item(batch: Any, i: int) -> Any:
    """Sub-env ``i``'s entry of a batched observation or action (dicts of arrays)."""
    if isinstance(batch, dict):
        return {key: _item(value, i) for key, value in batch.items()}
    return batch[i]


def unbatch_info(infos: dict, key: str = "eqarm") -> list[dict | None]:
    """Per sub-env dicts from a vector info entry (Gymnasium's dict of arrays + masks).

    ``unbatch_info(info)[i]`` is sub-env i's ``info["eqarm"]``, or None where it has none.
    """
    batched, mask = infos.get(key), infos.get(f"_{key}")
    if batched is None or mask is None:
        return []
    return [_unbatch(batched, mask, i) for i in range(len(mask))]


def _unbatch(value: Any, mask: Any, i: int) -> Any:
    if mask is not None and not mask[i]:
        return None
    if isinstance(value, dict):
        return {
            k: _unbatch(v, value.get(f"_{k}"), i) for k, v in value.items() if not k.startswith("_")
        }
    item = value[i]
    return item.item() if isinstance(item, np.generic) else item


def _info_item(infos: dict, key: str, i: int) -> Any:
    mask = infos.get(f"_{key}")
    if key in infos and (mask is None or mask[i]):
        return infos[key][i]
    return None


class EQARMVectorReward(VectorWrapper):
    """Batched EQA-RM rewards for a :class:`gymnasium.vector.VectorEnv` (see module doc).

    Takes :class:`~habitat_eqarm.rewards.wrapper.EQARMReward`'s ``config`` (or its fields as
    keyword arguments), its options that make sense per vector env, and ``async_scoring``.
    """

    def __init__(
        self,
        env: VectorEnv,
        reward_model: EQARewardModel | str | Callable[[], EQARewardModel],
        *,
        config: ScoringConfig | None = None,
        frame_key: str | None = None,
        max_frames: int = 256,
        async_scoring: bool = False,
        info_timings: bool = True,
        model_kwargs: dict[str, Any] | None = None,
        **scoring: Any,
    ) -> None:
        setup = self._setup = RewardSetup.build(
            reward_model, ScoringConfig.from_options(config, **scoring), model_kwargs
        )
        super().__init__(env)
        mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
            raise ValueError(
                f"EQARMVectorReward supports NEXT_STEP and SAME_STEP autoreset, not {mode}"
            )
        self.autoreset_mode = mode
        self.frame_key = find_frame_key(env.single_observation_space, frame_key, str(env))
        self.sources, self.params, self.shaping, self.handle = (
            setup.sources,
            setup.config,
            setup.shaping,
            setup.handle,
        )
        self.base_seed = self._run_seed = setup.config.seed
        self.info_timings = info_timings
        self.states = [
            EpisodeState(EpisodeMemoryRecorder(max_frames)) for _ in range(self.num_envs)
        ]
        self.calls = 0  # reward-model calls made (one per batch of finishing episodes)
        self._needs_begin = np.zeros(self.num_envs, dtype=bool)
        self._executor = ThreadPoolExecutor(1, "eqarm-score") if async_scoring else None
        self._pending: list[tuple[int, Future]] = []
        self._step = 0

    # -- gymnasium API ----------------------------------------------------------------------------

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        """Reset every sub-env and start recording."""
        obs, infos = self.env.reset(seed=seed, options=options)
        if seed is not None:
            first = seed if isinstance(seed, int) else seed[0]
            self._run_seed = first if self.base_seed is None else self.base_seed + first
        for i, state in enumerate(self.states):
            state.episode = -1
            self._begin(i, obs, infos)
        self._needs_begin[:] = False
        return obs, infos

    def step(self, actions: Any):
        """Step all sub-envs; score every episode that ends on this step in one call."""
        obs, rewards, terminated, truncated, infos = self.env.step(actions)
        self._step += 1
        rewards = np.asarray(rewards, dtype=np.float64).copy()
        done = np.logical_or(terminated, truncated)
        details: list[dict | None] = [None] * self.num_envs
        finishing = []
        for i in range(self.num_envs):
            if self._needs_begin[i]:  # NEXT_STEP: this step only reset sub-env i
                self._begin(i, obs, infos)
                continue
            final_obs = self._final_obs(obs, infos, i, done[i])
            self._observe(i, final_obs, infos, _item(actions, i), final=done[i])
            if done[i]:
                finishing.append((i, final_obs, _item(actions, i)))
        self._finish(finishing, infos, rewards, details)
        if self.autoreset_mode == AutoresetMode.SAME_STEP:
            for i in np.flatnonzero(done):
                self._begin(int(i), obs, infos)
        else:
            self._needs_begin = done.copy()
        self._deliver_async(rewards, details, wait=False)
        for i, detail in enumerate(details):
            if detail is not None:  # Gymnasium's layout: a dict of arrays with "_" masks
                infos = add_env_info(self, dict(infos), {"eqarm": detail}, i)
        return obs, rewards, terminated, truncated, infos

    def flush(self) -> tuple[np.ndarray, list[dict | None]]:
        """Wait for background scoring; the rewards and details it still owed, per sub-env."""
        rewards = np.zeros(self.num_envs)
        details: list[dict | None] = [None] * self.num_envs
        self._deliver_async(rewards, details, wait=True)
        return rewards, details

    def close(self, **kwargs: Any) -> None:
        """Close the env, stop background scoring and close a model the wrapper created."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self.handle.close()
        super().close(**kwargs)

    # -- internals --------------------------------------------------------------------------------

    def _final_obs(self, obs: Any, infos: dict, i: int, done: bool) -> Any:
        if done and self.autoreset_mode == AutoresetMode.SAME_STEP:
            return infos["final_obs"][i]
        return _item(obs, i)

    def _begin(self, i: int, obs: Any, infos: dict) -> None:
        self.states[i].begin(f"vec{i}")
        self._observe(i, _item(obs, i), infos, None)

    def _lookup(self, name: str, obs: Any, infos: dict, action: Any, i: int) -> Any:
        spec = self.sources[name]
        place, key = parse_source(spec)
        if place != "info":  # this sub-env's obs or action: as for a single env
            return lookup(spec, obs, {}, action)
        final = infos.get("final_info")  # SAME_STEP: the ended episode's info, batched
        if isinstance(final, dict) and infos["_final_info"][i]:
            value = _info_item(final, key, i)
            if value is not None:
                return value
        return _info_item(infos, key, i)

    def _observe(self, i: int, obs: Any, infos: dict, action: Any, final: bool = False) -> None:
        self.states[i].observe(
            frames_in(obs, self.frame_key),
            self._lookup("question", obs, infos, action, i),
            self._lookup("question_id", obs, infos, action, i),
            final=bool(final),
        )

    def _finish(self, finishing, infos, rewards, details) -> None:
        episodes: list[tuple[int, FinishedEpisode]] = []
        source = self.sources["answer"]
        for i, final_obs, action in finishing:
            where = f"EQARMVectorReward: sub-env {i}, step {self._step}: the answer at {source}"
            answer = answer_text(self._lookup("answer", final_obs, infos, action, i), where)
            if answer is None:
                rewards[i], details[i] = unanswered(self.shaping, source)
                continue
            reasoning = self._lookup("reasoning", final_obs, infos, action, i)
            episode = finish_episode(
                self.states[i], f"vec{i}", answer, reasoning, float(rewards[i]), f"sub-env {i} "
            )
            episodes.append((i, episode))
            rewards[i] = 0.0  # delivered below (or later, when scoring in the background)
        if not episodes:
            return
        seed = None if self._run_seed is None else self._run_seed + self._step
        self.handle.model  # noqa: B018 - a lazily created model loads outside the timed call
        if self._executor is not None:
            future = self._executor.submit(self._score, episodes, seed)
            self._pending.append((self._step, future))
            return
        for i, reward, info in self._score(episodes, seed):
            rewards[i], details[i] = reward, info

    def _score(self, episodes, seed) -> list[tuple[int, float, dict]]:
        self.calls += 1
        scored = score_finished(
            self._setup, [e for _, e in episodes], seed, self.info_timings, "EQARMVectorReward"
        )
        return [
            (i, reward, info) for (i, _), (reward, info, _) in zip(episodes, scored, strict=True)
        ]

    def _deliver_async(self, rewards: np.ndarray, details: list, *, wait: bool) -> None:
        still = []
        for step, future in self._pending:
            if not (wait or future.done()):
                still.append((step, future))
                continue
            for i, reward, info in future.result():
                rewards[i] += reward
                details[i] = {**info, "delayed_from_step": step}
        self._pending = still
