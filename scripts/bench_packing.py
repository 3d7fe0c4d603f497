"""Useful-token fraction of packed rows against naive padding, on the synthetic blend through the real loader,
and forward+backward throughput of the debug model on each kind of row.

Rows come from `nemo_twvlm.data.loader.train_loader` on blend.yaml with the twvlm_debug settings
(micro-batch 8, seq_length 256): once with packing (buffer 256), once without (one sample per row).
"Positions computed" is what megatron's LLaVAModel actually runs the LM over: every row of a batch is
as long as the padded token width plus the image expansion of the row with the most images. Three layouts:

  packed              packed rows, batch as the loader builds it (what training runs)
  padded (batch max)  one sample per row, padded to the longest row in its batch
  padded (seq_length) one sample per row, padded to seq_length (fixed-shape batches)

    .venv/bin/python scripts/bench_packing.py                # fractions + fwd/bwd tokens/s
    .venv/bin/python scripts/bench_packing.py --no-speed     # fractions only
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_loader import (  # noqa: E402
    DEFAULT_DATA, ROOT, add_threads_argument, apply_threads, ensure_data, machine_info, print_machine,
)

LAYOUTS = ("packed", "padded (batch max)", "padded (seq_length)")


def collect(data: Path, encoder, *, packing: bool, samples: int, batch: int, buffer: int) -> list:
    """Batches from the training loader until `samples` samples have arrived."""
    from nemo_twvlm.data.loader import train_loader

    loader = train_loader(str(data / "blend.yaml"), encoder, micro_batch_size=batch, packing=packing,
                          packing_buffer_size=buffer)
    batches, seen = [], 0
    for b in loader:
        batches.append(b)
        seen += sum(len(k) for k in b.keys)
        if seen >= samples:
            break
    del loader
    return batches


def model_length(b, image_id: int, extra_per_image: int) -> int:
    """Positions per row the LM computes for batch `b` (megatron LLaVAModel._preprocess_data's max_seq_len)."""
    images_per_row = (b.tokens == image_id).sum(dim=1)
    return int((b.tokens.shape[1] + images_per_row * extra_per_image).max())


def pad_to_seq_length(b, encoder):
    """The same rows padded so the LM computes exactly seq_length positions per row."""
    import torch

    images_per_row = (b.tokens == encoder.image_id).sum(dim=1)
    width = encoder.seq_length - int(images_per_row.max()) * encoder.extra_per_image
    extra = width - b.tokens.shape[1]
    if extra < 0:
        raise ValueError(f"batch is already longer than seq_length={encoder.seq_length}")
    rows = b.tokens.shape[0]

    def grow(t, value):
        return torch.cat([t, torch.full((rows, extra), value, dtype=t.dtype)], dim=1)

    return type(b)(
        __key__=b.__key__, __restore_key__=b.__restore_key__,
        tokens=grow(b.tokens, encoder.pad_id), labels=grow(b.labels, encoder.pad_id),
        loss_mask=grow(b.loss_mask, 0.0), position_ids=torch.arange(width).expand(rows, -1).clone(),
        images=b.images, num_image_tiles=b.num_image_tiles, seq_lengths=b.seq_lengths, keys=b.keys,
    )


def fractions(batches: list, encoder, *, to_seq_length: bool) -> dict:
    useful = sum(sum(sum(row) for row in b.seq_lengths) for b in batches)
    rows = sum(len(b.seq_lengths) for b in batches)
    if to_seq_length:
        computed = rows * encoder.seq_length
    else:
        computed = sum(len(b.seq_lengths) * model_length(b, encoder.image_id, encoder.extra_per_image)
                       for b in batches)
    return {"samples": sum(len(k) for b in batches for k in b.keys), "batches": len(batches), "rows": rows,
            "useful_positions": useful, "computed_positions": computed, "fraction": useful / computed,
            "computed_per_row": computed / rows}


def speed(layouts: dict[str, list], encoder, *, per_layout: int, warmup: int, rounds: int) -> dict:
    """Useful and computed positions/s of forward+backward, layouts interleaved batch by batch so that
    load from other processes hits them alike."""
    import torch

    from nemo_twvlm.model.freeze import apply_freeze_plan
    from nemo_twvlm.model.llava import build_llava
    from nemo_twvlm.presets import get_preset
    from nemo_twvlm.compat.distributed import init_single_process
    from nemo_twvlm.training.step import masked_token_loss, model_inputs

    init_single_process()
    torch.manual_seed(0)
    preset = get_preset("debug")
    model = build_llava(preset, image_token_index=encoder.image_id, use_te=False)
    apply_freeze_plan(model, "cpt", train_vision=True)  # the twvlm_debug recipe's plan
    model.train()

    def step(b) -> float:
        start = time.perf_counter()
        output, loss_mask = model(**model_inputs(b, image_token_index=encoder.image_id,
                                                 num_image_tokens=preset.num_image_tokens, use_te=False))
        loss_sum, num_tokens, _ = masked_token_loss(loss_mask, output)
        (loss_sum / num_tokens.clamp_min(1)).backward()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    totals = {name: {"seconds": 0.0, "useful": 0, "computed": 0} for name in layouts}
    for name, batches in layouts.items():
        for b in batches[:warmup]:
            step(b)
    for _ in range(rounds):
        for i in range(warmup, warmup + per_layout):
            for name, batches in layouts.items():
                b = batches[i % len(batches)]
                totals[name]["seconds"] += step(b)
                totals[name]["useful"] += sum(sum(row) for row in b.seq_lengths)
                totals[name]["computed"] += len(b.seq_lengths) * model_length(b, encoder.image_id,
                                                                              encoder.extra_per_image)
    return {name: {"useful_per_s": t["useful"] / t["seconds"], "computed_per_s": t["computed"] / t["seconds"],
                   "ms_per_batch": 1e3 * t["seconds"] / (per_layout * rounds)} for name, t in totals.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--tokenizer", default=str(ROOT / "data" / "tokenizer"))
    parser.add_argument("--samples", type=int, default=2048, help="samples drawn through each loader")
    parser.add_argument("--micro-batch-size", type=int, default=8)
    parser.add_argument("--seq-length", type=int, default=256)
    parser.add_argument("--packing-buffer-size", type=int, default=256)
    parser.add_argument("--no-speed", action="store_true", help="skip the forward+backward timing")
    parser.add_argument("--speed-batches", type=int, default=6, help="timed batches per layout per round")
    parser.add_argument("--speed-rounds", type=int, default=3)
    add_threads_argument(parser)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    apply_threads(args.torch_threads)

    from bench_loader import _encoder

    info = machine_info()
    print_machine(info)
    data = ensure_data(args.data.resolve())
    encoder = _encoder(args.tokenizer, args.seq_length)
    kw = dict(samples=args.samples, batch=args.micro_batch_size, buffer=args.packing_buffer_size)
    packed = collect(data, encoder, packing=True, **kw)
    padded = collect(data, encoder, packing=False, **kw)
    overlap = len({k for b in packed for r in b.keys for k in r} & {k for b in padded for r in b.keys for k in r})
    print(f"data: {data / 'blend.yaml'}; micro-batch {args.micro_batch_size} rows, seq_length {args.seq_length}, "
          f"packing buffer {args.packing_buffer_size}; {overlap} samples common to both loaders", flush=True)

    results = {"machine": info, "args": {k: str(v) for k, v in vars(args).items()}, "layouts": {
        LAYOUTS[0]: fractions(packed, encoder, to_seq_length=False),
        LAYOUTS[1]: fractions(padded, encoder, to_seq_length=False),
        LAYOUTS[2]: fractions(padded, encoder, to_seq_length=True),
    }}
    packed_vs_seq = fractions(packed, encoder, to_seq_length=True)["fraction"]
    results["packed_fill_of_seq_length"] = packed_vs_seq
    for name, f in results["layouts"].items():
        print(f"{name:20s}: useful fraction {f['fraction']:.3f}  ({f['useful_positions']} of "
              f"{f['computed_positions']} positions; {f['samples']} samples in {f['rows']} rows, "
              f"{f['computed_per_row']:.0f} positions computed per row)", flush=True)
    print(f"packed rows hold {packed_vs_seq:.3f} of seq_length={args.seq_length} (packing_efficiency)")
    base = results["layouts"]
    print(f"ratio packed / padded (batch max) = {base[LAYOUTS[0]]['fraction'] / base[LAYOUTS[1]]['fraction']:.2f}; "
          f"packed / padded (seq_length) = {base[LAYOUTS[0]]['fraction'] / base[LAYOUTS[2]]['fraction']:.2f}",
          flush=True)

    if not args.no_speed:
        layouts = {LAYOUTS[0]: packed, LAYOUTS[1]: padded, LAYOUTS[2]: [pad_to_seq_length(b, encoder) for b in padded]}
        s = speed(layouts, encoder, per_layout=args.speed_batches, warmup=2, rounds=args.speed_rounds)
        results["speed"] = s
        for name, r in s.items():
            print(f"{name:20s}: forward+backward {r['ms_per_batch']:7.1f} ms/batch, {r['useful_per_s']:8.0f} useful "
                  f"positions/s ({r['computed_per_s']:.0f} computed/s)", flush=True)
        print(f"ratio useful positions/s packed / padded (batch max) = "
              f"{s[LAYOUTS[0]]['useful_per_s'] / s[LAYOUTS[1]]['useful_per_s']:.2f}; packed / padded (seq_length) = "
              f"{s[LAYOUTS[0]]['useful_per_s'] / s[LAYOUTS[2]]['useful_per_s']:.2f}", flush=True)
    results["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
