"""`python -m nemo_twvlm.conversion <command>`: the conversion API on the command line.

    python -m nemo_twvlm.conversion import-hf LLAVA_DIR OUT [--tp 2] [--pp 1] [--preset 70b]
    python -m nemo_twvlm.conversion import-hf --clip CLIP_DIR --llama LLAMA_DIR OUT
    python -m nemo_twvlm.conversion export-hf OUT HF_DIR
    python -m nemo_twvlm.conversion export-trtllm HF_DIR ENGINE_DIR

A conversion error (bad input, no GPU for TensorRT-LLM) prints one line and exits 2, without a traceback.
"""
from __future__ import annotations

import argparse
import sys

from nemo_twvlm.conversion.mapping import ConversionError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nemo_twvlm.conversion")
    commands = parser.add_subparsers(dest="command", required=True)
    imp = commands.add_parser("import-hf", help="HF LLaVA (or CLIP + Llama) -> our checkpoint")
    imp.add_argument("src", nargs="?", help="a llava-hf directory")
    imp.add_argument("dst")
    imp.add_argument("--clip", help="a CLIP vision model directory (with --llama, instead of src)")
    imp.add_argument("--llama", help="a Llama causal LM directory (with --clip)")
    imp.add_argument("--tp", type=int, default=1)
    imp.add_argument("--pp", type=int, default=1)
    imp.add_argument("--preset", help="a registered preset the checkpoint must match")
    imp.add_argument("--tokenizer", help="tokenizer directory (default: the source's)")
    imp.add_argument("--image-token", default="reserved", choices=("reserved", "append"),
                     help="how <image> enters a tokenizer without one (default: a reserved special token)")
    exp = commands.add_parser("export-hf", help="our checkpoint -> HF LlavaForConditionalGeneration")
    exp.add_argument("src")
    exp.add_argument("dst")
    exp.add_argument("--max-shard-size", default="5GB")
    trt = commands.add_parser("export-trtllm", help="export-hf output -> TensorRT-LLM engines (GPU)")
    trt.add_argument("hf_dir")
    trt.add_argument("engine_dir")
    trt.add_argument("--dtype", default="bfloat16")
    trt.add_argument("--tp", type=int, default=1)
    trt.add_argument("--max-batch-size", type=int, default=1)
    trt.add_argument("--max-input-len", type=int, default=2048)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "import-hf":
            from nemo_twvlm.conversion import import_hf

            if (args.src is None) == (args.clip is None or args.llama is None):
                raise ConversionError("give either a llava directory or both --clip and --llama")
            src = args.src if args.src is not None else (args.clip, args.llama)
            preset = import_hf(src, args.dst, tp=args.tp, pp=args.pp, preset=args.preset, tokenizer=args.tokenizer,
                               image_token=args.image_token)
            print(f"import_hf: {args.dst} (preset {preset.name}, tp={args.tp}, pp={args.pp})")
        elif args.command == "export-hf":
            from nemo_twvlm.conversion import export_hf

            print(f"export_hf: {export_hf(args.src, args.dst, max_shard_size=args.max_shard_size)}")
        else:
            from nemo_twvlm.conversion import export_trtllm

            out = export_trtllm(args.hf_dir, args.engine_dir, dtype=args.dtype, tp=args.tp,
                                max_batch_size=args.max_batch_size, max_input_len=args.max_input_len)
            print(f"export_trtllm: {out}")
    except ConversionError as error:
        print(f"{args.command}: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
