"""Scorers for the evaluation harness; pure Python, every score in [0, 1] except CIDEr-D (0-10).

- `normalize_answer`, `exact_match`, `contains_match`: accuracy for open answers.
- `extract_choice`: the option an MCQ generation picked ("(B)", "B.", "答案是B", or an option's text).
- `char_tokenize`: BLEU/CIDEr tokens for Chinese: each Han (or kana) character is a token, each run of
  other letters/digits is a token, each punctuation mark is a token, whitespace separates.
- `sentence_bleu`, `corpus_bleu`: BLEU-4 (Papineni et al. 2002) with clipped n-gram counts over
  several references, closest-reference length (ties: the shorter) and brevity penalty; the same
  definitions and defaults as sacrebleu 2.x (corpus: 'exp' smoothing; sentence: 'exp' smoothing and
  effective order), so both equal sacrebleu's score / 100 on the same tokens (`char_tokenize` splits
  like sacrebleu's `zh` tokenizer).
- `cider_d`: CIDEr-D (Vedantam et al. 2015) as in the coco-caption code: tf-idf vectors of 1..4-grams
  with document frequencies from the reference corpus being scored, clipped hypothesis weights, a
  Gaussian length penalty (sigma 6), mean over n and references, times 10.
"""
from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

# --- normalisation and accuracy ---------------------------------------------------------------------

_HAN = (r"\u2e80-\u2fdf\u3005\u3007\u3021-\u3029\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff"
        r"\uf900-\ufaff\U00020000-\U0003134f")
_HAN_RE = re.compile(f"[{_HAN}]")
_SPACE_NEAR_HAN = re.compile(f"(?<=[{_HAN}])\\s+|\\s+(?=[{_HAN}])")


