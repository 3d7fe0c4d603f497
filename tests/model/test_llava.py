"""The debug LLaVA model: its size matches the planner's arithmetic, freeze plans put gradients
exactly where each stage expects them, and building it switches nothing on for the process."""
import os
import subprocess
import sys
import textwrap

import megatron.core.models.multimodal.llava_model as llava_model
import pytest
import torch

from nemo_twvlm.compat import cpu
from nemo_twvlm.compat.distributed import init_single_process
from nemo_twvlm.model.freeze import apply_freeze_plan
from nemo_twvlm.model.llava import build_llava
from nemo_twvlm.planner import count_parameters
from nemo_twvlm.presets import PRESETS

IMAGE_ID = 5
PARTS = ("vision_model", "vision_projection", "language_model")


@pytest.fixture(scope="module")
def model():
    init_single_process(seed=7)
    return build_llava(PRESETS["debug"], image_token_index=IMAGE_ID)


def _numel(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_built_model_has_exactly_the_planned_parameters(model):
    planned = count_parameters(PRESETS["debug"])
    assert _numel(model.language_model) == planned["language"]
    assert _numel(model.vision_model) == planned["vision"]
    assert _numel(model.vision_projection) == planned["projector"]


def test_vision_tower_stops_at_the_feature_layer(model):
    # feature_layer -2 of a 3-layer ViT: blocks 0 and 1 are built, the last one never is.
    assert len(model.vision_model.decoder.layers) == PRESETS["debug"].vision.num_built_layers == 2
    assert PRESETS["70b"].vision.num_built_layers == 23
    assert model.img_seq_len == PRESETS["debug"].num_image_tokens == 16
    assert PRESETS["70b"].num_image_tokens == 576


def _process_state():
    return (list(torch.overrides._get_current_function_mode_stack()), torch.cuda.current_device,
            torch.cuda.get_rng_state, llava_model.CLIPViTModel)


def test_building_leaves_the_process_as_it_found_it(model, monkeypatch):
    """The CPU workarounds are switched on by entry points (init_single_process, pretrain, conversion
    ranks), never by the builder: no new torch-function mode, torch.cuda and megatron's CLIP unpatched."""
    monkeypatch.setattr(cpu, "_applied", [])  # as if this process had never switched them on
    before = _process_state()
    built = build_llava(PRESETS["debug"], image_token_index=IMAGE_ID)
    assert _process_state() == before
    assert type(built.vision_model).__name__ == "CLIPViTModelTorchNorm"  # the build itself had its fix


@pytest.mark.slow
def test_building_in_a_fresh_process_leaves_no_torch_function_mode(tmp_path):
    """The same in a process that never switched the workarounds on (megatron's import makes it ~10 s)."""
    probe = textwrap.dedent("""
        import torch
        from megatron.core import parallel_state
        from nemo_twvlm.model.llava import build_llava
        from nemo_twvlm.presets import PRESETS

        torch.distributed.init_process_group("gloo", init_method="file://" + {store!r}, rank=0, world_size=1)
        parallel_state.initialize_model_parallel(1, 1)
        model = build_llava(PRESETS["debug"], image_token_index=5)
        print(sum(p.numel() for p in model.parameters()), len(torch.overrides._get_current_function_mode_stack()))
    """).format(store=str(tmp_path / "store"))
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert out.returncode == 0, out.stderr[-2000:]
    from nemo_twvlm.planner import count_parameters

    assert out.stdout.split() == [str(count_parameters(PRESETS["debug"])["total"]), "0"]


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(10, 1000, (2, 12), generator=g)
    tokens[:, 1] = IMAGE_ID
    return dict(images=torch.randn(2, 3, 64, 64, generator=g), input_ids=tokens,
                position_ids=torch.arange(12).expand(2, -1), attention_mask=None,
                labels=torch.roll(tokens, -1, 1), loss_mask=torch.ones(2, 12))


@pytest.mark.parametrize("plan, train_vision, trained", [
    ("align", False, {"vision_projection"}),
    ("cpt", False, {"vision_projection", "language_model"}),
    ("sft", False, {"vision_projection", "language_model"}),
    ("cpt", True, {"vision_model", "vision_projection", "language_model"}),
])
def test_freeze_plan_puts_gradients_exactly_where_expected(model, plan, train_vision, trained):
    apply_freeze_plan(model, plan, train_vision)
    model.zero_grad(set_to_none=True)
    losses, mask = model(**_batch())
    (losses * mask).sum().backward()
    for part in PARTS:
        grads = [p.grad for p in getattr(model, part).parameters()]
        if part in trained:
            assert all(g is not None for g in grads), f"{part} should train under {plan}"
            assert sum(g.abs().sum() for g in grads) > 0
        else:
            assert all(g is None for g in grads), f"{part} must stay frozen under {plan}"
    model.zero_grad(set_to_none=True)


def test_unknown_freeze_plan_is_refused_by_name(model):
    with pytest.raises(ValueError, match="model.freeze_plan='lora'"):
        apply_freeze_plan(model, "lora")


def test_70b_language_model_size_without_allocating():
    # The planner's count is pure arithmetic over the preset; the built debug model above proves it exact.
    assert count_parameters(PRESETS["70b"])["language"] == pytest.approx(70.6e9, rel=0.002)
