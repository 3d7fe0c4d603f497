"""The four benchmark kinds end to end through `evaluate` on the random debug checkpoint, with an
OpenAI-compatible judge served from this process: results.json carries the per-subject / per-category
tables and the skipped rows by reason, report.html shows them, the dialogue answers file is written."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from benchmark_fixtures import b64, png, struct, taiwanvqa_row, vistw_row, write_parquet, write_tsv
from test_eval_harness import _save_random_checkpoint

MAX_NEW_TOKENS = 4


class _Judge(BaseHTTPRequestHandler):
    prompts: list = []

    def do_POST(self):  # noqa: N802 - the http.server protocol
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Judge.prompts.append(body)
        reply = json.dumps({"choices": [{"message": {"content": "[解釋]: 大致正確。\n[評分]: 7"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def judge_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Judge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    thread.join()
    server.server_close()


def _inputs(root):
    mcq = root / "vistw-mcq"
    write_parquet(mcq / "accounting" / "test-00000-of-00001.parquet", [vistw_row(1, "A"), vistw_row(2, "B")])
    write_parquet(mcq / "biology" / "test-00000-of-00001.parquet",
                  [vistw_row(1, "C"), vistw_row(2, "D", image=struct(None, None))])
    dialogue = write_parquet(root / "vistw-dialogue" / "data" / "test-00000-of-00001.parquet", [
        {"thread_id": "t1", "question": "這是哪裡？", "ground_truth": "台北101", "image": struct(png())},
        {"thread_id": "t2", "question": "這是什麼？", "ground_truth": "鳳梨酥", "image": struct(png((200, 160, 40)))}])
    tvqa = write_parquet(root / "taiwanvqa" / "test.parquet", [
        taiwanvqa_row(1, "A"), taiwanvqa_row(1_000_001, "B"),
        taiwanvqa_row(2, "C", "Reasoning", "temple"), taiwanvqa_row(1_000_002, "D", "Reasoning", "temple")])
    tsv = write_tsv(root / "MMBench_TW.tsv", ["index", "question", "A", "B", "C", "answer", "category", "image"], [
        [0, "What colour?", "red", "green", "blue", "A", "colour", b64(png())],
        [1, "Which shape?", "circle", "square", "", "A", "shape", "0"],
        [2, "Where?", "left", "right", "", "B", "position", "!" * 70]])
    return {"vistw_mcq": mcq, "vistw_dialogue": dialogue.parent.parent, "taiwanvqa": tvqa, "vlmeval_mcq": tsv}


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, judge_url):
    import torch._dynamo

    from nemo_twvlm.evaluation.harness import evaluate

    root = tmp_path_factory.mktemp("eval_benchmarks")
    _save_random_checkpoint(root / "ckpt")
    specs = [f"{kind}:{path}" for kind, path in _inputs(root / "inputs").items()]
    disabled = torch._dynamo.config.disable
    torch._dynamo.config.disable = True  # eager is the same arithmetic; a first compile would cost ~20 s
    try:
        results = evaluate(root / "ckpt", specs, out_dir=root / "out", modes=["generate"],
                           max_new_tokens=MAX_NEW_TOKENS, judge=judge_url, judge_model="judge-test")
    finally:
        torch._dynamo.config.disable = disabled
    return results, root / "out"


def test_every_kind_runs_and_reports_its_tables(evaluated):
    results, out = evaluated
    assert json.loads((out / "results.json").read_text(encoding="utf-8"))["summary"] == results["summary"]
    tasks = {t["kind"]: t for t in results["tasks"]}
    assert set(tasks) == {"vistw_mcq", "vistw_dialogue", "taiwanvqa", "vlmeval_mcq"}

    mcq = tasks["vistw_mcq"]
    assert mcq["summary"] == {"lines": 4, "loaded": 3, "skipped": 1, "evaluated": 3,
                              "skipped_by_reason": {"image missing": 1}}
    subjects = mcq["scores"]["tables"]["subject"]
    assert set(subjects) == {"accounting", "biology"} and subjects["biology"]["n"] == 1
    assert mcq["scores"]["accuracy"] == pytest.approx(sum(s["accuracy"] for s in subjects.values()) / 2)
    for record in mcq["records"]:
        assert 0 < record["generated_tokens"] <= MAX_NEW_TOKENS and isinstance(record["generation"], str)

    tvqa = tasks["taiwanvqa"]
    assert all(r["generated_tokens"] <= 1 for r in tvqa["records"])
    assert set(tvqa["scores"]["tables"]) == {"question_type", "topic"}
    assert tvqa["scores"]["accuracy"] <= tvqa["scores"]["accuracy_plain"]

    vlm = tasks["vlmeval_mcq"]
    assert vlm["name"] == "MMBench_TW" and vlm["summary"]["skipped_by_reason"] == {"image not base64": 1}
    assert set(vlm["scores"]["tables"]["category"]) == {"colour", "shape"}

    dialogue = tasks["vistw_dialogue"]
    answers = [json.loads(line) for line in open(dialogue["scores"]["answers_file"], encoding="utf-8")]
    assert [a["question_id"] for a in answers] == ["t1", "t2"]
    assert [a["llm_response"] for a in answers] == [r["generation"] for r in dialogue["records"]]
    assert dialogue["scores"]["score"] == 7.0 and dialogue["scores"]["judged"] == 2
    assert all(r["judge_votes"] == [7] * 5 for r in dialogue["records"])  # the authors' five votes
    assert len(_Judge.prompts) == 10 and _Judge.prompts[0]["model"] == "judge-test"
    assert "[Ground Truth]\n台北101" in _Judge.prompts[0]["messages"][0]["content"]

    assert results["summary"]["skipped"] == 2
    assert {p["reason"].split(":")[0] for p in results["problems"]} == {"image missing", "image not base64"}


def test_report_shows_the_tables(evaluated):
    _, out = evaluated
    html = (out / "report.html").read_text(encoding="utf-8")
    for key in ("subject", "question_type", "topic", "category"):
        assert f'data-by="{key}"' in html
    assert "accounting" in html and "temple" in html and "image not base64" in html
    assert html.count('<img class="thumb"') == 3 + 2 + 4 + 2


def test_a_checkpoint_of_ours_as_judge_refuses_a_rubric_past_its_context(evaluated):
    from nemo_twvlm.evaluation.benchmarks.judge import ModelJudge, judge_all, judge_one, make_judge

    results, out = evaluated
    judge = make_judge(str(out.parent / "ckpt"))
    assert isinstance(judge, ModelJudge) and judge.votes == 1
    judge.max_new_tokens = MAX_NEW_TOKENS  # the random model will not write a score; the mechanics are the point
    record = next(t for t in results["tasks"] if t["kind"] == "vistw_dialogue")["records"][0]
    # The authors' rubric alone is 1,141 debug-tokenizer tokens, past the debug model's 1,024 positions:
    # no verdict, with the reason, and the next record is still judged (judge_all does not give up on it).
    verdict = judge_one(judge, {**record, "question": "<image>這是哪裡？"})
    assert verdict["score"] is None and verdict["replies"] == []
    assert verdict["error"].startswith("judge prompt too long:") and "context of 1024" in verdict["error"]
    records = [{**record, "thread_id": i} for i in range(2)]
    board = judge_all(judge, records)
    assert [r["judge_error"].split(":")[0] for r in records] == ["judge prompt too long"] * 2
    assert [row["score"] for row in board] == [None, None]
