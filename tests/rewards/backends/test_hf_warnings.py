"""A user's log stays clean: loading and scoring with the ``hf`` backend uses transformers'
current API, so it neither warns (``warnings``) nor logs deprecations (``logger.warning_once``)."""

from __future__ import annotations

import logging
import warnings

import pytest

from habitat_eqarm.rewards.model import EQARewardModel


class Records(logging.Handler):
    """Every record a logger emits at WARNING or above."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize(
    ("frames_as", "share_prefill"), [("images", True), ("images", False), ("video", True)]
)
def test_loading_and_scoring_warn_of_nothing(
    tiny_model_path, synthetic_folder, frames_as, share_prefill
):
    from transformers.utils import logging as hf_logging

    hf_logging.warning_once.cache_clear()  # an earlier test may have used up the "once"
    handler, logger = Records(), logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with EQARewardModel.from_pretrained(
                str(tiny_model_path),
                frames_as=frames_as,
                share_prefill=share_prefill,
                max_pixels=64 * 28 * 28,
            ) as model:
                (judgement,) = model.score([synthetic_folder[1][0]], k=2, max_new_tokens=4, seed=0)
    finally:
        logger.removeHandler(handler)
    assert len(judgement.samples) == 2
    assert [f"{w.category.__name__}: {w.message}" for w in caught] == []
    assert [f"{r.name}: {r.getMessage()}" for r in handler.records] == []
