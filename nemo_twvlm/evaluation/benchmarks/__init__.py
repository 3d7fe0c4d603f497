"""Published benchmarks in their own layouts, scored by their authors' rules (one module per benchmark):

    vistw_mcq:DIR_OR_PARQUET       vistw.py      accuracy per subject, overall = mean of the subjects
    vistw_dialogue:DIR_OR_PARQUET  vistw.py      answers file for the official judge; 0-10 with judge=
    taiwanvqa:DIR_OR_PARQUET       taiwanvqa.py  CircularEval, by question_type and topic
    vlmeval_mcq:TSV                vlmeval.py    VLMEvalKit MCQ TSV, by category (CircularEval if rotated)

Reading checks every row before a model is loaded (rows.py); running generates one answer per item
(runner.py). Both go through `read` and `run` here, which the harness calls for these kinds.
"""
from __future__ import annotations

from pathlib import Path

KINDS = ("vistw_mcq", "vistw_dialogue", "taiwanvqa", "vlmeval_mcq")


def parse_spec(spec: str) -> tuple[str | None, str]:
    """'taiwanvqa:/data/tvqa' -> ('taiwanvqa', '/data/tvqa'); any other spec -> (None, spec)."""
    head, sep, rest = spec.partition(":")
    return (head, rest) if sep and head in KINDS else (None, spec)


def read(kind: str, path: str | Path):
    """The TaskFile of one benchmark input; a path that does not exist is a FileNotFoundError."""
    from nemo_twvlm.evaluation.benchmarks import taiwanvqa, vistw, vlmeval

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{kind} input {path} does not exist")
    readers = {"vistw_mcq": vistw.read_mcq, "vistw_dialogue": vistw.read_dialogue, "taiwanvqa": taiwanvqa.read,
               "vlmeval_mcq": vlmeval.read}
    return readers[kind](path)


def run(ctx, task, items) -> tuple[dict, list[dict]]:
    """(scores, records) of one benchmark task's items; scores["tables"] holds the per-group tables."""
    from nemo_twvlm.evaluation.benchmarks import taiwanvqa, vistw, vlmeval

    runners = {"vistw_mcq": vistw.run_mcq, "vistw_dialogue": vistw.run_dialogue, "taiwanvqa": taiwanvqa.run,
               "vlmeval_mcq": vlmeval.run}
    return runners[task.kind](ctx, task.name, items)
