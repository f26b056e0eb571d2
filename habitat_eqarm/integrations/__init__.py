"""Adapters that make ``eqarm serve`` the remote reward model of existing RL frameworks.

One server, thin clients: :class:`RemoteRM` calls ``/v1/score``; :mod:`.trl` wraps it as an
async reward function for TRL's GRPO trainers, :mod:`.verl` as verl's ``compute_score``, and
:mod:`.openrlhf` prepares prompts for the server's ``/v1/openrlhf`` route. Episode frames
travel as references (:mod:`habitat_eqarm.data.episode_ref`) the server resolves. The
clients need the ``api`` extra (httpx).
"""

from typing import TYPE_CHECKING

from habitat_eqarm._lazy import lazy_exports

if TYPE_CHECKING:
    from habitat_eqarm.integrations.client import RemoteRM
    from habitat_eqarm.integrations.trl import EQARMRemoteReward

__all__ = ["EQARMRemoteReward", "RemoteRM"]

__getattr__, __dir__ = lazy_exports(__name__, __all__)
