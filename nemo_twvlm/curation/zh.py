"""Chinese-aware text helpers: caption cleaning, script detection, quality metrics, dedup normalisation.

Curator's text filters assume space-separated Latin text (its `NonAlphaNumericFilter` rejects every
Chinese document); these work per character.
"""
from __future__ import annotations

import html
import re
import unicodedata
from functools import cached_property

_TAG = re.compile(r"<[^>]{0,500}>")
# URL characters per RFC 3986 only: a CJK character right after a URL ends it.
_URL = re.compile(r"(?:https?://|www\.)[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
# Ideographs (URO, extension A, compatibility, extensions B-G) and bopomofo (zhuyin, Taiwan's phonetics).
_CJK = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f\u3100-\u312f\u31a0-\u31bf]")
# Counted by runs (a match per run, summed by length): a match per character made a string each, and
# counting a 2,000-character text's letters and CJK took 5x as long.
_CJK_RUNS = re.compile(_CJK.pattern + "+")
_LETTER_RUNS = re.compile(r"[^\W\d_]+")  # what str.isalpha() accepts: every script's letters, CJK included
_DIGIT = re.compile(r"\d")
_NOT_WORD = re.compile(r"[\W_]+")  # spaces, punctuation, symbols
# Control and invisible format characters (C0, DEL, C1, zero-width and bidi marks, BOM).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")
_CJK_SPACE = re.compile(r"(?<=[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]) (?=[\u3000-\u303f\u3400-\u9fff\uff00-\uffef])")
_KANA_HANGUL = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uac00-\ud7af\u1100-\u11ff]")

# Simplified forms that are also everyday Traditional characters in Taiwan (台北, 干涉, 里長, 皇后,
# 北斗, 游泳, 岩石, 雇主, 公厘...). OpenCC's s2tw changes them when they stand alone, so counting
# them as Simplified evidence would flag plain zh-TW text. Hand-picked from the characters s2tw
# changes in isolation; provisional: extend it when a zh-Hant caption is seen labelled zh-Hans.
TW_SHARED = frozenset("台干里后余准冲丑几范伙云朴斗咸叶征郁划游岳杰岩采于涂凶占厘辟佣涌熏肴雇霉洒")
# With evidence for both scripts, one that outnumbers the other this many times wins.
_DOMINANCE = 3


def is_cjk(ch: str) -> bool:
    return _CJK.match(ch) is not None


def _count(runs: re.Pattern, text: str) -> int:
    return sum(map(len, runs.findall(text)))


def count_cjk(text: str) -> int:
    return _count(_CJK_RUNS, text)


def clean_text(text: str, *, strip_html: bool = True, strip_urls: bool = True) -> str:
    """Unescape HTML entities, drop tags and URLs, control characters and surplus whitespace.

    Full-width punctuation stays (no NFKC): it is correct zh-TW typography. Spaces between two
    CJK characters are removed: scraped Chinese often carries them from line wrapping.
    """
    for _ in range(2):  # doubly escaped entities ("&amp;lt;") are common in scraped alt text
        unescaped = html.unescape(text)
        if unescaped == text:
            break
        text = unescaped
    if strip_html:
        text = _TAG.sub(" ", text)
    if strip_urls:
        text = _URL.sub(" ", text)
    text = _CONTROL.sub("", unicodedata.normalize("NFC", text))
    text = _SPACE.sub(" ", text).strip()
    return _CJK_SPACE.sub("", text)


def looks_chinese(text: str) -> bool:
    """Mostly Han characters and no kana or hangul: what lid.176 sometimes calls `ja` when short."""
    letters = _count(_LETTER_RUNS, text)
    if not letters or _KANA_HANGUL.search(text):
        return False
    return count_cjk(text) / letters >= 0.5


class ScriptDetector:
    """zh-Hant / zh-Hans / mixed / ambiguous by an OpenCC round trip.

    A character that Taiwan-to-Simplified conversion changes is Traditional evidence; one that
    Simplified-to-Taiwan conversion changes is Simplified evidence (minus TW_SHARED). Text with
    neither (e.g. 在左上) is `ambiguous`: both scripts write it the same way. Evidence for both
    is `mixed` unless one side outnumbers the other `_DOMINANCE` times.
    """

    def __init__(self) -> None:
        import opencc  # the C++ binding (opencc==1.4.2); never beside opencc-python-reimplemented

        self._to_hans = opencc.OpenCC("tw2s")
        self._to_hant = opencc.OpenCC("s2tw")

    @cached_property
    def _normalise(self):
        # Loaded on the first caption to convert: it reads the 0.9 MB phrase table again (~0.1 s
        # here, half of all OpenCC loading), which input without Simplified text never needs.
        import opencc

        return opencc.OpenCC("s2twp")

    def counts(self, text: str) -> tuple[int, int]:
        hant = _changed(text, self._to_hans.convert, frozenset())
        hans = _changed(text, self._to_hant.convert, TW_SHARED)
        return hant, hans

    def detect(self, text: str) -> str:
        hant, hans = self.counts(text)
        if hant == 0 and hans == 0:
            return "ambiguous"
        if hant >= _DOMINANCE * hans:
            return "zh-Hant"
        if hans >= _DOMINANCE * hant:
            return "zh-Hans"
        return "mixed"

    def to_taiwan(self, text: str) -> str:
        """OpenCC s2twp: Taiwan characters and vocabulary (软件 -> 軟體, 鼠标 -> 滑鼠)."""
        return self._normalise.convert(text)


def _changed(text: str, convert, ignore: frozenset[str]) -> int:
    converted = convert(text)
    if converted == text:  # the usual answer of one of the two directions: no per-character count
        return 0
    if len(converted) != len(text):  # a phrase rule changed the length: compare per character
        converted = "".join(convert(ch) if is_cjk(ch) else ch for ch in text)
        if len(converted) != len(text):
            converted = "".join(c if len(convert(c)) != 1 else convert(c) for c in text)
    return sum(a != b and a not in ignore for a, b in zip(text, converted))


def quality_metrics(text: str) -> dict[str, float]:
    """Character-level measures that work with or without word spaces. Everything that is neither
    a letter nor a digit (punctuation, symbols, emoji) counts as punctuation."""
    joined = _SPACE.sub("", text)
    n = len(joined)
    letters = _count(_LETTER_RUNS, joined)
    grams = [joined[i:i + 3] for i in range(n - 2)]
    repetition = 1 - len(set(grams)) / len(grams) if len(grams) >= 2 else 0.0
    return {
        "chars": n,
        "cjk_ratio": count_cjk(joined) / letters if letters else 0.0,
        "punctuation_ratio": (n - letters - len(_DIGIT.findall(joined))) / n if n else 0.0,
        "char_repetition": repetition,
    }


def dedup_normalise(text: str) -> str:
    """The text exact and near dedup compare: NFKC, case-folded, no whitespace or punctuation."""
    return _NOT_WORD.sub("", unicodedata.normalize("NFKC", text).casefold())


def shingles(text: str, k: int) -> set[str]:
    if len(text) <= k:
        return {text} if text else set()
    return {text[i:i + k] for i in range(len(text) - k + 1)}
