"""From the published weights: a CLIP ViT and a Llama with the Llama-3 tokenizer as published (128,256 ids,
no `<image>`), through import, align, CPT and export, at debug width.

The chain, for both ways `<image>` enters the vocabulary (reserved id / appended id) and at TP 2 for the
appended one: pair import -> align 3 steps -> CPT 3 steps -> export_hf -> plain transformers. Then:
our model vs the export, the export's text-only logits vs the source Llama, the export's own files
agreeing with each other, chat through the Llama-3 template stopping on <|eot_id|>, and padding rows never
sampled.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llama3_layout import BPE_SIZE, CHAT_TEMPLATE, VOCAB, check_layout, write_published_pair
from nemo_twvlm.presets import PRESETS

TOL = 1e-4
DEBUG_VISION = PRESETS["debug"].vision


@pytest.fixture(scope="module")
def published_pair(tiny, tmp_path_factory):
    return write_published_pair(tmp_path_factory.mktemp("published"), tiny.randomize_)


def test_the_fixture_is_the_published_layout(published_pair):
    from nemo_twvlm.data.tokenizer import load_tokenizer

    check_layout(load_tokenizer(published_pair[1]))
    config = json.loads((published_pair[1] / "config.json").read_text())
    assert config["vocab_size"] == 128256 and config["model_type"] == "llama"


def _train(cfg, tmp_path: Path, name: str, nproc: int = 1) -> None:
    from nemo_twvlm.training.config import config_to_json

    path = tmp_path / f"{name}.json"
    path.write_text(config_to_json(cfg))
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE")}
    code = ("import sys; from nemo_twvlm.training.config import config_from_json; from nemo_twvlm.training.pretrain import run_pretrain; "
            f"run_pretrain(config_from_json(open(sys.argv[1]).read()), nproc={nproc})")
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=900,
                            env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def _stage(recipe, init_from: Path, save: Path, data: Path, tp: int = 1):
    cfg = recipe()
    cfg.model.init_from = str(init_from)
    cfg.data.tokenizer = ""  # the checkpoint's
    cfg.data.path = str(data / "blend.yaml")
    cfg.data.seq_length, cfg.data.micro_batch_size, cfg.data.global_batch_size = 128, 2, 2
    cfg.data.packing_buffer_size = 16
    cfg.trainer.max_steps, cfg.trainer.warmup_steps, cfg.trainer.log_interval = 3, 0, 1
    cfg.parallel.tensor_parallel = tp
    cfg.checkpoint.save, cfg.checkpoint.save_interval = str(save), 3
    # The recipes' in-training evaluation reads the demo's data: conversion is under test here, not it.
    cfg.data.val_path = cfg.data.retention_path = ""
    cfg.trainer.retention_gate, cfg.trainer.eval_iters = None, 0
    return cfg


# Both modes in the default suite; the appended one at TP 2 (two ranks per stage under torchrun) is opt-in
# with --runslow. Each chain is two megatron.training runs and two exports, 70-90 s on 2 cores.
@pytest.fixture(scope="module", params=[("reserved", 1), ("append", 1),
                                        pytest.param(("append", 2), marks=pytest.mark.slow)],
                ids=["reserved", "append", "append-tp2"])
def chain(request, published_pair, synthetic_blend, tmp_path_factory):
    """import -> align 3 steps -> CPT 3 steps (from the align checkpoint) -> export of each stage."""
    from nemo_twvlm.conversion import export_hf, import_hf
    from nemo_twvlm.launch.recipes import get_recipe

    mode, tp = request.param
    root = tmp_path_factory.mktemp(f"chain_{mode}_{tp}")
    import_hf(published_pair, root / "base", tp=tp, image_token=mode)
    _train(_stage(lambda: get_recipe("twvlm_debug_align"), root / "base", root / "align", synthetic_blend, tp),
           root, "align", nproc=tp)
    _train(_stage(lambda: get_recipe("twvlm_debug_cpt"), root / "align", root / "cpt", synthetic_blend),
           root, "cpt")
    return {"mode": mode, "tp": tp, "root": root, "base": root / "base", "align": root / "align",
            "cpt": root / "cpt", "export_align": export_hf(root / "align", root / "hf_align"),
            "export_cpt": export_hf(root / "cpt", root / "hf_cpt")}


def test_image_token_is_decided_once_and_recorded(chain):
    from nemo_twvlm.data.tokenizer import load_tokenizer, read_image_token_record
    from nemo_twvlm.rundir import checkpoint_preset, checkpoint_tokenizer

    expected = {"reserved": (128002, VOCAB), "append": (VOCAB, 128320)}[chain["mode"]]
    for stage in ("base", "align", "cpt"):
        tokenizer_dir = checkpoint_tokenizer(chain[stage])
        assert tokenizer_dir == str(chain[stage] / "tokenizer")  # every stage carries its own copy
        record = read_image_token_record(tokenizer_dir)
        assert (record.mode, record.id) == (chain["mode"], expected[0])
        tokenizer = load_tokenizer(tokenizer_dir)
        assert tokenizer.convert_tokens_to_ids("<image>") == expected[0]
        assert len(tokenizer) == VOCAB + (chain["mode"] == "append")
        assert checkpoint_preset(chain[stage]).language.vocab_size == expected[1]
    if chain["mode"] == "reserved":
        assert record.replaced == "<|reserved_special_token_0|>"


def test_export_agrees_with_itself(chain):
    from transformers import AutoProcessor, AutoTokenizer, GenerationConfig

    out = chain["export_cpt"]
    config = json.loads((out / "config.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert config["image_token_index"] == tokenizer.convert_tokens_to_ids("<image>")
    assert config["text_config"]["vocab_size"] == {"reserved": VOCAB, "append": 128320}[chain["mode"]]
    assert len(tokenizer) <= config["text_config"]["vocab_size"]
    generation = GenerationConfig.from_pretrained(out)
    assert sorted(generation.eos_token_id) == [BPE_SIZE + 1, BPE_SIZE + 9]  # <|end_of_text|>, <|eot_id|>
    processor = AutoProcessor.from_pretrained(out)
    assert processor.tokenizer.convert_tokens_to_ids("<image>") == config["image_token_index"]
    # The processor's template renders what training's template renders (image parts as `<image>\n`).
    parts = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "這是什麼顏色？"}]}]
    text = [{"role": "user", "content": "<image>\n這是什麼顏色？"}]
    assert processor.apply_chat_template(parts, add_generation_prompt=True) == \
        tokenizer.apply_chat_template(text, add_generation_prompt=True, tokenize=False, chat_template=CHAT_TEMPLATE)


def _export_model(directory):
    from transformers import LlavaForConditionalGeneration

    model, info = LlavaForConditionalGeneration.from_pretrained(directory, attn_implementation="eager",
                                                                output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    return model.eval()


@torch.no_grad()
def test_our_trained_model_matches_its_export(chain):
    from nemo_twvlm.inference.loading import load_for_inference

    loaded = load_for_inference(str(chain["cpt"]))
    hf_model = _export_model(chain["export_cpt"])
    image_id, tokens = loaded.image_token_index, loaded.preset.num_image_tokens
    g = torch.Generator().manual_seed(0)
    images = torch.randn(1, 3, DEBUG_VISION.image_size, DEBUG_VISION.image_size, generator=g)
    text = torch.randint(0, BPE_SIZE, (10,), generator=g).tolist()
    ids = [BPE_SIZE, image_id, *text]
    ours, _ = loaded.model(images=images, input_ids=torch.tensor([ids]),
                           position_ids=torch.arange(len(ids))[None], attention_mask=None)
    expanded = torch.tensor([[BPE_SIZE, *[image_id] * tokens, *text]])
    theirs = hf_model(input_ids=expanded, pixel_values=images).logits
    assert ours.shape == theirs.shape
    diff = float((ours - theirs).abs().max())
    print(f"{chain['mode']} tp={chain['tp']}: ours vs export max |logit diff| = {diff:.2e}")
    assert diff <= TOL


@torch.no_grad()
def test_import_then_export_leaves_the_language_model_untouched(chain, published_pair):
    """The align stage trains the projector only: its export's text logits are the source Llama's."""
    from transformers import LlamaForCausalLM

    source = LlamaForCausalLM.from_pretrained(published_pair[1]).eval()
    exported = _export_model(chain["export_align"])
    ids = torch.randint(0, BPE_SIZE, (2, 24), generator=torch.Generator().manual_seed(1))
    ids[:, 0] = BPE_SIZE
    theirs = source(input_ids=ids).logits
    ours = exported(input_ids=ids).logits
    diff = float((ours[..., :VOCAB] - theirs).abs().max())
    print(f"{chain['mode']} tp={chain['tp']}: export vs source Llama text logits max diff = {diff:.2e}")
    assert diff <= TOL


class _PushLogits:
    """Adds a large constant to chosen logits of the output layer while active (a model that "wants" to
    emit those ids), so the test sees what generation does with them."""

    def __init__(self, model, ids):
        self.layer, self.ids = model.language_model.output_layer, ids

    def __enter__(self):
        def push(module, inputs, output):
            logits = output[0].clone()
            logits[..., self.ids] += 1e4
            return (logits, *output[1:])

        self.handle = self.layer.register_forward_hook(push)

    def __exit__(self, *exc):
        self.handle.remove()


def test_chat_renders_the_llama3_template_and_stops_on_eot(chain):
    from nemo_twvlm.inference.chat import ChatSession
    from nemo_twvlm.inference.generate import SamplingParams, generate
    from nemo_twvlm.inference.loading import load_for_inference

    loaded = load_for_inference(str(chain["cpt"]))
    tokenizer, image = loaded.tokenizer, torch.rand(3, 40, 30)
    session = ChatSession(loaded, image, SamplingParams(max_new_tokens=4))
    assert set(session.params.stop_ids) == {BPE_SIZE + 1, BPE_SIZE + 9}  # <|end_of_text|>, <|eot_id|>
    ids = session.prompt_ids("這是什麼顏色？")
    assert ids[:2] == [BPE_SIZE, tokenizer.convert_tokens_to_ids("<|start_header_id|>")]
    assert ids.count(loaded.image_token_index) == 1
    assert tokenizer.decode(ids[-4:]) == "<|start_header_id|>assistant<|end_header_id|>\n\n"
    with_system = ChatSession(loaded, image, system="你是 Twllm。").prompt_ids("hi")
    assert tokenizer.decode(with_system[:3]) == "<|begin_of_text|><|start_header_id|>system"

    rows = loaded.model.language_model.output_layer.weight.shape[0]
    if rows > len(tokenizer):  # appended: rows past the tokenizer are padding
        with _PushLogits(loaded.model, list(range(len(tokenizer), rows))):
            generated = generate(loaded.model, ids, session.pixels, image_token_index=loaded.image_token_index,
                                 num_image_tokens=loaded.preset.num_image_tokens, params=session.params)
        assert len(generated) == 4 and max(generated) < len(tokenizer)  # never sampled
    with _PushLogits(loaded.model, [BPE_SIZE + 9]):
        assert session.ask("這是什麼顏色？") == ""  # <|eot_id|> comes first: the reply ends at once
