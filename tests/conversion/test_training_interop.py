"""An imported checkpoint is what megatron.training loads with `model.init_from`, and a checkpoint that
megatron.training saved exports back to HF (one megatron.training run, ~25 s)."""
from __future__ import annotations

import os
import subprocess
import sys

import torch

from nemo_twvlm.presets import PRESETS


def test_training_loads_an_import_and_its_checkpoint_exports(tiny, tmp_path):
    from nemo_twvlm.conversion import export_hf, import_hf
    from nemo_twvlm.data.synthetic import write_dataset
    from nemo_twvlm.training.config import PretrainConfig, config_to_json

    vision, lm = PRESETS["debug"].vision, PRESETS["debug"].language
    hf = tiny.write_llava(
        tmp_path / "hf",
        vision=dict(hidden_size=vision.hidden_size, intermediate_size=vision.ffn_hidden_size,
                    num_hidden_layers=vision.num_layers, num_attention_heads=vision.num_attention_heads,
                    image_size=vision.image_size, patch_size=vision.patch_size),
        text=dict(hidden_size=lm.hidden_size, intermediate_size=lm.ffn_hidden_size, num_hidden_layers=lm.num_layers,
                  num_attention_heads=lm.num_attention_heads, num_key_value_heads=lm.num_query_groups,
                  vocab_size=lm.vocab_size, max_position_embeddings=lm.max_position_embeddings),
    )
    assert import_hf(hf, tmp_path / "imported").name == "debug"  # a registered size: training can name it

    write_dataset(tmp_path / "data", train_pairs=64, val_pairs=4, interleaved_docs=16)
    cfg = PretrainConfig(name="interop")
    cfg.model.init_from = str(tmp_path / "imported")
    cfg.model.freeze_plan = "cpt"
    cfg.data.path = str(tmp_path / "data" / "blend.yaml")
    cfg.data.micro_batch_size = cfg.data.global_batch_size = 2
    # lr 0: one optimizer step that must leave every weight exactly as imported.
    cfg.trainer.max_steps, cfg.trainer.warmup_steps, cfg.trainer.lr, cfg.trainer.min_lr = 1, 0, 0.0, 0.0
    cfg.checkpoint.save, cfg.checkpoint.save_interval = str(tmp_path / "trained"), 1
    config_path = tmp_path / "cfg.json"
    config_path.write_text(config_to_json(cfg))
    # compat.distributed.init_single_process() (used by other test folders) leaves MASTER_PORT in this
    # process's environment; the run must pick its own port.
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE")}
    result = subprocess.run([sys.executable, "-m", "nemo_twvlm.training.pretrain", str(config_path)],
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    original = tiny.canonical_tensors(hf)
    exported = tiny.canonical_tensors(export_hf(tmp_path / "trained", tmp_path / "exported"))
    # A training checkpoint has no sidecar: the ViT comes back at its built depth (2 of 3 layers).
    kept = {n for n in original if "post_layernorm" not in n and "encoder.layers.2." not in n}
    assert kept <= set(exported)
    for name in kept:
        assert torch.equal(exported[name], original[name]), name
