from nemo_twvlm.model.freeze import FREEZE_PLANS, apply_freeze_plan
from nemo_twvlm.model.llava import build_llava, cpu_base_config

__all__ = ["FREEZE_PLANS", "apply_freeze_plan", "build_llava", "cpu_base_config"]
