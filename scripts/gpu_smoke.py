"""GPU smoke test and throughput probe: the VLM against a text-only GPT with the same language model.

For each model (debug, and an 8B proxy: ViT-L/14-336 + Llama-3-8B's width with --proxy-layers decoder
layers, which fits one GPU with its optimizer) and each precision (BF16; FP8 hybrid with delayed and
current scaling through Transformer Engine), a few training steps on mock rows (`nemo_twvlm.data.mock`,
the same rows the perf recipes use) with TE layer specs and packed THD attention, then the same for a
megatron-core GPTModel built from the identical language config on random tokens. Prints per case:

    gpu_smoke: model=8b_proxy kind=vlm precision=fp8_delayed tokens_per_s=... model_tflops=... step_ms=... peak_gib=...
    gpu_smoke: model=8b_proxy precision=fp8_delayed vision_overhead=1.23   (GPT tokens/s / VLM tokens/s)

Model TFLOP/s are `nemo_twvlm.planner` training FLOPs (causal-halved attention; a frozen ViT counted
forward only) over the measured step time. `--device cpu` runs the debug model in fp32 without TE, so
the script itself is tested on machines with no GPU.

    bash scripts/gpu_smoke.sh                      # on one H100/H200
    bash scripts/gpu_smoke.sh --device cpu         # the CPU check the test suite runs
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nemo_twvlm.data.mock import MockBatches  # noqa: E402
from nemo_twvlm.model.flops import language_flops_per_token, projector_flops_per_image, vit_flops_per_image  # noqa: E402
from nemo_twvlm.presets import PRESETS, ModelPreset  # noqa: E402

IMAGE_TOKEN_INDEX = 5  # any id below the vocabulary works for mock rows


@dataclasses.dataclass(frozen=True)
class Case:
    preset: ModelPreset
    seq_length: int
    images_per_sample: int
    precision: str  # fp32 | bf16 | fp8_delayed | fp8_tensorwise


def cases(device: str, proxy_layers: int) -> list[Case]:
    debug = PRESETS["debug"]
    if device == "cpu":
        return [Case(debug, 256, 2, "fp32")]
    eight = PRESETS["8b"]
    proxy = dataclasses.replace(eight, name="8b_proxy",
                                language=dataclasses.replace(eight.language, num_layers=proxy_layers))
    precisions = ["bf16", "fp8_delayed", "fp8_tensorwise"]
    return [Case(debug, 1024, 4, p) for p in precisions] + [Case(proxy, 4096, 1, p) for p in precisions]


def base_config(precision: str):
    from megatron.core.transformer.transformer_config import TransformerConfig

    from nemo_twvlm.model.llava import cpu_base_config

    if precision == "fp32":
        return cpu_base_config()
    fp8 = precision.startswith("fp8")
    return TransformerConfig(
        num_layers=1, hidden_size=8, num_attention_heads=1,
        params_dtype=torch.bfloat16, pipeline_dtype=torch.bfloat16, bf16=True,
        fp8="hybrid" if fp8 else None, fp8_recipe=precision.split("_", 1)[1] if fp8 else "delayed",
        # No DDP wrapper here, so no main_grad buffers for the fused weight-gradient accumulation.
        gradient_accumulation_fusion=False, attention_dropout=0.0, hidden_dropout=0.0,
    )


def build(case: Case, kind: str, use_te: bool):
    from megatron.core.models.gpt import GPTModel
    from megatron.core.models.gpt.gpt_layer_specs import (
        get_gpt_layer_local_spec,
        get_gpt_layer_with_transformer_engine_spec,
    )

    from nemo_twvlm.model.freeze import apply_freeze_plan
    from nemo_twvlm.model.llava import build_llava, language_config

    base = base_config(case.precision)
    if kind == "vlm":
        model = build_llava(case.preset, base_config=base, image_token_index=IMAGE_TOKEN_INDEX, use_te=use_te,
                            max_sequence_length=case.seq_length)
        apply_freeze_plan(model, "cpt")  # LM + projector train, the ViT is frozen (as in the CPT recipes)
        return model
    lm = case.preset.language
    spec = get_gpt_layer_with_transformer_engine_spec() if use_te else get_gpt_layer_local_spec(normalization="RMSNorm")
    return GPTModel(config=language_config(case.preset, base), transformer_layer_spec=spec, vocab_size=lm.vocab_size,
                    max_sequence_length=case.seq_length, position_embedding_type="rope",
                    rotary_base=int(lm.rotary_base), share_embeddings_and_output_weights=not lm.untie_embeddings,
                    parallel_output=True)


def step_inputs(case: Case, kind: str, batches: MockBatches, device: torch.device, use_te: bool) -> dict:
    from nemo_twvlm.training.step import model_inputs

    batch = next(batches)
    if kind == "vlm":
        kwargs = model_inputs(batch, image_token_index=IMAGE_TOKEN_INDEX,
                              num_image_tokens=case.preset.num_image_tokens, use_te=use_te,
                              seq_length=case.seq_length)
    else:
        g = batches.generator
        ids = torch.randint(0, case.preset.language.vocab_size, (1, case.seq_length + 1), generator=g)
        kwargs = dict(input_ids=ids[:, :-1], labels=ids[:, 1:], position_ids=torch.arange(case.seq_length)[None],
                      attention_mask=None if use_te else torch.ones(1, 1, case.seq_length, case.seq_length,
                                                                    dtype=torch.bool).triu(1))
    dtype = torch.bfloat16 if case.precision != "fp32" else torch.float32
    moved = {}
    for key, value in kwargs.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device)
            if value.is_floating_point() and key == "images":
                value = value.to(dtype)
        moved[key] = value
    return moved


def flops_per_step(case: Case, kind: str) -> float:
    tokens = case.seq_length
    flops = tokens * language_flops_per_token(case.preset, case.seq_length)
    if kind == "vlm":
        flops += case.images_per_sample * (vit_flops_per_image(case.preset.vision, backward=False)
                                           + projector_flops_per_image(case.preset))
    return flops


def run_case(case: Case, kind: str, *, device: torch.device, use_te: bool, warmup: int, steps: int) -> dict:
    torch.manual_seed(0)
    model = build(case, kind, use_te).to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-5, fused=device.type == "cuda")
    batches = MockBatches(case.preset, seq_length=case.seq_length, micro_batch_size=1,
                          images_per_sample=case.images_per_sample, image_token_index=IMAGE_TOKEN_INDEX)
    inputs = [step_inputs(case, kind, batches, device, use_te) for _ in range(warmup + steps)]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    losses, start = [], 0.0
    for i, kwargs in enumerate(inputs):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        output = model(**kwargs)
        per_token, mask = output if kind == "vlm" else (output, torch.ones_like(output))
        loss = (per_token.float() * mask).sum() / mask.sum()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    result = dict(model=case.preset.name, kind=kind, precision=case.precision,
                  tokens_per_s=case.seq_length / seconds, model_tflops=flops_per_step(case, kind) / seconds / 1e12,
                  step_ms=seconds * 1e3, flops_per_step=flops_per_step(case, kind), loss_first=losses[0],
                  loss_last=losses[-1],
                  peak_gib=torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0)
    del model, optimizer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--proxy-layers", type=int, default=4, help="decoder layers of the 8B proxy")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--json", type=Path, help="also write every result here")
    args = parser.parse_args()

    from nemo_twvlm.compat import te_available
    from nemo_twvlm.compat.distributed import init_single_process

    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(0)
        print(f"gpu_smoke: device={torch.cuda.get_device_name(0)} te={te_available()}", flush=True)
    init_single_process(seed=1234)
    use_te = device.type == "cuda" and te_available()
    if device.type == "cuda" and not use_te:
        sys.exit("gpu_smoke: Transformer Engine is not importable; run inside an NGC PyTorch/NeMo container")

    results = []
    for case in cases(args.device, args.proxy_layers):
        pair = {}
        for kind in ("vlm", "gpt"):
            try:
                pair[kind] = run_case(case, kind, device=device, use_te=use_te, warmup=args.warmup, steps=args.steps)
            except Exception as error:  # one failing case (e.g. FP8 on a pre-Hopper card) must not hide the rest
                print(f"gpu_smoke: model={case.preset.name} kind={kind} precision={case.precision} "
                      f"FAILED {type(error).__name__}: {error}", flush=True)
                continue
            r = pair[kind]
            results.append(r)
            print(f"gpu_smoke: model={r['model']} kind={kind} precision={r['precision']} "
                  f"tokens_per_s={r['tokens_per_s']:.1f} model_tflops={r['model_tflops']:.3f} "
                  f"step_ms={r['step_ms']:.1f} peak_gib={r['peak_gib']:.2f} "
                  f"loss={r['loss_first']:.3f}->{r['loss_last']:.3f}", flush=True)
        if len(pair) == 2:
            print(f"gpu_smoke: model={case.preset.name} precision={case.precision} "
                  f"vision_overhead={pair['gpt']['tokens_per_s'] / pair['vlm']['tokens_per_s']:.3f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
