"""scripts/gpu_smoke.sh on CPU (debug model, fp32, no TE): it trains both models and its arithmetic holds."""
import json
import math
import re
import subprocess
from pathlib import Path

import pytest

from nemo_twvlm.model.flops import language_flops_per_token, projector_flops_per_image, vit_flops_per_image
from nemo_twvlm.presets import PRESETS

REPO = Path(__file__).resolve().parents[2]


def test_gpu_smoke_runs_on_cpu_and_reports_consistent_throughput(tmp_path):
    out = tmp_path / "smoke.json"
    proc = subprocess.run(["bash", str(REPO / "scripts" / "gpu_smoke.sh"), "--device", "cpu", "--warmup", "1",
                           "--steps", "2", "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = {r["kind"]: r for r in json.loads(out.read_text())}
    assert set(results) == {"vlm", "gpt"}

    debug, seq = PRESETS["debug"], 256
    lm_flops = seq * language_flops_per_token(debug, seq)
    vision_flops = 2 * (vit_flops_per_image(debug.vision, backward=False) + projector_flops_per_image(debug))
    assert results["gpt"]["flops_per_step"] == pytest.approx(lm_flops)
    assert results["vlm"]["flops_per_step"] == pytest.approx(lm_flops + vision_flops)
    for r in results.values():
        seconds = r["step_ms"] / 1e3
        assert r["tokens_per_s"] * seconds == pytest.approx(seq)
        assert r["model_tflops"] * 1e12 * seconds == pytest.approx(r["flops_per_step"])
        # Random tokens over a 1024-token vocabulary: the loss is near ln(1024) and finite.
        assert abs(r["loss_first"] - math.log(1024)) < 0.5 and math.isfinite(r["loss_last"])

    overhead = re.search(r"gpu_smoke: model=debug precision=fp32 vision_overhead=([0-9.]+)", proc.stdout)
    assert overhead, proc.stdout[-2000:]
    expected = results["gpt"]["tokens_per_s"] / results["vlm"]["tokens_per_s"]
    assert float(overhead[1]) == pytest.approx(expected, abs=1e-3)
