from nemo_twvlm.model.freeze import FREEZE_PLANS, apply_freeze_plan
from nemo_twvlm.model.llava import IMAGE_TOKEN, build_llava, cpu_base_config, image_token_id

__all__ = ["FREEZE_PLANS", "IMAGE_TOKEN", "apply_freeze_plan", "build_llava", "cpu_base_config", "image_token_id"]
