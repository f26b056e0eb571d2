"""`ScoreRequest`'s scoring fields are generated from `ScoringConfig`: they cannot drift."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pydantic
import pytest

from habitat_eqarm.rewards.config import BOUNDS, ScoringConfig, VoteOptions, field_names
from habitat_eqarm.serve.schemas import REQUEST_SCORING, ScoreRequest, scoring_request_fields

BODY = {"instances", "frames", "frames_hash"}


def test_score_request_fields_are_the_scoring_configs_sections():
    assert set(ScoreRequest.model_fields) - BODY == set(field_names(*REQUEST_SCORING))
    request = ScoreRequest(instances=[{}])
    defaults = ScoringConfig()
    for name in set(ScoreRequest.model_fields) - BODY:
        assert getattr(request, name) == getattr(defaults, name), name
    with pytest.raises(pydantic.ValidationError, match="k"):  # the config's bounds hold
        ScoreRequest(instances=[{}], k=0)
    with pytest.raises(pydantic.ValidationError, match="top_p"):
        ScoreRequest(instances=[{}], top_p=0.0)


@dataclass(kw_only=True)
class NewSection:
    """A setting someone adds: it must reach the schema with its default and bounds."""

    beams: int = field(default=2, metadata={"help": "beams"})


def test_a_new_scoring_field_reaches_the_generated_schema(monkeypatch):
    monkeypatch.setitem(BOUNDS, "beams", {"ge": 1})
    model = pydantic.create_model("R", **scoring_request_fields(VoteOptions, NewSection))
    assert set(model.model_fields) == {*field_names(VoteOptions), "beams"}
    assert model().beams == 2 and model.model_fields["beams"].description == "beams"
    with pytest.raises(pydantic.ValidationError, match="beams"):
        model(beams=0)
    assert {f.name for f in dataclasses.fields(NewSection)} <= set(model.model_fields)


def test_the_remote_client_sends_every_field_the_schema_takes():
    from habitat_eqarm.integrations.client import RemoteRM

    client_fields = {f.name for f in dataclasses.fields(RemoteRM)}
    assert set(field_names(*REQUEST_SCORING)) <= client_fields
    ScoreRequest(
        instances=[{}],
        **{n: getattr(RemoteRM("http://h/v1"), n) for n in field_names(*REQUEST_SCORING)},
    )
