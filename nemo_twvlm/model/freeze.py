"""Named freeze plans: which parts of the LLaVA model train in each stage (LLaVA lineage)."""
from __future__ import annotations

from megatron.core.models.multimodal.llava_model import LLaVAModel

from nemo_twvlm.training.config import FREEZE_PLANS



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
