"""``eqarm serve``: a reward model over HTTP (OpenAI-compatible chat completions and EQA scoring).

:func:`create_app` builds the FastAPI app; :class:`DynamicBatcher` merges concurrent requests.
The names are imported on first use (they need the ``api`` extra: FastAPI). The test-only
fault plan (:mod:`habitat_eqarm.serve.faults`) is not exported: it is loaded only when a
server is started with ``test_faults`` on.
"""

from typing import TYPE_CHECKING

from habitat_eqarm._lazy import lazy_exports

if TYPE_CHECKING:
    from habitat_eqarm.serve.app import ServerSettings, create_app
    from habitat_eqarm.serve.batcher import DynamicBatcher

__all__ = ["DynamicBatcher", "ServerSettings", "create_app"]

__getattr__, __dir__ = lazy_exports(__name__, __all__)
