"""Task readers: formats accepted, and every bad line reported (file, line, reason), skipped and counted."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from nemo_twvlm.evaluation.tasks import CaptionItem, MCQItem, OpenQAItem, parse_task_spec, read_task, summarise


@pytest.fixture()
def task_dir(tmp_path: Path) -> Path:
    (tmp_path / "img").mkdir()
    Image.new("RGB", (16, 12), (200, 30, 30)).save(tmp_path / "img" / "a.png")
    (tmp_path / "img" / "broken.png").write_bytes(b"not a png at all")
    return tmp_path


def _write(path: Path, lines: list) -> Path:
    with open(path, "wb") as f:
        for line in lines:
            f.write((line if isinstance(line, bytes) else json.dumps(line, ensure_ascii=False).encode()) + b"\n")
    return path


def _mcq(**overrides) -> dict:
    return {"id": "q", "image": "img/a.png", "question": "顏色？", "options": ["紅色", "綠色", "藍色"], "answer": "A",
            **overrides}


def test_mcq_formats(task_dir):
    path = _write(task_dir / "mcq.jsonl", [
        _mcq(id="letter", answer="B"),
        _mcq(id="paren", answer="(c)"),
        _mcq(id="index", answer=2),
        _mcq(id="text", answer="綠色"),
        _mcq(id="dict", options={"A": "紅色", "B": "綠色"}, answer="B"),
        {"id": "vistw", "image": "img/a.png", "question": "顏色？", "A": "紅色", "B": "綠色", "C": "藍色", "D": "黃色",
         "answer": "D"},
        _mcq(id=7, image=str(task_dir / "img" / "a.png")),  # absolute path, integer id
    ])
    task = read_task(path)
    assert task.kind == "mcq" and not task.problems
    assert [i.id for i in task.items] == ["letter", "paren", "index", "text", "dict", "vistw", "7"]
    assert [i.answer for i in task.items] == [1, 2, 2, 1, 1, 3, 0]
    first = task.items[0]
    assert isinstance(first, MCQItem) and first.labels == ["A", "B", "C"] and first.image == task_dir / "img" / "a.png"
    assert task.items[5].options == ["紅色", "綠色", "藍色", "黃色"]


def test_open_qa_and_caption(task_dir):
    qa = read_task(_write(task_dir / "qa.jsonl", [
        {"id": "1", "image": "img/a.png", "question": "它在哪裡？", "answers": ["左上", "左上角"]},
        {"id": "2", "image": "img/a.png", "question": "顏色？", "answers": "紅色"},
    ]))
    assert qa.kind == "open_qa" and all(isinstance(i, OpenQAItem) for i in qa.items)
    assert qa.items[1].answers == ["紅色"]
    cap = read_task(_write(task_dir / "cap.jsonl", [
        {"id": "1", "image": "img/a.png", "references": ["紅色的圓形在左上。"]},
        {"id": "2", "image": "img/a.png", "references": ["x"], "prompt": "Describe it."},
    ]))
    assert cap.kind == "caption" and isinstance(cap.items[0], CaptionItem)
    assert cap.items[0].prompt == "請用一句話描述這張圖。" and cap.items[1].prompt == "Describe it."


def test_bad_lines_are_reported_skipped_and_counted(task_dir):
    lines = [
        _mcq(id="ok1"),                                            # 1
        b'{"id": "trunc", "image": "img/a.png", "question": "x", "opt',  # 2 malformed JSON
        b"",                                                       # 3 blank: ignored, not counted
        _mcq(id="nofile", image="img/missing.png"),                # 4 missing image
        _mcq(id="outside", answer="E"),                            # 5 answer outside the options
        _mcq(id="outside_index", answer=3),                        # 6 index outside
        _mcq(id="outside_text", answer="紫色"),                    # 7 text outside
        '{"id": "big5", "image": "img/a.png", "question": "壞"}'.encode("big5"),  # 8 not UTF-8
        {k: v for k, v in _mcq(id="noq").items() if k != "question"},  # 9 missing field
        _mcq(id="ok1"),                                            # 10 duplicate id
        _mcq(id="unreadable", image="img/broken.png"),             # 11 image unreadable
        [1, 2, 3],                                                 # 12 not an object
        _mcq(id="oneopt", options=["紅色"]),                       # 13 too few options
        _mcq(id="dupopt", options=["紅色", "紅色"]),               # 14 duplicate option
        _mcq(id="ok2", answer=1),                                  # 15
    ]
    task = read_task(_write(task_dir / "bad.jsonl", lines))
    assert [i.id for i in task.items] == ["ok1", "ok2"]
    got = {p.line: p.category for p in task.problems}
    assert got == {2: "malformed JSON", 4: "image not found", 5: "answer outside the options",
                   6: "answer outside the options", 7: "answer outside the options", 8: "not UTF-8",
                   9: "missing field", 10: "duplicate id", 11: "image unreadable", 12: "not a JSON object",
                   13: "bad field", 14: "duplicate option"}
    assert all(p.file == str(task_dir / "bad.jsonl") for p in task.problems)
    assert "img/missing.png" in next(p.reason for p in task.problems if p.line == 4)
    assert "'E'" in next(p.reason for p in task.problems if p.line == 5)
    summary = task.summary()
    assert summary == {"lines": 14, "loaded": 2, "skipped": 12, "skipped_by_reason": {
        "malformed JSON": 1, "image not found": 1, "answer outside the options": 3, "not UTF-8": 1,
        "missing field": 1, "duplicate id": 1, "image unreadable": 1, "not a JSON object": 1, "bad field": 1,
        "duplicate option": 1}}
    other = read_task(_write(task_dir / "qa.jsonl", [{"image": "img/nope.png", "question": "q", "answers": ["a"]}]))
    total = summarise([task, other])
    assert (total["files"], total["lines"], total["loaded"], total["skipped"]) == (2, 15, 2, 13)
    assert total["skipped_by_reason"]["image not found"] == 2


def test_kind_from_spec_and_first_good_line(task_dir):
    assert parse_task_spec("mcq:/x/y.jsonl") == ("mcq", "/x/y.jsonl")
    assert parse_task_spec("/x/mcq:y.jsonl") == (None, "/x/mcq:y.jsonl")
    # The first line is malformed; the kind comes from the first well-formed one.
    task = read_task(_write(task_dir / "t.jsonl", [b"{oops", {"image": "img/a.png", "references": ["r"]}]))
    assert task.kind == "caption" and len(task.items) == 1 and task.problems[0].line == 1
    # With an explicit kind a line of another kind is a missing field, not a silent switch.
    task = read_task(task_dir / "t.jsonl", "open_qa")
    assert [p.category for p in task.problems] == ["malformed JSON", "missing field"]
    with pytest.raises(FileNotFoundError):
        read_task(task_dir / "absent.jsonl")
