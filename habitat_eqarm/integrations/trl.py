"""TRL: :class:`EQARMRemoteReward`, an async reward function for ``GRPOTrainer``.

TRL runs async reward functions concurrently on its own event loop, so a GPU reward model
behind ``eqarm serve`` scores while other reward functions run. Each dataset row names its
episode with an ``eqarm_ref`` column (an :class:`EpisodeRef` as a dict or JSON string) or an
``<eqarm_ref>`` tag inside its prompt::

    reward = EQARMRemoteReward("http://rm-host:8000/v1", k=4)
    trainer = GRPOTrainer(model=..., reward_funcs=[reward], train_dataset=rows, ...)

The object is picklable (no open connection travels with it). Rewards are 0..1; a completion
without a readable answer gets ``no_answer_reward``. The K-vote spread and memo hits are
logged as ``eqarm/spread`` and ``eqarm/cached``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from habitat_eqarm.data.episode_ref import EpisodeRef, EpisodeRefError, find_ref
from habitat_eqarm.integrations.client import RemoteRM


def message_text(value: str | Sequence[dict[str, Any]]) -> str:
    """The text of a TRL prompt or completion: a string, or chat messages (text parts joined)."""
    if isinstance(value, str):
        return value
    parts = []
    for message in value:
        content = message.get("content", "")
        if isinstance(content, str):
            parts.append(content)
        else:
            parts.extend(p.get("text", "") for p in content if p.get("type") == "text")
    return "\n".join(parts)


class EQARMRemoteReward(RemoteRM):
    """``async (prompts, completions, **columns) -> list[float | None]`` over ``eqarm serve``.

    Construct it like :class:`RemoteRM`; ``ref_column`` names the dataset column holding the
    episode reference (rows without it must carry the tag in their prompt).
    """

    def __init__(self, *args: Any, ref_column: str = "eqarm_ref", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ref_column = ref_column
        self.__name__ = "eqarm_remote_reward"  # TRL names a reward function by its __name__

    async def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        **columns: Any,
    ) -> list[float | None]:
        """One reward per completion (TRL's reward-function contract)."""
        refs = [self.ref_for(i, prompt, columns) for i, prompt in enumerate(prompts)]
        rows = await self.rewards(refs, [message_text(c) for c in completions])
        log_metric = columns.get("log_metric")
        spreads = [r["spread"] for r in rows if r["spread"] is not None]
        if callable(log_metric) and spreads:
            log_metric("eqarm/spread", sum(spreads) / len(spreads))
            log_metric("eqarm/cached", sum(r["cached"] for r in rows) / len(rows))
        return [r["reward"] for r in rows]

    def ref_for(self, i: int, prompt: Any, columns: dict[str, Any]) -> EpisodeRef:
        """Row ``i``'s episode reference: its ``ref_column`` value, else its prompt's tag."""
        where = f"row {i}"
        values = columns.get(self.ref_column)
        if values is not None and values[i] is not None:
            return EpisodeRef.parse(values[i], f"{where} column {self.ref_column!r}")
        found = find_ref(message_text(prompt), f"{where} prompt")
        if found is None:
            raise EpisodeRefError(
                f"{where}: no {self.ref_column!r} column and no <eqarm_ref> tag in its prompt"
            )
        return found
