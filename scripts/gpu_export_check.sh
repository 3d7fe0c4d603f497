#!/usr/bin/env bash
# GPU check of the TensorRT-LLM export: a tiny random LLaVA goes HF -> ours -> HF -> TensorRT-LLM engines,
# and the engines' first greedy tokens on an image + prompt must equal the HF model's.
# Needs a CUDA GPU and tensorrt_llm (NGC TensorRT-LLM container, TensorRT engine flow); exits 2 otherwise.
#
#   bash scripts/gpu_export_check.sh [WORKDIR]        # prints: gpu_export_check: match=<n>/<n> tokens ...
#
# Provisional: written against TensorRT-LLM's documented LLaVA flow and not yet run (no GPU where it was
# written). Shapes are chosen for TensorRT-LLM's kernels: head_dim 64, fp16.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python
WORK=${1:-$(mktemp -d -t gpu_export_check.XXXXXX)}
export WORK

exec "$PY" - <<'EOF'
import os
import shutil
import sys
from pathlib import Path

import torch

from nemo_twvlm.conversion import ConversionError, export_hf, export_trtllm, import_hf
from nemo_twvlm.conversion.trtllm import check_trtllm

try:
    check_trtllm()
except ConversionError as error:
    sys.exit(f"gpu_export_check: {error}")

from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

work, image_id, new_tokens = Path(os.environ["WORK"]), 5, 8
shutil.rmtree(work, ignore_errors=True)
work.mkdir(parents=True)
config = LlavaConfig(
    vision_config=CLIPVisionConfig(hidden_size=256, intermediate_size=1024, num_hidden_layers=3, num_attention_heads=4,
                                   image_size=56, patch_size=14),
    text_config=LlamaConfig(hidden_size=256, intermediate_size=688, num_hidden_layers=2, num_attention_heads=4,
                            num_key_value_heads=2, vocab_size=1024, max_position_embeddings=512,
                            bos_token_id=0, eos_token_id=1, pad_token_id=6),
    image_token_index=image_id, image_seq_length=16,
)
torch.manual_seed(0)
model = LlavaForConditionalGeneration(config)
with torch.no_grad():  # larger than the default init, so greedy decoding is not a flat tie
    for name, param in model.named_parameters():
        if param.ndim > 1:
            param.normal_(0, 0.08)
model.to(torch.float16).save_pretrained(work / "hf")
for path in Path("data/tokenizer").iterdir():
    shutil.copy(path, work / "hf" / path.name)

import_hf(work / "hf", work / "ours")
export_hf(work / "ours", work / "export")
export_trtllm(work / "export", work / "engines", dtype="float16", max_batch_size=1, max_input_len=128)

# Reference: HF greedy decoding on the exported model.
hf = LlavaForConditionalGeneration.from_pretrained(work / "export", dtype=torch.float16).cuda().eval()
g = torch.Generator().manual_seed(1)
pixels = torch.randn(1, 3, 56, 56, generator=g).half().cuda()
text = torch.randint(10, 1000, (6,), generator=g)
input_ids = torch.cat([text[:1], torch.full((16,), image_id), text[1:]]).view(1, -1).cuda()
with torch.no_grad():
    expected = hf.generate(input_ids=input_ids, pixel_values=pixels, max_new_tokens=new_tokens, do_sample=False)
expected = expected[0, input_ids.shape[1]:].tolist()

# TensorRT-LLM: vision engine -> image features as a prompt table; the image positions of the prompt carry
# ids past the vocabulary that index that table (TensorRT-LLM's prompt-tuning path, as its LLaVA runner does).
import tensorrt as trt
from tensorrt_llm.runtime import ModelRunner, Session, TensorInfo

engine = next((work / "engines" / "vision").glob("*.engine")).read_bytes()  # model.engine in recent versions
session = Session.from_serialized_engine(engine)
input_name, output_name = session.engine.get_tensor_name(0), session.engine.get_tensor_name(1)
output_info = session.infer_shapes([TensorInfo(input_name, trt.DataType.HALF, tuple(pixels.shape))])[0]
features = torch.empty(tuple(output_info.shape), dtype=torch.float16, device="cuda")
stream = torch.cuda.current_stream()
assert session.run({input_name: pixels}, {output_name: features}, stream.cuda_stream)
stream.synchronize()
prompt_table = features.reshape(-1, features.shape[-1])

runner = ModelRunner.from_dir(str(work / "engines" / "llm"))
fake_ids = config.text_config.vocab_size + torch.arange(prompt_table.shape[0])
prompt = torch.cat([text[:1], fake_ids, text[1:]]).int()
outputs = runner.generate([prompt], prompt_table=prompt_table.unsqueeze(0), prompt_tasks="0",
                          max_new_tokens=new_tokens, end_id=-1, pad_id=6, num_beams=1, top_k=1)
actual = outputs[0, 0, len(prompt):len(prompt) + new_tokens].tolist()

match = sum(a == b for a, b in zip(actual, expected))
print(f"hf:     {expected}\ntrtllm: {actual}")
print(f"gpu_export_check: match={match}/{new_tokens} tokens first_token_equal={actual[:1] == expected[:1]} "
      f"device={torch.cuda.get_device_name()}")
sys.exit(0 if actual[:1] == expected[:1] else 1)
EOF
