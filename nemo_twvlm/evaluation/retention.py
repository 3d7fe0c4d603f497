"""Text retention: does the LM keep its Traditional-Chinese text ability through multimodal training?

A retention set is a folder with
- `mcq.jsonl` or `mcq.csv`: text-only multiple choice in the TMMLU+ / TMLU layout, one row per
  question with `question`, `A`, `B`, `C`, `D` and `answer` (a letter; other columns such as
  `subject` are ignored), scored by option log-likelihood, cloze style: the mean per-token
  log p(option | "問題：<question>\\n答案：");
- `text.jsonl`: held-out zh-TW text, `{"text": ...}` per line, scored by perplexity.
Either file may be absent, not both. `nemo_twvlm.data.synthetic_retention` writes a debug set.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

from nemo_twvlm.evaluation.scoring import ScoringItem, continuation_logprobs

LETTERS = ("A", "B", "C", "D")
MCQ_FIELDS = ("question", *LETTERS, "answer")
MAX_MEAN_NLL = 80.0


@dataclass
class RetentionSet:
    mcq: list[dict]
    texts: list[str]
    source: str

    @classmethod
    def read(cls, folder: str | Path) -> "RetentionSet":
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"data.retention_path={str(folder)!r}: not a folder")
        rows: list[dict] = []
        for path in (folder / "mcq.jsonl", folder / "mcq.csv"):
            if path.is_file():
                rows += _read_mcq(path)
        texts = _read_texts(folder / "text.jsonl") if (folder / "text.jsonl").is_file() else []
        if not rows and not texts:
            raise FileNotFoundError(f"data.retention_path={str(folder)!r}: no mcq.jsonl, mcq.csv or text.jsonl in it")
        return cls(rows, texts, str(folder))


def _read_mcq(path: Path) -> list[dict]:
    if path.suffix == ".csv":
        with open(path, encoding="utf-8-sig", newline="") as f:
            raw = list(enumerate(csv.DictReader(f), start=2))  # line 1 is the header
    else:
        raw = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    raw.append((number, json.loads(line)))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{number}: not JSON ({e.msg})") from None
    rows = []
    for number, row in raw:
        missing = [name for name in MCQ_FIELDS if not str(row.get(name) or "").strip()]
        if missing:
            raise ValueError(f"{path}:{number}: missing {', '.join(missing)} (expected {', '.join(MCQ_FIELDS)})")
        answer = str(row["answer"]).strip().upper()
        if answer not in LETTERS:
            raise ValueError(f"{path}:{number}: answer={row['answer']!r}, expected one of {', '.join(LETTERS)}")
        rows.append({"question": str(row["question"]), "options": [str(row[k]) for k in LETTERS],
                     "answer": LETTERS.index(answer)})
    return rows


def _read_texts(path: Path) -> list[str]:
    texts = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            text = json.loads(line).get("text")
        except (json.JSONDecodeError, AttributeError):
            raise ValueError(f"{path}:{number}: expected a JSON object with a 'text' field") from None
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{path}:{number}: 'text' must be a non-empty string")
        texts.append(text)
    return texts


class RetentionScorer:
    """The set tokenized once; `__call__(model)` gives `retention/mcq_accuracy` and `retention/perplexity`."""

    def __init__(self, retention: RetentionSet, tokenizer, *, image_token_index: int, num_image_tokens: int):
        bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        self._mcq_items, self._answers = [], []
        for row in retention.mcq:
            context = bos + tokenizer.encode(f"問題：{row['question']}\n答案：", add_special_tokens=False)
            self._mcq_items += [ScoringItem(None, context, tokenizer.encode(option, add_special_tokens=False))
                                for option in row["options"]]
            self._answers.append(row["answer"])
        self._text_items = []
        for text in retention.texts:
            ids = tokenizer.encode(text, add_special_tokens=False)
            # Without a BOS the first token has no context; it is then the context, not scored.
            self._text_items.append(ScoringItem(None, bos or ids[:1], ids if bos else ids[1:]))
        self._kwargs = dict(image_token_index=image_token_index, num_image_tokens=num_image_tokens,
                            pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
                            num_tokens=len(tokenizer))

    def __call__(self, model) -> dict[str, float]:
        scores = {}
        if self._mcq_items:
            logprobs = continuation_logprobs(model, self._mcq_items, **self._kwargs)
            # Per-token mean: options that are the same characters in other orders differ only in how the
            # tokenizer merges them, and a sum would reward the order it merges best.
            mean = [lp / max(len(item.continuation), 1) for lp, item in zip(logprobs, self._mcq_items)]
            correct = sum(max(range(4), key=lambda k: mean[4 * q + k]) == answer
                          for q, answer in enumerate(self._answers))
            scores["retention/mcq_accuracy"] = correct / len(self._answers)
        if self._text_items:
            logprobs = continuation_logprobs(model, self._text_items, **self._kwargs)
            tokens = sum(len(item.continuation) for item in self._text_items)
            # Capped at e^80 (~5.5e34): a wrecked LM is still reported as a finite number, also in
            # TensorBoard's float32 (e^89 would overflow it).
            scores["retention/perplexity"] = math.exp(min(-sum(logprobs) / tokens, MAX_MEAN_NLL))
        return scores
