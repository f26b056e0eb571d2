"""OpenRLHF: point ``--reward.remote_url`` at ``eqarm serve``'s ``/v1/openrlhf`` route.

OpenRLHF posts ``{"query": [...], "prompts": [...], "labels": [...]}`` (query = prompt +
response) and reads ``rewards`` (the training signal), ``scores`` (for dynamic filtering) and
``extra_logs`` back; here both are the aggregate score / 10, and ``extra_logs`` carries each
sample's raw score, K-vote spread, memo hit and whether an answer was found. The payload has
no images, so each prompt carries its episode reference as an ``<eqarm_ref>`` tag:
:func:`prompt_with_ref` writes it into a dataset's prompt column. Launch with::

    eqarm serve --model RM --episode_store /data/episodes --host 0.0.0.0 --token_env TOK
    ... openrlhf.cli.train_ppo_ray ... --reward.remote_url http://rm-host:8000/v1/openrlhf

The server uses K=4, temperature 0.8, seed 0 for these requests (OpenRLHF's payload has no
room for sampling options); repeated samples hit its memo.
"""

from __future__ import annotations

from habitat_eqarm.data.episode_ref import EpisodeRef, embed_ref
from habitat_eqarm.data.schema import EQAInstance

ROUTE = "/v1/openrlhf"


def ref_of(instance: EQAInstance, frames_hash: str | None = None) -> EpisodeRef:
    """The reference of ``instance``'s question and episode (or of keyframes put by hash)."""
    return EpisodeRef(
        question=instance.question,
        question_id=instance.question_id,
        episode_id=None if frames_hash else instance.episode_id,
        keyframe_indices=list(instance.keyframe_indices),
        frames_hash=frames_hash,
    )


def prompt_with_ref(prompt: str, instance: EQAInstance, frames_hash: str | None = None) -> str:
    """``prompt`` with ``instance``'s episode reference appended as an ``<eqarm_ref>`` tag."""
    return embed_ref(prompt, ref_of(instance, frames_hash))


def remote_url(server: str) -> str:
    """The ``--reward.remote_url`` value for a server at ``server`` (``http://host:port``)."""
    return server.rstrip("/").removesuffix("/v1") + ROUTE
