"""Peak memory of HF <-> megatron conversion on a synthetic wide LLaVA, against the size of its tensor file.

    .venv/bin/python scripts/bench_convert_memory.py                  # ~1 GB fp32 model, about a minute
    .venv/bin/python scripts/bench_convert_memory.py --hidden 4096    # wider

Each conversion runs in a fresh process that first imports torch, transformers and megatron, then resets
its peak-RSS mark (/proc/self/clear_refs) and converts; growth = peak RSS (VmHWM, which counts resident
pages of memory-mapped files too) minus RSS before the conversion. The fixed overhead of the conversion
code path (process group, HF meta model, megatron's checkpoint machinery) is the same growth measured on
a tiny model in the same run:

    ratio = (growth(wide) - growth(tiny)) / size of the wide model's largest tensor file

Target: ratio <= 1.5, i.e. conversion holds the model once plus transient slack, never two copies.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, sys, time
import megatron.core.dist_checkpointing, transformers.models.llava.modeling_llava  # imports are not conversion
import nemo_twvlm.conversion.exporter, nemo_twvlm.conversion.importer, nemo_twvlm.model.llava
from nemo_twvlm.conversion import export_hf, import_hf

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

mode, src, dst = sys.argv[1:4]
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak-RSS mark (VmHWM) to the current RSS
before = status("VmRSS")
start = time.perf_counter()
(import_hf if mode == "import" else export_hf)(src, dst)
print(json.dumps({"before": before, "peak": status("VmHWM"), "seconds": time.perf_counter() - start}))
"""


def write_synthetic(directory: Path, *, hidden: int, layers: int, vocab: int, ffn: int) -> int:
    """A random llava-hf checkpoint in one safetensors file; returns that file's size in bytes."""
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    from nemo_twvlm.conversion.sources import HUB_NAMING, llava_canonical_name, output_name

    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=64, intermediate_size=256, num_hidden_layers=3,
                                       num_attention_heads=4, image_size=32, patch_size=8),
        text_config=LlamaConfig(hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers,
                                num_attention_heads=hidden // 128, num_key_value_heads=max(1, hidden // 512),
                                vocab_size=vocab, max_position_embeddings=4096),
        image_token_index=5, image_seq_length=16,
    )
    with torch.device("meta"):
        shapes = {name: t.shape for name, t in LlavaForConditionalGeneration(config).state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    tensors = {}
    for name, shape in shapes.items():
        tensors[output_name(llava_canonical_name(name), HUB_NAMING)] = torch.randn(shape, generator=generator) * 0.02
    directory.mkdir(parents=True)
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    (directory / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    for path in (REPO / "data" / "tokenizer").iterdir():
        shutil.copy(path, directory / path.name)
    return (directory / "model.safetensors").stat().st_size


def run(mode: str, src: Path, dst: Path) -> dict:
    result = subprocess.run([sys.executable, "-c", _CHILD, mode, str(src), str(dst)], cwd=REPO,
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{mode} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def largest_file(directory: Path) -> int:
    return max(p.stat().st_size for p in directory.glob("*.safetensors"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--ffn", type=int, default=5632)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--workdir", type=Path, default=None, help="keep files here (default: a temp dir)")
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_convert_"))
    try:
        tiny_size = write_synthetic(work / "tiny_hf", hidden=128, layers=2, vocab=1024, ffn=256)
        wide_size = write_synthetic(work / "wide_hf", hidden=args.hidden, layers=args.layers, vocab=args.vocab,
                                    ffn=args.ffn)
        rows = []
        for mode, src, dst in (("import", "hf", "ours"), ("export", "ours", "out")):
            tiny = run(mode, work / f"tiny_{src}", work / f"tiny_{dst}")
            wide = run(mode, work / f"wide_{src}", work / f"wide_{dst}")
            files = wide_size if mode == "import" else largest_file(work / "wide_out")
            overhead, growth = tiny["peak"] - tiny["before"], wide["peak"] - wide["before"]
            rows.append((mode, files, overhead, growth, (growth - overhead) / files, wide["seconds"]))
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)

    gib = 2**30
    command = " ".join(["scripts/bench_convert_memory.py", *sys.argv[1:]])
    print(f"synthetic wide LLaVA: LM hidden {args.hidden}, {args.layers} layers, FFN {args.ffn}, vocab {args.vocab}, "
          f"fp32, one tensor file of {wide_size / gib:.2f} GiB (tiny model for the overhead: {tiny_size / 2**20:.0f} MiB)")
    print(f"{'step':<8}{'largest file':>14}{'overhead':>11}{'growth':>9}{'(growth-overhead)/file':>24}{'seconds':>9}")
    for mode, files, overhead, growth, ratio, seconds in rows:
        print(f"{mode:<8}{files / gib:>12.2f}Gi{overhead / gib:>9.2f}Gi{growth / gib:>7.2f}Gi{ratio:>24.2f}{seconds:>9.1f}")
    worst = max(row[4] for row in rows)
    print(f"bench_convert_memory: worst_ratio={worst:.2f} target<=1.50 {'PASS' if worst <= 1.5 else 'FAIL'} "
          f"command='{command}' time={time.strftime('%Y-%m-%d')}")
    sys.exit(0 if worst <= 1.5 else 1)


if __name__ == "__main__":
    main()
