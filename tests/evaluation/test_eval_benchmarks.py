"""Benchmark readers and scorers against hand-computed results, with a scripted model (no weights): every
published layout read as published, every bad row counted by reason, the authors' scoring rules."""
from __future__ import annotations

from pathlib import Path

import pytest
from benchmark_fixtures import (b64, png, struct, taiwanvqa_row, truncated_png, vistw_row, write_parquet,
                                write_tsv)

from nemo_twvlm.evaluation import benchmarks
from nemo_twvlm.evaluation.benchmarks import taiwanvqa, vistw, vlmeval
from nemo_twvlm.evaluation.benchmarks.judge import judge_all, parse_score


class ScriptedModel:
    """The harness context with a model that replies from a script keyed by item id (default: 'A')."""

    def __init__(self, out_dir: Path, replies: dict[str, str]):
        self.out_dir, self.replies, self.modes, self.judge = out_dir, replies, ("generate",), None
        self.asked: list[tuple[str, int | None]] = []

    def generate(self, image_path, text, record, max_new_tokens=None):
        assert Path(image_path).is_file()
        self.asked.append((text, max_new_tokens))
        record.update(generation=self.replies.get(record["id"], "A"), generated_tokens=1)
        return record["generation"]


def test_vistw_mcq_reads_the_hf_layout_and_scores_the_mean_of_subjects(tmp_path):
    root = tmp_path / "vistw-mcq"
    # qid 1 and 2 exist in both subjects: ids are subject/qid.
    write_parquet(root / "accounting" / "test-00000-of-00001.parquet",
                  [vistw_row(1, "A"), vistw_row(2, "B"), vistw_row(3, "C")])
    write_parquet(root / "biology" / "test-00000-of-00001.parquet", [vistw_row(1, "D"), vistw_row(2, "A")])
    write_parquet(root / "biology" / "dev-00000-of-00001.parquet", [vistw_row(1, "B")])  # not the test split
    task = benchmarks.read("vistw_mcq", root)
    assert not task.problems
    assert [i.id for i in task.items] == ["accounting/1", "accounting/2", "accounting/3", "biology/1", "biology/2"]
    replies = {"accounting/1": "一步一步想……\n答案: A", "accounting/2": "答案：Ｂ", "accounting/3": "我不確定。",
               "biology/1": "Answer: D", "biology/2": "**答案: C**"}
    ctx = ScriptedModel(tmp_path / "out", replies)
    scores, records = benchmarks.run(ctx, task, task.items)
    # accounting 2/3 right, biology 1/2 right: overall = (2/3 + 1/2) / 2 = 7/12; over items 3/5.
    assert scores["accuracy"] == pytest.approx(7 / 12)
    assert scores["accuracy_micro"] == pytest.approx(3 / 5)
    assert scores["extracted"] == pytest.approx(4 / 5)
    assert scores["tables"]["subject"] == {"accounting": {"n": 3, "accuracy": pytest.approx(2 / 3)},
                                           "biology": {"n": 2, "accuracy": 0.5}}
    assert [r["extracted"] for r in records] == ["A", "B", None, "D", "C"]
    text = ctx.asked[0][0]
    assert text.startswith(vistw.MCQ_INSTRUCTION + "\n\n第1題") and text.endswith("\nC. 藍色\nD. 黃色")


def test_vistw_answer_extraction():
    assert vistw.extract_answer("答案：Ｂ") == "B"  # full-width colon and letter
    assert vistw.extract_answer("Let me think. Answer: C") == "C"
    assert vistw.extract_answer("圖中是紅色的圓形，沒有選項字母。") is None
    assert vistw.extract_answer("答案: $\\boxed{D}$") == "D"
    assert vistw.extract_answer("答案: A\n不對，答案: B") == "A"  # the first statement, as the official regex
    assert vistw.extract_answer("Answer: C，答案: D") == "D"  # 答案 is looked for first


def test_taiwanvqa_circular_accuracy_is_at_most_plain_accuracy(tmp_path):
    # Three questions, four rotations each (question_id + k * 1,000,000), the answer moving with the options.
    rows, replies = [], {}
    plan = {1: ("Recognition", "food", [True] * 4), 2: ("Reasoning", "food", [True, True, True, False]),
            3: ("Recognition", "temple", [False, True, False, False])}
    for qid, (qtype, topic, right) in plan.items():
        for k, ok in enumerate(right):
            gold = "ABCD"[k]
            rows.append(taiwanvqa_row(qid + k * 1_000_000, gold, qtype, topic))
            replies[str(qid + k * 1_000_000)] = gold if ok else ("B" if gold == "A" else "A")
    path = write_parquet(tmp_path / "data" / "test-00000-of-00001.parquet", rows)
    task = benchmarks.read("taiwanvqa", path)
    assert len(task.items) == 12 and not task.problems
    ctx = ScriptedModel(tmp_path / "out", replies)
    scores, _ = benchmarks.run(ctx, task, task.items)
    assert scores["accuracy_plain"] == pytest.approx(8 / 12)  # 4 + 3 + 1 rows right
    assert scores["accuracy"] == pytest.approx(1 / 3)  # only question 1 has every rotation right
    assert scores["questions"] == 3
    assert scores["tables"]["question_type"] == {"Reasoning": {"n": 1, "accuracy": 0.0},
                                                 "Recognition": {"n": 2, "accuracy": 0.5}}
    assert scores["tables"]["topic"] == {"food": {"n": 2, "accuracy": 0.5}, "temple": {"n": 1, "accuracy": 0.0}}
    text, max_new = ctx.asked[0]
    assert max_new == 1
    assert text == "這是什麼？ 有以下幾個選項：\nA. 滷肉飯\nB. 牛肉麵\nC. 珍珠奶茶\nD. 臭豆腐\n\n請直接使用所提供的選項字母作為答案回答。"


