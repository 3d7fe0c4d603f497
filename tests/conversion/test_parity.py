"""Our converted model computes what the HF model computes: logits on the same images and prompts.

The batch has 2, 1 and 0 images per sample, so the combined sequences differ in length; both models get
the same already-normalised pixels. Megatron expands one `<image>` id into the image's 16 embeddings,
HF expects the processor to have written 16 `<image>` ids: only valid positions are compared.
"""
from __future__ import annotations

import json

import torch

TOL = 1e-4
IMAGE_ID = 5  # <image> in data/tokenizer
IMAGES_PER_SAMPLE = (2, 1, 0)
TEXT_LEN = 12


def _batch(num_image_tokens: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(sum(IMAGES_PER_SAMPLE), 3, 32, 32, generator=g)
    ours, hf, lengths = [], [], []
    for count in IMAGES_PER_SAMPLE:
        tokens = torch.randint(10, 1000, (TEXT_LEN,), generator=g)
        for slot in range(count):
            tokens[1 + 4 * slot] = IMAGE_ID
        ours.append(tokens)
        expanded = torch.cat([torch.full((num_image_tokens,), IMAGE_ID) if t == IMAGE_ID else t.view(1) for t in tokens])
        hf.append(expanded)
        lengths.append(len(expanded))
    width = max(lengths)
    hf_ids = torch.full((len(hf), width), 6)
    mask = torch.zeros(len(hf), width, dtype=torch.long)
    for i, ids in enumerate(hf):
        hf_ids[i, : len(ids)] = ids
        mask[i, : len(ids)] = 1
    return images, torch.stack(ours), hf_ids, mask, lengths


@torch.no_grad()
def _ours_logits(model, images, input_ids):
    position_ids = torch.arange(input_ids.shape[1]).expand(input_ids.shape[0], -1)
    logits, _ = model(images=images, input_ids=input_ids, position_ids=position_ids, attention_mask=None)
    return logits


@torch.no_grad()
def _max_diff(hf_model, ours_model, preset) -> float:
    images, ids, hf_ids, mask, lengths = _batch(preset.num_image_tokens)
    ours = _ours_logits(ours_model, images, ids)
    theirs = hf_model(input_ids=hf_ids, pixel_values=images, attention_mask=mask).logits
    assert ours.shape[0] == theirs.shape[0] and ours.shape[-1] == theirs.shape[-1]
    return max(float((ours[i, :n] - theirs[i, :n]).abs().max()) for i, n in enumerate(lengths))


def test_llava_dir_import_matches_hf_logits(hf_llava, ours_tp1, tiny):
    from transformers import LlavaForConditionalGeneration

    hf_model = LlavaForConditionalGeneration.from_pretrained(hf_llava, attn_implementation="eager").eval()
    ours, preset = tiny.load_ours(ours_tp1)
    assert preset.language.num_query_groups < preset.language.num_attention_heads  # GQA
    assert preset.language.untie_embeddings and preset.language.vocab_size % 8 != 0
    diff = _max_diff(hf_model, ours, preset)
    print(f"parity llava-dir import: max |logit diff| = {diff:.2e}")
    assert diff <= TOL


def test_clip_plus_llama_import_matches_hf_built_from_the_same_parts(hf_pair, ours_pair, tiny):
    """The HF reference is assembled by hand from the CLIP and Llama checkpoints plus our projector."""
    from transformers import CLIPVisionModel, LlamaForCausalLM, LlavaForConditionalGeneration

    clip_dir, llama_dir = hf_pair
    ours, preset = tiny.load_ours(ours_pair)
    hf_model = LlavaForConditionalGeneration(tiny.llava_config()).eval()
    hf_model.config._attn_implementation = "eager"
    vision = CLIPVisionModel.from_pretrained(clip_dir)
    language = LlamaForCausalLM.from_pretrained(llama_dir)
    with torch.no_grad():
        hf_model.model.vision_tower.load_state_dict(vision.state_dict())
        hf_model.model.language_model.load_state_dict(language.model.state_dict())
        hf_model.lm_head.weight.copy_(language.lm_head.weight)
        projector = ours.vision_projection.encoder
        hf_model.model.multi_modal_projector.linear_1.weight.copy_(projector.linear_fc1.weight)
        hf_model.model.multi_modal_projector.linear_1.bias.copy_(projector.linear_fc1.bias)
        hf_model.model.multi_modal_projector.linear_2.weight.copy_(projector.linear_fc2.weight)
        hf_model.model.multi_modal_projector.linear_2.bias.copy_(projector.linear_fc2.bias)
    # The projector is fresh: seeded N(0, 0.02) weights, zero biases.
    assert float(projector.linear_fc1.bias.abs().max()) == 0.0
    assert 0.01 < float(projector.linear_fc1.weight.std()) < 0.03
    diff = _max_diff(hf_model, ours, preset)
    print(f"parity CLIP + Llama import: max |logit diff| = {diff:.2e}")
    assert diff <= TOL


def test_exported_dir_loads_cleanly_and_runs_through_its_processor(export_tp1, hf_llava):
    """Plain transformers, no remote code: no missing or unexpected weights, and the processor expands
    `<image>` into the model's 16 image tokens."""
    from PIL import Image
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    model, info = LlavaForConditionalGeneration.from_pretrained(export_tp1, output_loading_info=True,
                                                                attn_implementation="eager")
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert model.config.vision_feature_layer == -2 and model.config.vision_feature_select_strategy == "default"
    assert model.config.image_token_index == IMAGE_ID and model.config.projector_hidden_act == "gelu"
    preprocessor = json.loads((export_tp1 / "preprocessor_config.json").read_text())
    assert preprocessor["image_processor_type"] == "CLIPImageProcessor" and preprocessor["crop_size"]["height"] == 32
    processor = AutoProcessor.from_pretrained(export_tp1)
    assert processor.image_processor.crop_size["height"] == 32
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "這是什麼？"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    assert "<image>" in prompt and prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    inputs = processor(images=Image.new("RGB", (40, 30), (200, 30, 30)), text=prompt, return_tensors="pt")
    assert int((inputs["input_ids"] == IMAGE_ID).sum()) == 16
    with torch.no_grad():
        logits = model(**inputs).logits
    assert torch.isfinite(logits).all()
