"""Request bodies of ``eqarm serve``, validated by pydantic.

``/v1/chat/completions`` takes the OpenAI chat format with images as data URLs; fields OpenAI
clients send that we do not use (``user``, ``response_format``, vLLM's ``min_tokens``, ...) are
ignored. ``/v1/score`` takes :class:`EQAInstance` dicts and,
for each, either its frames inline or nothing (the server then reads the instance's
``episode_path``, if it lies under one of the server's data roots).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from habitat_eqarm.rewards.config import BOUNDS, SamplingOptions, VoteOptions, generated_fields


class ImageURL(BaseModel):
    """``{"url": "data:image/png;base64,..."}``."""

    url: str
    detail: str | None = None


class ContentPart(BaseModel):
    """A text part or an image part of a chat message."""

    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: ImageURL | None = None


class ChatMessage(BaseModel):
    """One chat turn: a string or a list of parts."""

    role: Literal["system", "user", "assistant"]
    content: str | list[ContentPart]


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat-completions body (the fields we honour; others are ignored)."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    n: int = Field(1, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    seed: int | None = None
    stream: bool = False


#: The sections of :class:`~habitat_eqarm.rewards.config.ScoringConfig` a request may set.
REQUEST_SCORING = (VoteOptions, SamplingOptions)


def scoring_request_fields(*sections: type) -> dict[str, Any]:
    """pydantic fields of ScoringConfig's ``sections``: same names, types, defaults and bounds."""
    return {
        name: (kind, Field(f.default, description=f.metadata.get("help"), **BOUNDS.get(name, {})))
        for name, kind, f in generated_fields(*sections)
    }


class _ScoreRequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instances: list[dict[str, Any]] = Field(min_length=1)
    frames: list[list[str] | None] | None = None
    frames_hash: list[str | None] | None = None


ScoreRequest = create_model(
    "ScoreRequest",
    __base__=_ScoreRequestBody,
    __module__=__name__,
    __doc__="""EQA instances to judge, their frames (optional), and the sampling options of
    ``score``: the fields of ``ScoringConfig``'s :data:`REQUEST_SCORING` sections, generated.

    ``frames[i]`` is a list of data-URL images (instance i's episode memory; keyframes are
    chosen from it as usual) or null. ``frames_hash[i]`` names keyframes in the server's
    episode store by content. Otherwise the server reads ``episode_path`` (under a data root)
    or looks ``episode_id`` up in its episode store.
    """,
    **scoring_request_fields(*REQUEST_SCORING),
)


class OpenRLHFRequest(BaseModel):
    """OpenRLHF's remote reward-model body (``--reward.remote_url``): one entry per sample.

    ``query`` is prompt + response as the policy saw it; ``prompts`` the prompts alone;
    ``labels`` the dataset's label column. Other keys OpenRLHF may add are ignored.
    """

    model_config = ConfigDict(extra="ignore")

    query: list[str] = Field(min_length=1)
    prompts: list[str] | None = None
    labels: list[Any] | None = None


class FaultsRequest(BaseModel):
    """A new fault plan for ``/admin/faults`` (see :mod:`habitat_eqarm.serve.faults`)."""

    spec: str = ""
    seed: int = 0
