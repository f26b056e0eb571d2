"""verl: ``compute_score``, a custom reward function in verl's reward-loop signature.

Enable it in the trainer config (``reward_kwargs`` become keyword arguments here)::

    custom_reward_function.path=habitat_eqarm/integrations/verl.py
    custom_reward_function.name=compute_score
    +custom_reward_function.reward_kwargs.server_url=http://rm-host:8000/v1
    +custom_reward_function.reward_kwargs.k=4

verl hands the function strings only: the episode reference comes from
``extra_info["eqarm_ref"]`` (put it in the dataset's ``extra_info`` column), else from an
``<eqarm_ref>`` tag in ``solution_str`` or ``ground_truth``. The server URL can also come from
``$EQARM_RM_URL``, the token from ``$EQARM_SERVE_TOKEN``.
"""

from __future__ import annotations

from typing import Any

from habitat_eqarm.data.episode_ref import EpisodeRef, EpisodeRefError, find_ref
from habitat_eqarm.integrations.client import RemoteRM

_CLIENTS: dict[tuple[Any, ...], RemoteRM] = {}  # one client per configuration per process


async def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict[str, Any] | None = None,
    *,
    server_url: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """``{"score": reward 0..1, "eqarm_score", "spread", "cached", "answer_found"}``.

    ``options`` are :class:`RemoteRM` fields (``k``, ``seed``, ``temperature``, ...); keys
    verl adds that are not (``reward_router_address``, ...) are ignored.
    """
    client = _client(server_url, options)
    ref = reference(solution_str, ground_truth, extra_info)
    (row,) = await client.rewards([ref], [solution_str])
    return {
        "score": row["reward"] if row["reward"] is not None else 0.0,
        "eqarm_score": row["score"],
        "spread": row["spread"],
        "cached": row["cached"],
        "answer_found": row["answer_found"],
    }


def reference(
    solution_str: str, ground_truth: Any, extra_info: dict[str, Any] | None
) -> EpisodeRef:
    """The episode reference of one verl sample (see module doc for where it is looked for)."""
    if extra_info and extra_info.get("eqarm_ref") is not None:
        return EpisodeRef.parse(extra_info["eqarm_ref"], "extra_info['eqarm_ref']")
    found = find_ref(solution_str, "solution_str")
    if found is None and isinstance(ground_truth, str):
        found = find_ref(ground_truth, "ground_truth")
    if found is None:
        raise EpisodeRefError(
            "no episode reference: put one in extra_info['eqarm_ref'] (or an <eqarm_ref> tag)"
        )
    return found


def _client(server_url: str | None, options: dict[str, Any]) -> RemoteRM:
    known = {k: v for k, v in options.items() if k in RemoteRM.__dataclass_fields__}
    key = (server_url, tuple(sorted(known.items())))
    if key not in _CLIENTS:
        _CLIENTS[key] = RemoteRM(server_url, **known)
    return _CLIENTS[key]