def test_taiwanvqa_single_letter_rule_and_missing_options(tmp_path):
    path = write_parquet(tmp_path / "t.parquet", [taiwanvqa_row(1, "B", C=None, D="nan")])
    (item,) = benchmarks.read("taiwanvqa", path).items
    assert item.labels == ["A", "B"] and "C." not in taiwanvqa.prompt(item)
    assert taiwanvqa.extract(" B ", item) == "B"
    assert taiwanvqa.extract("B. 牛肉麵", item) is None  # one token, exactly the letter
    assert taiwanvqa.extract("C", item) is None


def test_vlmeval_image_pointer_prompt_and_extraction(tmp_path):
    header = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image"]
    red = png()
    path = write_tsv(tmp_path / "MMBench_TW.tsv", header, [
        [0, "What colour?", "A drawing.", "red", "green", "", "", "A", "colour", b64(red)],
        [1, "Which shape?", "nan", "circle", "square", "triangle", "", "A", "shape", "0"],  # image of row 0
        [2, "Where?", "", "left", "right", "", "", "B", "position", "0"],
    ])
    task = benchmarks.read("vlmeval_mcq", path)
    assert not task.problems and [i.id for i in task.items] == ["0", "1", "2"]
    assert all(item.image == red for item in task.items)
    first, second, _ = task.items
    assert first.labels == ["A", "B"] and second.labels == ["A", "B", "C"]
    assert vlmeval.prompt(first) == ("Hint: A drawing.\nQuestion: What colour?\nOptions:\nA. red\nB. green\n"
                                     "Please select the correct answer from the options above. \n")
    assert vlmeval.prompt(second).startswith("Question: Which shape?\n")  # "nan" hint: no hint
    labels, options = second.labels, second.options
    assert vlmeval.infer_choice("B", labels, options) == "B"
    assert vlmeval.infer_choice("The answer is (C).", labels, options) == "C"
    assert vlmeval.infer_choice("它是 square 形狀", labels, options) == "B"  # no letter: the option text
    assert vlmeval.infer_choice("A or B", labels, options) is None  # two letters, no option text
    assert vlmeval.infer_choice("Z", labels, options) is None
    ctx = ScriptedModel(tmp_path / "out", {"0": "A", "1": "C", "2": "B"})
    scores, _ = benchmarks.run(ctx, task, task.items)
    assert scores["accuracy"] == pytest.approx(2 / 3) and "accuracy_plain" not in scores
    assert scores["tables"]["category"]["shape"] == {"n": 1, "accuracy": 0.0}


def test_vlmeval_circular_groups(tmp_path):
    header = ["index", "question", "A", "B", "answer", "category", "image"]
    image = b64(png())
    rows = [[5, "q", "x", "y", "A", "c1", image], [1_000_005, "q", "y", "x", "B", "c1", "5"],
            [6, "q", "x", "y", "A", "c2", image], [1_000_006, "q", "y", "x", "B", "c2", "6"]]
    task = benchmarks.read("vlmeval_mcq", write_tsv(tmp_path / "c.tsv", header, rows))
    ctx = ScriptedModel(tmp_path / "out", {"5": "A", "1000005": "B", "6": "A", "1000006": "A"})
    scores, _ = benchmarks.run(ctx, task, task.items)
    assert (scores["accuracy"], scores["accuracy_plain"], scores["questions"]) == (0.5, 0.75, 2)
    assert scores["tables"]["category"] == {"c1": {"n": 1, "accuracy": 1.0}, "c2": {"n": 1, "accuracy": 0.0}}


