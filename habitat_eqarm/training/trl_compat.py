"""TRL's private API that C-GRPO relies on, in one place.

C-GRPO needs three things TRL offers no public hook for: sampling extra (perturbed) prompts in
the generation call, appending reward columns computed after a cross-process gather, and
logging per-step metrics. Each touch point is one name below; :func:`check_trl` verifies that
the installed TRL still has the shape we rely on (tests/training/test_trl_compat.py, and
:class:`GRPOHooks` at construction) and raises :class:`TRLChanged`, naming the version, if not.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import textwrap
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import trl
from trl import GRPOTrainer

#: ``GRPOTrainer._generate``'s return tuple, in order: we read ``completions`` and cut extra rows.
GENERATE_FIELDS = (
    "prompt_ids",
    "completion_ids",
    "tool_mask",
    "completions",
    "logprobs",
    "extra_fields",
    "images",
    "tool_images",
)

#: ``GRPOTrainer``'s private methods :class:`GRPOHooks` overrides, with the parameters it passes.
OVERRIDDEN = {
    "_generate_and_score_completions": ("self", "inputs"),
    "_generate": ("self", "prompts"),
    "_calculate_rewards": ("self", "inputs", "prompts", "completions", "completion_ids_list"),
}


class TRLChanged(RuntimeError):
    """The installed TRL no longer has a shape this module relies on."""

    def __init__(self, what: str) -> None:
        super().__init__(
            f"trl {trl.__version__}: {what}; habitat_eqarm/training/trl_compat.py was written "
            "against trl 1.16 and needs updating for this release"
        )


class GRPOHooks(GRPOTrainer):
    """``GRPOTrainer`` whose private hooks call public-named methods that subclasses override.

    Each ``<hook>`` below defaults to TRL's ``_<hook>``; override it and call ``super()``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        check_trl()
        super().__init__(*args, **kwargs)

    def _generate_and_score_completions(self, inputs):
        return self.generate_and_score_completions(inputs)

    def _generate(self, prompts: list):
        return self.generate_completions(prompts)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        return self.calculate_rewards(inputs, prompts, completions, completion_ids_list)

    def generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        """One batch sampled, scored and turned into advantages (TRL's whole rollout step)."""
        return super()._generate_and_score_completions(inputs)

    def generate_completions(self, prompts: list) -> tuple:
        """Sample the prompts; a tuple of :data:`GENERATE_FIELDS`, one entry per row in each."""
        return super()._generate(prompts)

    def calculate_rewards(
        self, inputs: list[dict], prompts: list, completions: list, completion_ids_list: list
    ) -> torch.Tensor:
        """Rewards, ``(rows, columns)``: one column per reward function, gathered later by TRL."""
        return super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)


def completions_of(generated: Sequence[Any]) -> list:
    """The decoded completions in a :meth:`GRPOHooks.generate_completions` result."""
    return generated[GENERATE_FIELDS.index("completions")]


def first_rows(generated: Sequence[Any], n: int, total: int) -> tuple:
    """A :meth:`GRPOHooks.generate_completions` result cut to its first ``n`` of ``total`` rows;
    fields that are not per row (``extra_fields`` is a dict, ``images`` may be None) stay."""
    return tuple(v[:n] if isinstance(v, list | tuple) and len(v) == total else v for v in generated)


def add_reward_columns(trainer: GRPOTrainer, names: Sequence[str], weights: torch.Tensor) -> None:
    """Append reward columns that ``calculate_rewards`` adds after TRL's: TRL logs
    ``rewards/<name>/mean`` per ``reward_func_names`` entry and sums columns with
    ``reward_weights`` (its environment rewards are appended the same way)."""
    trainer.reward_func_names.extend(names)
    trainer.reward_weights = torch.cat([trainer.reward_weights, weights])


