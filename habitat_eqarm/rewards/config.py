"""`ScoringConfig`: every setting of how an answer is scored, declared once.

The config is cut into sections, each a small keyword-only dataclass, so that a consumer that
needs only some of them takes (inherits) just those and a new setting added to a section
reaches every consumer of it:

- :class:`SamplingOptions` (temperature, top_p, max_new_tokens, seed): every consumer, and
  ``EvalSettings``;
- :class:`VoteOptions` (k samples per answer, the aggregate combining them): every consumer
  but ``eqarm eval``, which takes lists of both;
- :class:`KeyframeOptions` (num_keyframes, keyframe_method, max_pixels): the wrappers, the
  habitat measure, ``eqarm score`` and ``eqarm eval``;
- :class:`ShapingOptions` (reward_mode, reward_scale, add_env_reward, no_answer_reward,
  no_valid_reward): the wrappers and the habitat measure;
- :class:`SourceOptions` (question, answer, reasoning and question-id sources): the wrappers.

:class:`ScoringConfig` is all of them. ``EQARewardModel.score``, ``EQARMReward``,
``EQARMVectorReward`` and the reward setup they share take it; ``eqarm serve``'s
``ScoreRequest`` and the habitat ``eqarm_reward`` measurement config generate their fields from
its sections (:func:`section_fields`), and the ``eqarm score`` / ``eqarm eval`` configs and
``EvalSettings`` inherit them. A field's ``metadata`` carries its ``help`` (for the
command line); :data:`BOUNDS` the limits the server schema enforces.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from habitat_eqarm.rewards.backends.base import MAX_PIXELS, SamplingParams

#: Where a source may point: the observation, the info dict or the action.
SOURCES = ("obs", "info", "action")
#: How a judgement becomes a reward: score / 10 (``normalized``) or the 0-10 score (``raw``).
REWARD_MODES = ("normalized", "raw")


def parse_source(spec: str) -> tuple[str, str]:
    """``"info.answer"`` -> ``("info", "answer")``; the place must be obs, info or action."""
    place, _, key = spec.partition(".")
    if place not in SOURCES or not key:
        raise ValueError(
            f"a source must look like 'obs.KEY', 'info.KEY' or 'action.KEY', got {spec!r}"
        )
    return place, key


def _opt(default: Any, help: str) -> Any:
    # metadata holds argparse options only: the commands' parsers pass it to add_argument
    return field(default=default, metadata={"help": help})


#: Bounds of the settings that have them (pydantic-style: ``ge``, ``gt``, ``le``), enforced by
#: the server schema generated from the sections.
BOUNDS: dict[str, dict[str, float]] = {
    "temperature": {"ge": 0.0, "le": 2.0},
    "top_p": {"gt": 0.0, "le": 1.0},
    "max_new_tokens": {"ge": 1},
    "k": {"ge": 1},
    "num_keyframes": {"ge": 1},
    "max_pixels": {"ge": 1},
}


@dataclass(kw_only=True)
class SamplingOptions:
    """How each sample is decoded (``temperature == 0``: greedy)."""

    temperature: float = _opt(0.8, "sampling temperature (0: greedy)")
    top_p: float = _opt(0.9, "nucleus sampling mass")
    max_new_tokens: int = _opt(512, "longest sample, in tokens")
    seed: int | None = _opt(None, "sampling seed (None: unseeded)")


@dataclass(kw_only=True)
class VoteOptions:
    """How many samples judge one answer and how their scores are combined."""

    k: int = _opt(1, "samples to draw per answer")
    aggregate: str = _opt("mean", "mean, majority or median of the valid samples' scores")


@dataclass(kw_only=True)
class KeyframeOptions:
    """Which frames of the episode memory the reward model sees, and how large.

    ``max_pixels`` caps each frame; it is a backend option, applied where a command opens the
    backend (a wrapper given a model path passes it in ``model_kwargs``).
    """

    num_keyframes: int = _opt(5, "keyframes shown to the reward model")
    keyframe_method: str = _opt("uniform", "uniform or diverse")
    max_pixels: int = _opt(MAX_PIXELS, "pixel cap per frame (backend option)")


@dataclass(kw_only=True)
class ShapingOptions:
    """How a judgement becomes a reward (see ``RewardShaping``)."""

    reward_mode: str = _opt("normalized", "normalized (score / 10) or raw (0-10)")
    reward_scale: float = _opt(1.0, "factor on the reward")
    add_env_reward: bool = _opt(False, "add the env's own reward of the final step")
    no_answer_reward: float = _opt(0.0, "reward of an episode that ends without an answer")
    no_valid_reward: float = _opt(0.0, "reward when no sample was well-formed")


@dataclass(kw_only=True)
class SourceOptions:
    """Where an episode's question, answer, reasoning and question id are read
    (``"obs.KEY"``, ``"info.KEY"`` or ``"action.KEY"``)."""

    question_source: str = _opt("obs.question", "where the question is read")
    answer_source: str = _opt("info.answer", "where the answer is read")
    reasoning_source: str = _opt("info.reasoning_steps", "where the reasoning is read")
    question_id_source: str = _opt("info.question_id", "where the question id is read")


@dataclass(kw_only=True)
class ScoringConfig(SourceOptions, ShapingOptions, KeyframeOptions, VoteOptions, SamplingOptions):
    """Every scoring setting: sampling, voting, keyframes, reward shaping and sources.

    Built directly, or from keyword options with :meth:`from_options`. Checked on construction:
    the reward mode and the sources (the rest is checked where it is used, as before).
    """

    def __post_init__(self) -> None:
        for spec in self.sources().values():
            parse_source(spec)
        if self.reward_mode not in REWARD_MODES:
            raise ValueError(f"reward mode must be 'normalized' or 'raw', got {self.reward_mode!r}")

    @classmethod
    def from_options(cls, base: ScoringConfig | None = None, /, **options: Any) -> ScoringConfig:
        """``base`` (default: the defaults) with ``options`` replacing its fields.

        An option that names no field is a :class:`TypeError` listing the fields.
        """
        unknown = sorted(set(options) - set(field_names(cls)))
        if unknown:
            raise TypeError(
                f"unknown scoring option(s) {unknown}; ScoringConfig has {sorted(field_names(cls))}"
            )
        return dataclasses.replace(base, **options) if base is not None else cls(**options)

    @classmethod
    def of(cls, obj: Any, *sections: type) -> ScoringConfig:
        """The config held by any object with some of its fields (a CLI config, a Hydra node);
        fields it lacks keep their defaults. ``sections``: read only theirs (default: all)."""
        names = field_names(*(sections or (cls,)))
        if isinstance(obj, Mapping):
            values = {name: obj[name] for name in names if name in obj}
        else:
            values = {name: getattr(obj, name) for name in names if hasattr(obj, name)}
        return cls(**values)

    def sampling_params(self, k: int | None = None) -> SamplingParams:
        """What a backend samples with (``k``: per request, default :attr:`k`): the fields of
        :class:`SamplingParams`, each read from the config field of the same name."""
        params = {f.name: getattr(self, f.name) for f in fields(SamplingParams)}
        return SamplingParams(**{**params, "k": self.k if k is None else k})

    def sources(self) -> dict[str, str]:
        """``{"question": ..., "answer": ..., "reasoning": ..., "question_id": ...}``."""
        return {
            f.name.removesuffix("_source"): getattr(self, f.name) for f in fields(SourceOptions)
        }


def field_names(*sections: type) -> list[str]:
    """The field names of ``sections`` (default: all of :class:`ScoringConfig`), in order."""
    return [f.name for f in section_fields(*(sections or (ScoringConfig,)))]


def section_fields(*sections: type) -> Iterator[dataclasses.Field]:
    """The fields of ``sections``, in order, each once: what generated configs are made of."""
    seen: set[str] = set()
    for section in sections:
        for f in fields(section):
            if f.name not in seen:
                seen.add(f.name)
                yield f


def generated_fields(
    *sections: type, exclude: tuple[str, ...] = ()
) -> list[tuple[str, Any, dataclasses.Field]]:
    """``(name, type, field)`` of the sections' fields but ``exclude``, for a config generated
    from them (``dataclasses.make_dataclass``, pydantic's ``create_model``).

    Types are resolved (``X | None`` as ``typing.Optional[X]``, which OmegaConf reads too);
    each field is a fresh copy with the same default and metadata.
    """
    hints: dict[str, Any] = {}
    for section in reversed(sections):
        hints.update(typing.get_type_hints(section))
    out = []
    for f in section_fields(*sections):
        if f.name in exclude:
            continue
        kind = hints[f.name]
        if isinstance(kind, types.UnionType):
            kind = typing.Union[kind.__args__]  # noqa: UP007 - OmegaConf reads typing.Union
        out.append((f.name, kind, field(default=f.default, metadata=dict(f.metadata))))
    return out
