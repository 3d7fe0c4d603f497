"""The text-retention suite: its TMMLU+/TMLU-layout reader, its bad inputs, and its scores on the debug model."""
import json
import math

import pytest

from nemo_twvlm.data.synthetic_retention import write_retention_set
from nemo_twvlm.evaluation.retention import RetentionScorer, RetentionSet
from nemo_twvlm.evaluation.scoring import ScoringItem, continuation_logprobs


def test_debug_set_is_in_the_published_layout_with_the_caption_order_as_answer(tmp_path):
    folder = write_retention_set(tmp_path, questions=12, num_texts=5)
    rows = [json.loads(line) for line in (folder / "mcq.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 12 and all(set(row) == {"question", "A", "B", "C", "D", "answer"} for row in rows)
    from nemo_twvlm.data.synthetic import COLORS

    colours = {c.zh for c in COLORS}
    for row in rows:
        options = [row[k] for k in "ABCD"]
        assert len(set(options)) == 4 and len({"".join(sorted(o)) for o in options}) == 1  # same characters
        assert row[row["answer"]].split("的")[0] in colours  # the caption's order: colour first
    assert {row["answer"] for row in rows} != {"A"}
    retention = RetentionSet.read(folder)
    assert len(retention.mcq) == 12 and len(retention.texts) == 5
    assert write_retention_set(tmp_path / "again", questions=12, num_texts=5).joinpath("mcq.jsonl").read_bytes() == \
        (folder / "mcq.jsonl").read_bytes()


def test_csv_layout_reads_like_tmmlu_plus(tmp_path):
    (tmp_path / "mcq.csv").write_text("question,A,B,C,D,answer,subject\n台灣最高的山是？,玉山,雪山,合歡山,阿里山,A,地理\n",
                                      encoding="utf-8")
    (retention := RetentionSet.read(tmp_path))
    assert retention.mcq == [{"question": "台灣最高的山是？", "options": ["玉山", "雪山", "合歡山", "阿里山"], "answer": 0}]
    assert retention.texts == []


@pytest.mark.parametrize("content,needle", [
    ('{"question": "q", "A": "a", "B": "b", "C": "c", "answer": "A"}', "mcq.jsonl:1: missing D"),
    ('{"question": "q", "A": "a", "B": "b", "C": "c", "D": "d", "answer": "E"}', "mcq.jsonl:1: answer='E'"),
    ("not json", "mcq.jsonl:1: not JSON"),
])
def test_bad_questions_name_file_line_and_field(tmp_path, content, needle):
    (tmp_path / "mcq.jsonl").write_text(content + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=needle):
        RetentionSet.read(tmp_path)


def test_bad_texts_and_empty_folders_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no mcq.jsonl, mcq.csv or text.jsonl"):
        RetentionSet.read(tmp_path)
    (tmp_path / "text.jsonl").write_text('{"text": "好"}\n{"txt": "x"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"text.jsonl:2: 'text' must be a non-empty string"):
        RetentionSet.read(tmp_path)


def test_scores_on_the_debug_model_are_a_probability_and_a_perplexity(tmp_path, debug_model, tokenizer):
    retention = RetentionSet.read(write_retention_set(tmp_path, questions=8, num_texts=4))
    scores = RetentionScorer(retention, tokenizer, image_token_index=5, num_image_tokens=16)(debug_model)
    assert set(scores) == {"retention/mcq_accuracy", "retention/perplexity"}
    assert scores["retention/mcq_accuracy"] in {k / 8 for k in range(9)}
    # An untrained model is close to uniform over the vocabulary.
    assert 0.2 * len(tokenizer) < scores["retention/perplexity"] < 5 * len(tokenizer)
    assert math.isfinite(scores["retention/perplexity"])


def test_text_items_score_without_an_image_and_do_not_mix_with_image_items(debug_model):
    import torch

    text = ScoringItem(None, [1, 20, 30], [40, 50])
    (score,) = continuation_logprobs(debug_model, [text], image_token_index=5, num_image_tokens=16, pad_id=0)
    assert score < 0
    with_image = ScoringItem(torch.zeros(3, 64, 64), [1, 5, 20], [40])
    with pytest.raises(ValueError, match="mixes items with and without an image"):
        continuation_logprobs(debug_model, [text, with_image], image_token_index=5, num_image_tokens=16, pad_id=0)
    with pytest.raises(ValueError, match="without an image must hold 0 image placeholder"):
        continuation_logprobs(debug_model, [ScoringItem(None, [1, 5], [40])], image_token_index=5,
                              num_image_tokens=16, pad_id=0)
