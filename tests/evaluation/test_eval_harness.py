"""The harness end to end on a tiny random debug checkpoint, and its HTML report in headless Chromium.

Random weights say nothing about quality; these tests check the mechanics: every task kind runs through
both modes, bad lines are skipped and counted, results.json and report.html are complete, the report
renders. CI needs Chromium for the rendering test:  apt-get install -y --no-install-recommends chromium
(and fonts-noto-cjk for legible Chinese in screenshots); without it that test is skipped.
"""
from __future__ import annotations

import dataclasses
import json
import math
import queue
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[2]
MAX_NEW_TOKENS = 5


def _save_random_checkpoint(directory: Path) -> None:
    import torch
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.strategies import filesystem_async

    from nemo_twvlm.data.tokenizer import load_tokenizer
    from nemo_twvlm.data.tokenizer import image_token_id
    from nemo_twvlm.model.llava import build_llava
    from nemo_twvlm.presets import PRESETS
    from nemo_twvlm.compat.distributed import init_single_process
    from nemo_twvlm.rundir import write_run_record
    from nemo_twvlm.training.config import DataConfig, ModelConfig, PretrainConfig

    init_single_process(1234)
    torch.manual_seed(0)
    tokenizer = load_tokenizer(REPO / "data" / "tokenizer")
    model = build_llava(PRESETS["debug"], image_token_index=image_token_id(tokenizer))
    # A synchronous save hands results over a Manager queue by default (a spawned server process).
    if filesystem_async._results_queue is None:
        filesystem_async._results_queue = queue.Queue()
    (directory / "iter_0000001").mkdir(parents=True)
    dist_checkpointing.save({"model": model.sharded_state_dict()}, str(directory / "iter_0000001"))
    (directory / "latest_checkpointed_iteration.txt").write_text("1")
    # A run record only (no preset file, no tokenizer/): the layout of checkpoints written before those existed.
    write_run_record(directory, dataclasses.asdict(PretrainConfig(
        name="eval_test", model=ModelConfig(preset="debug"), data=DataConfig(tokenizer=str(REPO / "data" / "tokenizer")))))


def _draw(path: Path, color, shape: str) -> None:
    img = Image.new("RGB", (48, 40), (235, 230, 220))  # not square: exercises the padding
    d = ImageDraw.Draw(img)
    if shape == "circle":
        d.ellipse([4, 4, 28, 28], fill=color)
    elif shape == "square":
        d.rectangle([20, 12, 44, 36], fill=color)
    else:
        d.polygon([(24, 4), (44, 36), (4, 36)], fill=color)
    img.save(path)


def _write_tasks(root: Path) -> dict[str, Path]:
    (root / "img").mkdir(parents=True)
    _draw(root / "img" / "red_circle.png", (215, 25, 32), "circle")
    _draw(root / "img" / "blue_square.png", (30, 70, 210), "square")
    _draw(root / "img" / "green_triangle.png", (30, 150, 50), "triangle")
    _draw(root / "img" / "yellow_circle.png", (235, 200, 0), "circle")
    opts = ["紅色", "綠色", "藍色", "黃色"]
    mcq = [
        {"id": "m1", "image": "img/red_circle.png", "question": "圖中的東西是什麼顏色？", "options": opts, "answer": "A"},
        {"id": "m2", "image": "img/blue_square.png", "question": "What shape is it? <script>x</script>",
         "options": {"A": "circle", "B": "square", "C": "triangle"}, "answer": "square"},
        {"id": "m3", "image": "img/green_triangle.png", "question": "顏色？", "options": opts, "answer": 1},
        {"id": "bad_img", "image": "img/missing.png", "question": "顏色？", "options": opts, "answer": "A"},
        {"id": "bad_ans", "image": "img/red_circle.png", "question": "顏色？", "options": opts, "answer": "F"},
    ]
    lines = [json.dumps(x, ensure_ascii=False).encode() for x in mcq]
    lines.insert(3, b'{"id": "bad_json", "image": ')
    (root / "mcq.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    qa = [{"id": "q1", "image": "img/yellow_circle.png", "question": "它在哪裡？", "answers": ["左上"]},
          {"id": "q2", "image": "img/red_circle.png", "question": "什麼顏色？", "answers": ["紅色", "red"]}]
    (root / "qa.jsonl").write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in qa) + "\n", encoding="utf-8")
    cap = [{"id": "c1", "image": "img/red_circle.png", "references": ["紅色的圓形在左上。", "左上有紅色的圓形。"]},
           {"id": "c2", "image": "img/blue_square.png", "references": ["藍色的方形在右下。"]}]
    (root / "cap.jsonl").write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in cap) + "\n",
                                    encoding="utf-8")
    return {"mcq": root / "mcq.jsonl", "qa": root / "qa.jsonl", "cap": root / "cap.jsonl"}


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    from nemo_twvlm.evaluation.harness import evaluate

    root = tmp_path_factory.mktemp("eval_harness")
    _save_random_checkpoint(root / "ckpt")
    tasks = _write_tasks(root / "tasks")
    out = root / "out"
    # megatron's fused activations go through torch.compile, whose first compile (~20 s on two cores) is
    # all this run would spend its time on; eager mode is the same arithmetic. Restored right after.
    import torch._dynamo

    disabled = torch._dynamo.config.disable
    torch._dynamo.config.disable = True
    try:
        results = evaluate(root / "ckpt", [str(tasks["mcq"]), f"open_qa:{tasks['qa']}", str(tasks["cap"]), "if_probe"],
                           out_dir=out, limit=3, max_new_tokens=MAX_NEW_TOKENS)
    finally:
        torch._dynamo.config.disable = disabled
    return results, out, tasks


