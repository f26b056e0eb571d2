"""transformers' private API that we rely on, in one place.

The ``hf`` backend reaches into the cache classes and the Qwen2-VL modules for speed (see
:mod:`.hf`), and the trainers into ``Trainer``'s checkpoint loading to fix a silent loss on
resume (see :mod:`habitat_eqarm.training.checkpoints`). Each touch point is one name below;
:func:`check_transformers` and :func:`check_model` verify that the installed transformers still
has the shape we rely on (tests/rewards/backends/test_transformers_compat.py) and raise
:class:`TransformersChanged`, naming the version, if not. It lives here, the lowest layer that
uses transformers, so that both the backends and ``training`` can import it.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable
from typing import Any

import torch
import transformers
from transformers.cache_utils import Cache, DynamicLayer

#: What ``PreallocatedLayer`` uses of :class:`DynamicLayer` beyond ``__init__``.
DYNAMIC_LAYER_API = ("lazy_initialization", "update", "get_seq_length", "batch_repeat_interleave")


class TransformersChanged(RuntimeError):
    """The installed transformers no longer has a shape this module relies on."""

    def __init__(self, what: str) -> None:
        super().__init__(
            f"transformers {transformers.__version__}: {what}; "
            "habitat_eqarm/rewards/backends/transformers_compat.py was written against "
            "transformers 5.24 and needs updating for this release"
        )


def cache_argument(model: torch.nn.Module) -> str:
    """The name under which ``model`` takes and returns its KV cache.

    ``cache`` in current transformers (5.24 deprecates ``past_key_values`` with a FutureWarning
    and a logged warning on every run), ``past_key_values`` in the 5.x releases before it.
    """
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def init_cache_of_layers(cache: Cache, make_layer: Callable[[], DynamicLayer]) -> None:
    """Initialise ``cache`` (a ``DynamicCache`` subclass) to grow one ``make_layer()`` per layer:
    ``DynamicCache.__init__`` always builds plain ``DynamicLayer``\\ s, so we call ``Cache``'s."""
    Cache.__init__(cache, layer_class_to_replicate=make_layer)


def repeat_rope_deltas(model: torch.nn.Module, repeats: int) -> None:
    """Repeat the M-RoPE offsets a Qwen2-VL model kept from its last prefill ``repeats`` times
    per row: ``generate`` continuing from a K-way repeated cache reads them for every row."""
    inner = model.model
    inner.rope_deltas = inner.rope_deltas.repeat_interleave(repeats, dim=0)


def _patch_embed_as_linear(self: torch.nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
    """A kernel-equals-stride Conv3d patch embedding as ``patches @ weight.view(out, -1).T``."""
    proj = self.proj  # read per call: follows .to() moves and deep copies
    weight = proj.weight.reshape(proj.out_channels, -1)
    flat = hidden_states.reshape(-1, weight.shape[1]).to(dtype=weight.dtype)
    return torch.nn.functional.linear(flat, weight, proj.bias)


def patch_embedding(model: torch.nn.Module) -> torch.nn.Module | None:
    """The vision tower's patch embedding (``model.visual.patch_embed``), or None."""
    return getattr(getattr(getattr(model, "model", model), "visual", None), "patch_embed", None)


def is_patchwise_conv(proj: Any) -> bool:
    """Whether ``proj`` is a ``Conv3d`` with kernel == stride, no padding and one group, i.e. one
    output per flattened patch."""
    return (
        isinstance(proj, torch.nn.Conv3d)
        and tuple(proj.kernel_size) == tuple(proj.stride)
        and tuple(proj.padding) == (0, 0, 0)
        and proj.groups == 1
    )


def linear_patch_embed(model: torch.nn.Module) -> bool:
    """Run the vision tower's patch embedding as the matrix product it is; True if done.

    Qwen2-VL's processor cuts each frame into flattened patches of ``channels x t x p x p``
    values, and the tower embeds them with a ``Conv3d`` whose kernel equals its stride: one
    output per patch, i.e. ``patches @ weight.view(out, -1).T``. The convolution kernel is
    several times slower than that product on CPU (55 vs 14 ms for the 15,840 patches of
    8 x 5 frames at 320x240 in the benchmark's tiny model; vLLM also runs this layer as a
    linear). The forward method of the one module instance is replaced (a bound method, so a
    deep copy of the model keeps it, on its own weights); the weight is shared, not copied, so
    the checkpoint and its state dict are unchanged. Hooks on ``proj`` itself no longer run,
    which is why this is for inference (the backend), not for training under DeepSpeed ZeRO-3
    or offloading. Models without such a layer are left alone.
    """
    embed = patch_embedding(model)
    if not is_patchwise_conv(getattr(embed, "proj", None)):
        return False
    embed.forward = types.MethodType(_patch_embed_as_linear, embed)
    return True


class CheckpointLoadHook:
    """Trainer mixin: :meth:`after_checkpoint_load` runs once ``Trainer._load_from_checkpoint``
    (the resume path's weight loading, no public hook) has loaded a checkpoint."""

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        self.after_checkpoint_load(resume_from_checkpoint, model)

    def after_checkpoint_load(self, resume_from_checkpoint: str, model: Any = None) -> None:
        """Called with the Trainer's arguments; does nothing unless overridden."""


# -- contract ---------------------------------------------------------------------------------


def check_cache() -> None:
    """``Cache.__init__`` takes ``layer_class_to_replicate``; ``DynamicLayer`` has
    :data:`DYNAMIC_LAYER_API` and starts with ``keys``, ``values``, ``is_initialized``."""
    if "layer_class_to_replicate" not in inspect.signature(Cache.__init__).parameters:
        raise TransformersChanged("Cache.__init__ no longer takes layer_class_to_replicate")
    missing = [name for name in DYNAMIC_LAYER_API if not callable(getattr(DynamicLayer, name, 0))]
    layer = DynamicLayer()
    missing += [a for a in ("keys", "values", "is_initialized") if not hasattr(layer, a)]
    if missing:
        raise TransformersChanged(f"DynamicLayer no longer has {missing}")


def check_trainer() -> None:
    """``Trainer._load_from_checkpoint(resume_from_checkpoint, model=None)`` still exists."""
    method = getattr(transformers.Trainer, "_load_from_checkpoint", None)
    if method is None:
        raise TransformersChanged("Trainer._load_from_checkpoint no longer exists")
    params = tuple(inspect.signature(method).parameters)
    if params != ("self", "resume_from_checkpoint", "model"):
        raise TransformersChanged(f"Trainer._load_from_checkpoint takes {params}")


def check_transformers() -> None:
    """Every model-independent shape this module relies on (:func:`check_cache`,
    :func:`check_trainer`); raises :class:`TransformersChanged` on the first that moved."""
    check_cache()
    check_trainer()


def check_model(model: torch.nn.Module) -> None:
    """A loaded Qwen2-VL-like ``model`` has what the ``hf`` backend relies on: a forward taking
    :func:`cache_argument`, ``model.model.rope_deltas`` and a patch-wise ``Conv3d`` patch embed."""
    if cache_argument(model) not in inspect.signature(model.forward).parameters:
        raise TransformersChanged(f"{type(model).__name__}.forward takes no cache argument")
    if not hasattr(getattr(model, "model", None), "rope_deltas"):
        raise TransformersChanged(f"{type(model).__name__}.model has no rope_deltas")
    if not is_patchwise_conv(getattr(patch_embedding(model), "proj", None)):
        raise TransformersChanged(
            f"{type(model).__name__}.model.visual.patch_embed.proj is not a Conv3d with "
            "kernel == stride"
        )