def normalize_answer(text: str) -> str:
    """NFKC, case-folded, punctuation and symbols removed, spaces collapsed (and dropped next to Han)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(" " if unicodedata.category(ch)[0] in "PSZ" or ch.isspace() else ch for ch in text)
    text = re.sub(r"\s+", " ", text).strip()
    return _SPACE_NEAR_HAN.sub("", text)


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(g) for g in golds))


def contains_match(prediction: str, golds: Sequence[str]) -> float:
    """1 if some (normalised, non-empty) gold answer occurs in the normalised prediction."""
    pred = normalize_answer(prediction)
    return float(any((g := normalize_answer(gold)) and g in pred for gold in golds))


def accuracy(flags: Sequence[float | bool]) -> float:
    return sum(float(f) for f in flags) / len(flags) if flags else 0.0


# --- MCQ answer extraction ---------------------------------------------------------------------------

_OPEN = r"[(（\[【「]"
_CLOSE = r"[)）\]】」]"
_AFTER = r"(?:[)）\]】」.．:：、,，。\s]|$)"


def extract_choice(text: str, options: Sequence[str], labels: Sequence[str] | None = None) -> int | None:
    """Index of the option a generated answer picks, or None if it names none (or several).

    In order: an explicit statement ("答案是B", "答案：(B)", "the answer is B", "選B"); a label at the
    start ("B", "(B) 綠色", "B. 綠色", "B、"); a bracketed label anywhere ("我選（B）"); then the
    option texts: the one option whose text occurs (options contained in another occurring option
    are ignored, so "深紅色" is not also read as "紅色"). Labels are matched case-sensitively and a
    bare leading letter followed by more words is prose, so an English "A" article never counts as A.
    """
    labels = list(labels) if labels is not None else [chr(ord("A") + i) for i in range(len(options))]
    text = unicodedata.normalize("NFKC", text).strip()
    if not text:
        return None
    alts = "|".join(re.escape(label) for label in sorted(labels, key=len, reverse=True))
    upper = [label.upper() for label in labels]

    def index(found: str) -> int | None:
        return upper.index(found.upper()) if found.upper() in upper else None

    explicit = re.search(
        rf"(?:答案|(?i:answer))\s*(?:應該|应该|(?i:should be))?\s*(?:是|為|为|:|：|(?i:is)|=)?\s*{_OPEN}?\s*({alts})(?![A-Za-z])",
        text)
    if explicit is None:
        explicit = re.search(rf"(?:選擇|选择|選項|选项|選|选)\s*{_OPEN}?\s*({alts})(?![A-Za-z])", text)
    if explicit is not None and index(explicit.group(1)) is not None:
        return index(explicit.group(1))
    leading = re.match(rf"{_OPEN}?\s*({alts}){_CLOSE}?{_AFTER}", text)
    if leading is not None:
        # A bare leading letter followed by a space and more words is prose ("A red circle"), not a choice.
        rest = text[leading.end():]
        bare = not re.match(rf"{_OPEN}", text) and re.match(rf"({alts})\s", text) and rest.strip()
        if not bare:
            return labels.index(leading.group(1))
    bracketed = re.findall(rf"{_OPEN}\s*({alts})\s*{_CLOSE}", text)
    if len(set(bracketed)) == 1:
        return labels.index(bracketed[0])
    folded = normalize_answer(text)
    found = [i for i, option in enumerate(options) if (o := normalize_answer(option)) and o in folded]
    found = [i for i in found
             if not any(j != i and normalize_answer(options[i]) in normalize_answer(options[j]) for j in found)]
    return found[0] if len(found) == 1 else None


# --- tokenisation -------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(f"[{_HAN}]|(?:(?![{_HAN}])[^\\W_])+|[^\\w\\s]|_")


def char_tokenize(text: str) -> list[str]:
    """'紅色的 Taipei 101。' -> ['紅', '色', '的', 'Taipei', '101', '。']."""
    return _TOKEN_RE.findall(text)


def ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


# --- BLEU ---------------------------------------------------------------------------------------------

@dataclass
class BleuStats:
    matches: list[int]
    totals: list[int]
    hyp_len: int
    ref_len: int

    def __add__(self, other: "BleuStats") -> "BleuStats":
        return BleuStats([a + b for a, b in zip(self.matches, other.matches)],
                         [a + b for a, b in zip(self.totals, other.totals)],
                         self.hyp_len + other.hyp_len, self.ref_len + other.ref_len)


def bleu_stats(hypothesis: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4) -> BleuStats:
    """Clipped n-gram matches and totals of one tokenised hypothesis, and its effective reference length."""
    if not references:
        raise ValueError("BLEU needs at least one reference")
    matches, totals = [], []
    for n in range(1, max_n + 1):
        hyp = ngrams(hypothesis, n)
        max_ref: Counter = Counter()
        for ref in references:
            for gram, count in ngrams(ref, n).items():
                max_ref[gram] = max(max_ref[gram], count)
        matches.append(sum(min(count, max_ref[gram]) for gram, count in hyp.items()))
        totals.append(max(0, len(hypothesis) - n + 1))
    # Closest reference length; on a tie the shorter one.
    ref_len = min((abs(len(r) - len(hypothesis)), len(r)) for r in references)[1]
    return BleuStats(matches, totals, len(hypothesis), ref_len)


def bleu_from_stats(stats: BleuStats, *, smooth: str = "none", effective_order: bool = False) -> float:
    """BLEU in [0, 1]. smooth: 'none'; 'exp' (sacrebleu/NIST: the k-th zero-match order gets
    1 / (2^k * total)); 'add1' (Lin & Och 2004: +1 to matches and totals of orders n >= 2).
    effective_order: average only over the orders the hypothesis is long enough to have."""
    if smooth not in ("none", "exp", "add1"):
        raise ValueError(f"smooth={smooth!r}: expected 'none', 'exp' or 'add1'")
    if stats.hyp_len == 0 or not any(stats.matches):
        return 0.0  # no overlap at all scores 0 whatever the smoothing (as sacrebleu)
    log_sum, order, halvings = 0.0, len(stats.matches), 0
    for n, (match, total) in enumerate(zip(stats.matches, stats.totals), start=1):
        if smooth == "add1" and n > 1:
            match, total = match + 1, total + 1
        if total == 0:
            if effective_order:
                order = n - 1
                break
            return 0.0
        if match == 0:
            if smooth == "exp":
                halvings += 1
                log_sum += math.log(1.0 / (2 ** halvings * total))
                continue
            return 0.0
        log_sum += math.log(match / total)
    if order == 0:
        return 0.0
    bp = 1.0 if stats.hyp_len > stats.ref_len else math.exp(1.0 - stats.ref_len / stats.hyp_len)
    return bp * math.exp(log_sum / order)


def _tokens(text_or_tokens, tokenize) -> list[str]:
    return list(text_or_tokens) if not isinstance(text_or_tokens, str) else tokenize(text_or_tokens)


def sentence_bleu(hypothesis, references, *, max_n: int = 4, smooth: str = "exp", effective_order: bool = True,
                  tokenize=char_tokenize) -> float:
    """BLEU of one hypothesis (string or token list) against its references; defaults as sacrebleu's."""
    refs = [_tokens(r, tokenize) for r in references]
    return bleu_from_stats(bleu_stats(_tokens(hypothesis, tokenize), refs, max_n), smooth=smooth,
                           effective_order=effective_order)


