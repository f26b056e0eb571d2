"""Helpers shared by the reward-wrapper tests."""

from __future__ import annotations

import numpy as np
import pytest


def _record_frames(model) -> list[np.ndarray]:
    """Wrap ``model.backend.generate`` so each request's frames are appended to the returned
    list (the calls still run); ``del model.backend.generate`` undoes it."""
    received: list[np.ndarray] = []
    real = model.backend.generate

    def spy(requests, params):
        received.extend(np.asarray(request.frames) for request in requests)
        return real(requests, params)

    model.backend.generate = spy
    return received


@pytest.fixture()
def record_frames():
    """``record_frames(model)``: the list the model's backend requests' frames go to."""
    return _record_frames