def test_bad_rows_are_counted_by_reason_never_raised(tmp_path):
    (tmp_path / "geography" / "img").mkdir(parents=True)
    (tmp_path / "geography" / "img" / "ok.png").write_bytes(png())
    mcq = write_parquet(tmp_path / "geography" / "test-0.parquet", [
        vistw_row(1),                                         # 1 ok
        vistw_row(2, image=struct(None, None)),               # 2 neither bytes nor path
        vistw_row(3, image=struct(truncated_png())),          # 3 truncated image
        vistw_row(4, image=struct(None, "img/ok.png")),       # 4 ok: a path beside the file
        vistw_row(5, image=struct(None, "img/gone.png")),     # 5 path to nothing
        vistw_row(6, answer="E"),                             # 6 answer outside A-D
        vistw_row(1),                                         # 7 duplicate qid in one subject
        vistw_row(8, question=None),                          # 8 missing question
    ])
    task = benchmarks.read("vistw_mcq", mcq)
    assert [i.id for i in task.items] == ["geography/1", "geography/4"]
    assert {p.line: p.category for p in task.problems} == {
        2: "image missing", 3: "image unreadable", 5: "image not found", 6: "answer outside the options",
        7: "duplicate id", 8: "missing field"}
    assert all(p.file == str(mcq) for p in task.problems)
    assert "'image' has neither bytes nor path" in task.problems[0].reason
    assert task.summary()["lines"] == 8 and task.summary()["skipped"] == 6

    no_topic = write_parquet(tmp_path / "tvqa.parquet", [
        {k: v for k, v in taiwanvqa_row(i).items() if k != "topic"} for i in (1, 2)])
    task = benchmarks.read("taiwanvqa", no_topic)
    assert not task.items and task.summary()["skipped_by_reason"] == {"missing field": 2}
    assert task.problems[0].reason == "missing field: 'topic' (no such column in the file)"

    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    task = benchmarks.read("taiwanvqa", tmp_path / "broken.parquet")
    assert [p.category for p in task.problems] == ["unreadable file"]

    header = ["index", "question", "A", "B", "answer", "image"]
    tsv = write_tsv(tmp_path / "bad.tsv", header, [
        [0, "q", "x", "y", "A", b64(png())],
        [1, "q", "x", "y", "A", "!" * 80],                      # not base64
        [2, "q", "x", "y", "A", b64(truncated_png())],          # decodes, but a truncated image
        [3, "q", "x", "y", "A", "7"],                           # points at no row
        [4, "q", "x", "y", "A"],                                # a cell short
        [5, "q", "x", "y", "C", "0"],                           # answer outside the options
    ])
    task = benchmarks.read("vlmeval_mcq", tsv)
    assert [i.id for i in task.items] == ["0"]
    assert {p.line: p.category for p in task.problems} == {
        2: "image not base64", 3: "image unreadable", 4: "image pointer dangling", 5: "malformed row",
        6: "answer outside the options"}
    with pytest.raises(FileNotFoundError):
        benchmarks.read("vistw_mcq", tmp_path / "absent")


def test_dialogue_without_judge_writes_the_official_answers_file(tmp_path):
    import json

    path = write_parquet(tmp_path / "dialogue" / "test-0.parquet", [
        {"thread_id": "t1", "question": "<image>這是哪裡？", "ground_truth": "台北101", "image": struct(png())},
        {"thread_id": "t2", "question": "這是什麼？", "ground_truth": "鳳梨酥", "image": struct(None, None)}])
    task = benchmarks.read("vistw_dialogue", path)
    assert [i.id for i in task.items] == ["t1"] and task.problems[0].category == "image missing"
    ctx = ScriptedModel(tmp_path / "out", {"t1": "這是台北101。"})
    scores, records = benchmarks.run(ctx, task, task.items)
    assert "judge" not in scores and "no judge" in scores["note"]
    (line,) = Path(scores["answers_file"]).read_text(encoding="utf-8").splitlines()
    answer = json.loads(line)
    assert (answer["question_id"], answer["llm_response"]) == ("t1", "這是台北101。")
    # The model gets one image, first: a literal placeholder in the question is not a second one.
    assert answer["original_question"] == "<image>這是哪裡？" and ctx.asked == [(" 這是哪裡？", None)]


def test_judge_score_parsing():
    assert parse_score("[解釋]: 大致正確，缺少細節。\n[評分]: 8") == 8
    assert parse_score("[評分]：7 \n") == 7
    assert parse_score("[評分]: 3\n後來想想\n[評分]: 5") == 5  # the last one, as the authors' split
    assert parse_score("[評分]: 7分") is None
    assert parse_score("[評分]: 11") is None
    assert parse_score("這個回答很好") is None


class _FakeJudge:
    votes, name = 3, "fake"

    def __init__(self, replies):
        self.replies, self.calls = list(replies), 0

    def reply(self, prompt, image_path):
        self.calls += 1
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply


def test_judge_votes_and_an_unreachable_judge():
    import urllib.error

    records = [{"thread_id": f"t{i}", "question": "q", "generation": "g", "ground_truth": "gt", "image": "x.png"}
               for i in range(3)]
    # t0: votes 6, 8 and a reply without a score, then 10 (tries up to 1.5x the votes); t1: the judge is down.
    judge = _FakeJudge(["[評分]: 6", "[評分]: 8", "不知道", "[評分]: 10", urllib.error.URLError("refused")])
    board = judge_all(judge, records)
    assert records[0]["judge_votes"] == [6, 8, 10] and records[0]["judge_score"] == 8.0
    assert records[1]["judge_score"] is None and "URLError" in records[1]["judge_error"]
    assert records[2]["judge_score"] is None and judge.calls == 5  # not asked again once down
    assert [row["score"] for row in board] == [8.0, None, None]