def corpus_bleu(hypotheses, references, *, max_n: int = 4, smooth: str = "exp", tokenize=char_tokenize) -> float:
    """Corpus BLEU: n-gram matches/totals and lengths summed over all segments before the geometric mean.
    references[i] is the list of references of hypotheses[i]. smooth='exp' is sacrebleu's default; it
    only matters when some order has no match in the whole corpus ('none' then gives 0)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    if not hypotheses:
        return 0.0
    total = None
    for hyp, refs in zip(hypotheses, references):
        stats = bleu_stats(_tokens(hyp, tokenize), [_tokens(r, tokenize) for r in refs], max_n)
        total = stats if total is None else total + stats
    return bleu_from_stats(total, smooth=smooth)


# --- CIDEr-D ------------------------------------------------------------------------------------------

def cider_d(hypotheses, references, *, max_n: int = 4, sigma: float = 6.0,
            tokenize=char_tokenize) -> tuple[float, list[float]]:
    """(corpus CIDEr-D, per-sample scores). references[i] lists the references of hypotheses[i]; the
    idf is log(N / df) with N = number of samples and df = number of samples whose references hold
    the n-gram (coco-caption's definition; a one-sample corpus therefore scores 0)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    if not hypotheses:
        return 0.0, []
    if any(not refs for refs in references):
        raise ValueError("every sample needs at least one reference")

    def counts(tokens: list[str]) -> Counter:
        out: Counter = Counter()
        for n in range(1, max_n + 1):
            out.update(ngrams(tokens, n))
        return out

    hyp_counts = [counts(_tokens(h, tokenize)) for h in hypotheses]
    ref_tokens = [[_tokens(r, tokenize) for r in refs] for refs in references]
    ref_counts = [[counts(r) for r in refs] for refs in ref_tokens]
    hyp_lens = [len(_tokens(h, tokenize)) for h in hypotheses]
    doc_freq: Counter = Counter()
    for refs in ref_counts:
        doc_freq.update({gram for ref in refs for gram in ref})
    log_n = math.log(len(hypotheses))

    def vector(cnt: Counter) -> tuple[list[dict], list[float]]:
        vec: list[dict] = [{} for _ in range(max_n)]
        for gram, tf in cnt.items():
            vec[len(gram) - 1][gram] = tf * (log_n - math.log(max(1.0, doc_freq[gram])))
        return vec, [math.sqrt(sum(v * v for v in d.values())) for d in vec]

    scores = []
    for hyp, refs, refs_tok, hyp_len in zip(hyp_counts, ref_counts, ref_tokens, hyp_lens):
        vec_h, norm_h = vector(hyp)
        total = 0.0
        for ref, ref_tok in zip(refs, refs_tok):
            vec_r, norm_r = vector(ref)
            # coco-caption measures length in bigrams; the difference is the same in tokens.
            penalty = math.exp(-((hyp_len - len(ref_tok)) ** 2) / (2 * sigma ** 2))
            for n in range(max_n):
                dot = sum(min(w, vec_r[n].get(g, 0.0)) * vec_r[n].get(g, 0.0) for g, w in vec_h[n].items())
                if norm_h[n] and norm_r[n]:
                    dot /= norm_h[n] * norm_r[n]
                total += dot * penalty
        scores.append(10.0 * total / max_n / len(refs))
    return sum(scores) / len(scores), scores