@contextlib.contextmanager
def own_reward_names(trainer: GRPOTrainer) -> Iterator[None]:
    """Within the block, ``reward_func_names`` holds only the reward functions' own names:
    TRL's ``_calculate_rewards`` zips it with ``reward_funcs`` strictly."""
    names = trainer.reward_func_names
    trainer.reward_func_names = names[: len(trainer.reward_funcs)]
    try:
        yield
    finally:
        trainer.reward_func_names = names


def log_metric(trainer: GRPOTrainer, name: str, value: float, mode: str = "train") -> None:
    """Add one value to the step's ``name`` metric: TRL logs the mean of ``_metrics[mode][name]``
    at each logging step (its public ``_log_metric`` only serves reward functions)."""
    trainer._metrics[mode][name].append(value)


# -- contract ---------------------------------------------------------------------------------


def _function(method: Any) -> ast.FunctionDef:
    source = textwrap.dedent(inspect.getsource(method))
    return next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef))


def _names(node: ast.AST | None) -> tuple[str, ...] | None:
    if not isinstance(node, ast.Tuple) or not all(isinstance(e, ast.Name) for e in node.elts):
        return None
    return tuple(e.id for e in node.elts)


def check_overrides() -> None:
    """Each method in :data:`OVERRIDDEN` exists on ``GRPOTrainer`` with those parameters."""
    for name, params in OVERRIDDEN.items():
        method = getattr(GRPOTrainer, name, None)
        if method is None:
            raise TRLChanged(f"GRPOTrainer.{name} no longer exists")
        found = tuple(inspect.signature(method).parameters)
        if found != params:
            raise TRLChanged(f"GRPOTrainer.{name} takes {found}, not {params}")


def check_generate_fields() -> None:
    """``_generate`` returns :data:`GENERATE_FIELDS` in that order, and
    ``_generate_and_score_completions`` unpacks that many."""
    returns = [n for n in ast.walk(_function(GRPOTrainer._generate)) if isinstance(n, ast.Return)]
    found = _names(returns[-1].value) if returns else None
    if found != GENERATE_FIELDS:
        raise TRLChanged(f"GRPOTrainer._generate returns {found}, not {GENERATE_FIELDS}")
    step = _function(GRPOTrainer._generate_and_score_completions)
    unpacks = [n for n in ast.walk(step) if _assigns_call_of(n, "_generate")]
    if not unpacks:
        raise TRLChanged("_generate_and_score_completions no longer unpacks self._generate(...)")
    arity = len(getattr(unpacks[0].targets[0], "elts", ()))
    if arity != len(GENERATE_FIELDS):
        raise TRLChanged(f"_generate_and_score_completions unpacks {arity} fields")


def _assigns_call_of(node: ast.AST, method: str) -> bool:
    """Whether ``node`` is ``... = self.<method>(...)``."""
    call = getattr(node, "value", None)
    return (
        isinstance(node, ast.Assign)
        and isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr == method
    )


def check_reward_attributes() -> None:
    """``_calculate_rewards`` zips ``reward_funcs`` with ``reward_func_names``, and the rollout
    step logs every name and weights the columns with ``reward_weights``; ``_metrics`` is
    ``{"train": defaultdict(list), "eval": ...}``."""
    needs = {
        "_calculate_rewards": ("self.reward_funcs", "self.reward_func_names"),
        "_generate_and_score_completions": (
            "self.reward_func_names",
            "self.reward_weights",
            "self._metrics[mode]",
        ),
        "__init__": ('self._metrics = {"train": defaultdict(list)',),
    }
    for name, parts in needs.items():
        source = inspect.getsource(getattr(GRPOTrainer, name))
        for part in parts:
            if part not in source:
                raise TRLChanged(f"GRPOTrainer.{name} no longer uses {part}")


def check_trl() -> None:
    """Every TRL shape this module relies on; raises :class:`TRLChanged` on the first that moved."""
    check_overrides()
    check_generate_fields()
    check_reward_attributes()
