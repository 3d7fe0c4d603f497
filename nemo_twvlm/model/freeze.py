"""Named freeze plans: which parts of the LLaVA model train in each stage (LLaVA lineage).

Importing this module needs no torch: validation and the planner read the plan names here.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from megatron.core.models.multimodal.llava_model import LLaVAModel

# Stage -> the LLaVA submodules that train; `vision_model` joins any plan with model.train_vision.
FREEZE_PLANS: dict[str, tuple[str, ...]] = {
    "align": ("vision_projection",),
    "cpt": ("vision_projection", "language_model"),
    "sft": ("vision_projection", "language_model"),
}


def trainable_modules(plan: str, train_vision: bool = False) -> tuple[str, ...]:
    try:
        modules = FREEZE_PLANS[plan]
    except KeyError:
        raise ValueError(f"model.freeze_plan={plan!r} is unknown; expected one of {sorted(FREEZE_PLANS)}") from None
    return modules + (("vision_model",) if train_vision else ())


def apply_freeze_plan(model: LLaVAModel, plan: str, train_vision: bool = False) -> None:
    """Set requires_grad by plan. Must run before megatron wraps the model in DDP, which only allocates
    gradient buffers for parameters that require grad."""
    keep = trainable_modules(plan, train_vision)
    for name in ("vision_model", "vision_projection", "language_model"):
        module = getattr(model, name, None)
        if module is not None:
            module.requires_grad_(name in keep)