def test_results_cover_every_task_and_count_bad_lines(evaluated):
    results, out, tasks = evaluated
    on_disk = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert on_disk["summary"] == results["summary"]
    by_name = {t["name"]: t for t in results["tasks"]}
    assert set(by_name) == {"mcq", "qa", "cap"}
    mcq = by_name["mcq"]
    assert mcq["kind"] == "mcq"
    assert mcq["summary"] == {"lines": 6, "loaded": 3, "skipped": 3, "evaluated": 3, "skipped_by_reason": {
        "malformed JSON": 1, "image not found": 1, "answer outside the options": 1}}
    assert [(p["line"], p["reason"].split(":")[0]) for p in results["problems"]] == [
        (4, "malformed JSON"), (5, "image not found"), (6, "answer outside the options")]
    assert results["summary"]["skipped"] == 3 and results["summary"]["loaded"] == 7
    assert results["summary"]["evaluated"] == 7
    assert results["meta"]["iteration"] == 1

    for record in mcq["records"]:
        assert len(record["loglik"]) == len(record["options"]) and all(math.isfinite(v) and v < 0 for v in record["loglik"])
        pick = record["labels"][max(range(len(record["loglik"])), key=record["loglik"].__getitem__)]
        assert record["pred_loglik"] == pick and record["correct_loglik"] == (pick == record["answer"])
        assert isinstance(record["generation"], str)
        assert record["prompt"].splitlines()[-1].startswith(record["labels"][-1] + ". ")
    assert [r["answer"] for r in mcq["records"]] == ["A", "B", "B"]
    scores = mcq["scores"]
    assert scores["loglik_acc"] == sum(r["correct_loglik"] for r in mcq["records"]) / 3
    assert {"loglik_acc", "loglik_acc_norm", "generate_acc", "generate_extracted", "chance"} <= set(scores)
    assert set(by_name["qa"]["scores"]) == {"n", "exact_match", "contains"}
    cap = by_name["cap"]
    assert {"bleu4", "bleu4_sentence_mean", "cider_d"} <= set(cap["scores"])
    assert all(0.0 <= cap["scores"][k] <= 1.0 for k in ("bleu4", "bleu4_sentence_mean"))
    assert all("cider_d" in r and "bleu4" in r for r in cap["records"])

    (probe,) = results["if_probe"]
    assert probe["samples"] == 3 and len(probe["records"]) == 3 * 5
    assert set(probe["grounded_rates"]) == set(probe["rates"]) - {"overall"}
    assert set(probe["rates"]) == {"language_zh", "language_en", "max_chars", "list", "yes_no", "overall"}
    assert all(0.0 <= v <= 1.0 for v in probe["rates"].values())
    assert all(Path(r["image"]).is_file() for r in probe["records"])


def test_generation_is_bounded_and_prompts_use_the_chat_template(evaluated):
    from nemo_twvlm.data.tokenizer import load_tokenizer
    from nemo_twvlm.inference.prompt import prompt_ids

    results, _, _ = evaluated
    tokenizer = load_tokenizer(REPO / "data" / "tokenizer")
    for task in results["tasks"]:
        for record in task["records"]:
            assert 0 <= record["generated_tokens"] <= MAX_NEW_TOKENS and isinstance(record["generation"], str)
    ids = prompt_ids(tokenizer, "問題", image_token_index=5)
    text = tokenizer.decode(ids)
    assert text.startswith("<|begin_of_text|><|start_header_id|>user") and text.endswith("assistant<|end_header_id|>\n\n")
    assert ids.count(5) == 1
    assert prompt_ids(tokenizer, "問題", image_token_index=5, prompt_style="plain")[:2] == [tokenizer.bos_token_id, 5]


def test_report_is_self_contained_and_escaped(evaluated):
    results, out, _ = evaluated
    html = (out / "report.html").read_text(encoding="utf-8")
    n_rows = sum(len(t["records"]) for t in results["tasks"]) + len(results["if_probe"][0]["records"])
    assert len(re.findall(r'<img class="thumb" [^>]*src="data:image/png;base64,', html)) == n_rows
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert not re.search(r'(src|href)="(http|file|/)', html)  # nothing outside the file
    assert html.count('class="bar"') == 6  # five constraints + overall
    assert "answer outside the options" in html and "malformed JSON" in html


def _chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


def test_report_renders_in_headless_chromium(evaluated, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("Chromium not installed: apt-get install -y --no-install-recommends chromium")
    _, out, _ = evaluated
    url = (out / "report.html").resolve().as_uri()
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,900"]
    shot = tmp_path / "report.png"
    subprocess.run([*flags, f"--screenshot={shot}", url], check=True, capture_output=True, timeout=90)
    with Image.open(shot) as img:
        assert img.size == (1200, 900)
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # text, table lines and bars: not a blank page
    top = max(count for count, _ in colours)
    assert top < 0.97 * 1200 * 900
    dom = subprocess.run([*flags, "--dump-dom", url], check=True, capture_output=True, timeout=90, text=True).stdout
    assert len(re.findall(r'<img class="thumb"[^>]*src="data:image/png;base64,', dom)) >= 10
    assert 'class="if-chart"' in dom and "nemo_twvlm evaluation" in dom
