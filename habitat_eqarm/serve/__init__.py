"""``eqarm serve``: a reward model over HTTP (OpenAI-compatible chat completions and EQA scoring).

:func:`create_app` builds the FastAPI app; :class:`DynamicBatcher` merges concurrent requests.
"""

from habitat_eqarm.serve.app import ServerSettings, create_app
from habitat_eqarm.serve.batcher import DynamicBatcher
from habitat_eqarm.serve.faults import FaultPlan

__all__ = ["DynamicBatcher", "FaultPlan", "ServerSettings", "create_app"]
