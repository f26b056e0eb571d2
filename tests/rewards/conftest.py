"""Helpers shared by the reward-wrapper tests."""

from __future__ import annotations

import numpy as np
import pytest


def _record(model, what) -> list:
    """Wrap ``model.backend.generate`` so ``what(request)`` of each request is appended to the
    returned list (the calls still run); ``del model.backend.generate`` undoes it."""
    received: list = []
    real = model.backend.generate

    def spy(requests, params):
        received.extend(what(request) for request in requests)
        return real(requests, params)

    model.backend.generate = spy
    return received


def _record_frames(model) -> list[np.ndarray]:
    """The frames of each request the model's backend is sent (see :func:`_record`)."""
    return _record(model, lambda request: np.asarray(request.frames))


@pytest.fixture()
def record_frames():
    """``record_frames(model)``: the list the model's backend requests' frames go to."""
    return _record_frames


@pytest.fixture()
def record_requests():
    """``record_requests(model)``: the list the model's backend requests go to."""
    return lambda model: _record(model, lambda request: request)
