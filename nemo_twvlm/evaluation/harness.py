"""`nemo twvlm evaluate`: task files (and the instruction-following probe) against a checkpoint.

    evaluate("runs/demo/cpt", ["mcq:/data/vistw_mcq.jsonl", "/data/captions.jsonl", "if_probe:runs/demo/data/pairs_val"],
             out_dir="runs/eval/cpt")

Task specs: `PATH` (kind inferred), `KIND:PATH` with KIND in mcq / open_qa / caption (see tasks.py for
the formats), `if_probe` (instruction-following probe on freshly drawn synthetic images) or
`if_probe:SHARD_DIR` (on the samples of held-out synthetic shards, e.g. runs/demo/data/pairs_val).
Published benchmarks in their own layouts: `vistw_mcq:DIR`, `vistw_dialogue:DIR`, `taiwanvqa:DIR`,
`vlmeval_mcq:TSV`, generated and scored by their authors' rules (benchmarks/); `judge=` scores
VisTW-Dialogue (benchmarks/judge.py).

Scoring:
    mcq      mode "loglik": log p(option text | prompt) summed over its tokens; the prediction is the
             argmax (acc) or the argmax of the per-character mean (acc_norm, lm-eval's length
             normalisation by characters). Mode "generate": greedy answer, then `extract_choice`.
    open_qa  greedy answer; exact match after normalisation and "contains" (a gold answer occurs in it).
    caption  greedy answer; corpus BLEU-4 (character tokens), mean sentence BLEU, CIDEr-D.
    if_probe compliance rate per constraint (instruction_following.py).

Prompts: a user turn "<image>\\n{question}\\n{A. ...\\nB. ...}" through the tokenizer's chat template
with the assistant header (prompt_style="chat"), or the continued-pretraining layout
"<bos><image>\\n{question}\\n" (prompt_style="plain"), which is the only format a CPT-only model saw.

Writes out_dir/results.json (everything, per line) and out_dir/report.html (self-contained).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Sequence

from nemo_twvlm.evaluation import benchmarks, scorers
from nemo_twvlm.evaluation.instruction_following import compliance, default_suite, grounding, run_suite
from nemo_twvlm.evaluation.tasks import (
    CaptionItem, MCQItem, OpenQAItem, Problem, TaskFile, parse_task_spec, read_task, summarise,
)

log = logging.getLogger(__name__)

IMAGE_PLACEHOLDER = "<image>"
MODES = ("loglik", "generate")
PROMPT_STYLES = ("chat", "plain")
IF_PROBE = "if_probe"
DEFAULT_IF_SAMPLES = 20


# --- prompts and generation ------------------------------------------------------------------------

def format_options(options: Sequence[str], labels: Sequence[str]) -> str:
    return "\n".join(f"{label}. {option}" for label, option in zip(labels, options))


def user_text(question: str, options: Sequence[str] | None = None, labels: Sequence[str] | None = None) -> str:
    """The text of the user turn after the image: the question, then the labelled options if any."""
    question = question.replace(IMAGE_PLACEHOLDER, " ").strip()  # the one image goes first, always
    if options:
        return f"{question}\n{format_options(options, labels)}"
    return question


def prompt_ids(tokenizer, text: str, *, image_token_index: int, prompt_style: str = "chat") -> list[int]:
    """Token ids ending where the model's answer starts; exactly one image id."""
    if prompt_style == "chat":
        from nemo_twvlm.inference.prompt import chat_prompt, image_turn

        ids = chat_prompt(tokenizer, [{"role": "user", "content": image_turn(text)}])
    elif prompt_style == "plain":
        ids = [tokenizer.bos_token_id, image_token_index] + tokenizer.encode(f"\n{text}\n", add_special_tokens=False)
    else:
        raise ValueError(f"prompt_style={prompt_style!r}: expected one of {PROMPT_STYLES}")
    if ids.count(image_token_index) != 1:
        raise ValueError(f"prompt holds {ids.count(image_token_index)} image ids; expected 1 "
                         f"(does the tokenizer map {IMAGE_PLACEHOLDER!r} to id {image_token_index}?)")
    return ids


def load_image(path):
    """[3, H, W] float in [0, 1] from an image file."""
    from nemo_twvlm.inference.chat import load_image as read

    return read(path)


def generate_text(model, tokenizer, preset, image, text: str, *, image_token_index: int, max_new_tokens: int = 64,
                  prompt_style: str = "chat") -> str:
    """Greedy answer of the model to `text` about `image` ([3, H, W] in [0, 1]), special tokens dropped."""
    return generate_answer(model, tokenizer, preset, image, text, image_token_index=image_token_index,
                           max_new_tokens=max_new_tokens, prompt_style=prompt_style)[0]


def generate_answer(model, tokenizer, preset, image, text: str, *, image_token_index: int, max_new_tokens: int = 64,
                    prompt_style: str = "chat") -> tuple[str, int]:
    """(decoded greedy answer, number of tokens generated before a stop token or the limit)."""
    from nemo_twvlm.data.image import preprocess_image
    from nemo_twvlm.inference.generate import SamplingParams, generate
    from nemo_twvlm.inference.prompt import sampling_params

    ids = prompt_ids(tokenizer, text, image_token_index=image_token_index, prompt_style=prompt_style)
    pixels = preprocess_image(image, preset.vision)[None]
    params = sampling_params(tokenizer, SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0))
    out = generate(model, ids, pixels, image_token_index=image_token_index, num_image_tokens=preset.num_image_tokens,
                   params=params)
    return tokenizer.decode(out, skip_special_tokens=True).strip(), len(out)


# --- per-kind evaluation -----------------------------------------------------------------------------

class _Context:
    def __init__(self, model, tokenizer, preset, image_token_index: int, *, max_new_tokens: int, prompt_style: str,
                 modes: Sequence[str], batch_size: int = 32, out_dir: Path | None = None, judge=None):
        self.model, self.tokenizer, self.preset = model, tokenizer, preset
        self.out_dir, self.judge = out_dir, judge  # benchmark kinds write images and answers files there
        self.image_token_index = image_token_index
        self.max_new_tokens, self.prompt_style, self.modes, self.batch_size = max_new_tokens, prompt_style, modes, batch_size

    def image(self, path):
        return load_image(path)

    def pixels(self, path):
        from nemo_twvlm.data.image import preprocess_image

        return preprocess_image(load_image(path), self.preset.vision)

    def generate(self, image_path, text: str, record: dict, max_new_tokens: int | None = None) -> str:
        """Greedy answer; records it with its token count (== max_new_tokens: cut off, no stop token).
        `max_new_tokens` overrides the run's limit where a benchmark fixes it (TaiwanVQA: 1)."""
        answer, n_tokens = generate_answer(self.model, self.tokenizer, self.preset, self.image(image_path), text,
                                           image_token_index=self.image_token_index,
                                           max_new_tokens=max_new_tokens or self.max_new_tokens,
                                           prompt_style=self.prompt_style)
        record.update(generation=answer, generated_tokens=n_tokens)
        return answer


def _mcq(ctx: _Context, items: list[MCQItem]) -> tuple[dict, list[dict]]:
    from nemo_twvlm.evaluation.scoring import ScoringItem, continuation_logprobs

    records = []
    for item in items:
        text = user_text(item.question, item.options, item.labels)
        records.append({"id": item.id, "line": item.line, "image": str(item.image), "prompt": text,
                        "options": item.options, "labels": item.labels, "answer": item.labels[item.answer]})
    scores: dict = {"n": len(items), "chance": scorers.accuracy([1 / len(i.options) for i in items])}
    if "loglik" in ctx.modes and items:
        pad = ctx.tokenizer.pad_token_id if ctx.tokenizer.pad_token_id is not None else ctx.tokenizer.eos_token_id
        per_item: list[list[float]] = []
        step = max(1, ctx.batch_size // 4)  # items per scoring call: images in memory stay bounded
        for start in range(0, len(items), step):
            scoring, owner = [], []
            for k in range(start, min(start + step, len(items))):
                item = items[k]
                context = prompt_ids(ctx.tokenizer, records[k]["prompt"], image_token_index=ctx.image_token_index,
                                     prompt_style=ctx.prompt_style)
                pixels = ctx.pixels(item.image)
                for option in item.options:
                    scoring.append(ScoringItem(pixels, context, ctx.tokenizer.encode(option, add_special_tokens=False)))
                    owner.append(k)
            logprobs = continuation_logprobs(ctx.model, scoring, image_token_index=ctx.image_token_index,
                                             num_image_tokens=ctx.preset.num_image_tokens, pad_id=pad,
                                             batch_size=ctx.batch_size, num_tokens=len(ctx.tokenizer))
            per_item += [[] for _ in range(start, min(start + step, len(items)))]
            for k, value in zip(owner, logprobs):
                per_item[k].append(value)
        for item, record, values in zip(items, records, per_item):
            normed = [v / max(1, len(o)) for v, o in zip(values, item.options)]
            pick = max(range(len(values)), key=values.__getitem__)
            pick_norm = max(range(len(normed)), key=normed.__getitem__)
            record.update(loglik=[round(v, 4) for v in values], pred_loglik=item.labels[pick],
                          correct_loglik=pick == item.answer, pred_loglik_norm=item.labels[pick_norm],
                          correct_loglik_norm=pick_norm == item.answer)
        scores["loglik_acc"] = scorers.accuracy([r["correct_loglik"] for r in records])
        scores["loglik_acc_norm"] = scorers.accuracy([r["correct_loglik_norm"] for r in records])
    if "generate" in ctx.modes and items:
        for item, record in zip(items, records):
            answer = ctx.generate(item.image, record["prompt"], record)
            choice = scorers.extract_choice(answer, item.options, item.labels)
            record.update(extracted=None if choice is None else item.labels[choice], correct_generate=choice == item.answer)
        scores["generate_acc"] = scorers.accuracy([r["correct_generate"] for r in records])
        scores["generate_extracted"] = scorers.accuracy([r["extracted"] is not None for r in records])
    return scores, records


def _open_qa(ctx: _Context, items: list[OpenQAItem]) -> tuple[dict, list[dict]]:
    records = []
    for item in items:
        text = user_text(item.question)
        record = {"id": item.id, "line": item.line, "image": str(item.image), "prompt": text, "answers": item.answers}
        if "generate" in ctx.modes:
            answer = ctx.generate(item.image, text, record)
            record.update(exact_match=scorers.exact_match(answer, item.answers),
                          contains=scorers.contains_match(answer, item.answers))
        records.append(record)
    scores: dict = {"n": len(items)}
    if "generate" in ctx.modes:
        scores["exact_match"] = scorers.accuracy([r["exact_match"] for r in records])
        scores["contains"] = scorers.accuracy([r["contains"] for r in records])
    else:
        scores["note"] = "open_qa is scored by generation; 'generate' is not among the modes"
    return scores, records


def _caption(ctx: _Context, items: list[CaptionItem]) -> tuple[dict, list[dict]]:
    records = [{"id": i.id, "line": i.line, "image": str(i.image), "prompt": user_text(i.prompt),
                "references": i.references} for i in items]
    scores: dict = {"n": len(items)}
    if "generate" not in ctx.modes:
        scores["note"] = "captioning is scored by generation; 'generate' is not among the modes"
        return scores, records
    for item, record in zip(items, records):
        ctx.generate(item.image, record["prompt"], record)
        record["bleu4"] = scorers.sentence_bleu(record["generation"], item.references)
    if items:
        hyps, refs = [r["generation"] for r in records], [i.references for i in items]
        cider, per_sample = scorers.cider_d(hyps, refs)
        for record, value in zip(records, per_sample):
            record["cider_d"] = value
        scores.update(bleu4=scorers.corpus_bleu(hyps, refs),
                      bleu4_sentence_mean=scorers.accuracy([r["bleu4"] for r in records]), cider_d=cider)
    return scores, records


_RUNNERS = {"mcq": _mcq, "open_qa": _open_qa, "caption": _caption}


def usable_items(ctx: _Context, task: TaskFile, items: list) -> list:
    """The items whose image decodes and whose prompt, with what follows it (the longest option scored,
    max_new_tokens generated), fits the model's context; each other one becomes a problem of `task` (a
    counted skip with its reason in results.json), so one bad item never ends the run."""
    from nemo_twvlm.inference.generate import PromptTooLong, check_fits, context_length, expanded_length

    usable = []
    for item in items:
        try:
            ctx.image(item.image)  # a JPEG cut short passes PIL's verify() and fails here
        except ValueError as error:
            task.problems.append(Problem(str(task.path), item.line, f"image unreadable: {error}"))
            continue
        question = item.prompt if task.kind == "caption" else item.question
        text = user_text(question, *((item.options, item.labels) if task.kind == "mcq" else ()))
        ids = prompt_ids(ctx.tokenizer, text, image_token_index=ctx.image_token_index, prompt_style=ctx.prompt_style)
        following = [ctx.max_new_tokens] if "generate" in ctx.modes else []
        if task.kind == "mcq" and "loglik" in ctx.modes:
            following.append(max(len(ctx.tokenizer.encode(o, add_special_tokens=False)) for o in item.options))
        try:
            check_fits(expanded_length(ids, image_token_index=ctx.image_token_index,
                                       num_image_tokens=ctx.preset.num_image_tokens),
                       max(following, default=0), context_length(ctx.model), what="tokens")
        except PromptTooLong as error:
            task.problems.append(Problem(str(task.path), item.line, f"prompt too long: {error}"))
            continue
        usable.append(item)
    dropped = {id(item) for item in items} - {id(item) for item in usable}
    task.items = [item for item in task.items if id(item) not in dropped]  # loaded stays lines - skipped
    return usable


# --- instruction-following probe ----------------------------------------------------------------------

def if_samples(source: str | None, count: int, *, seed: int = 0):
    """(image [3,H,W] in [0,1], synthetic metadata): from held-out shards, or drawn now."""
    if source:
        from nemo_twvlm.evaluation.attribute_probe import read_probe_samples

        return read_probe_samples(source, count)
    import numpy as np
    import torch

    from nemo_twvlm.data.synthetic import render_image, sample_attributes

    rng = np.random.default_rng([seed, 7919])  # a stream no training split uses
    samples = []
    for _ in range(count):
        meta = sample_attributes(rng)
        image = np.asarray(render_image(meta, rng), dtype=np.float32) / 255.0
        samples.append((torch.from_numpy(image).permute(2, 0, 1).contiguous(), meta))
    return samples


def _save_png(image, path: Path) -> None:
    import numpy as np
    from PIL import Image

    array = (image.permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _if_probe(ctx: _Context, source: str | None, count: int, out_dir: Path, seed: int) -> dict:
    samples = if_samples(source, count, seed=seed)
    suite = default_suite(samples, seed=seed)
    records = run_suite(ctx.model, ctx.tokenizer, ctx.preset, suite, image_token_index=ctx.image_token_index,
                        max_new_tokens=ctx.max_new_tokens, prompt_style=ctx.prompt_style)
    for s, (image, _) in enumerate(samples):
        _save_png(image, out_dir / "images" / f"if_probe_{s:04d}.png")
    for record in records:
        record["image"] = str((out_dir / "images" / f"if_probe_{record['sample']:04d}.png").resolve())
    counts: dict[str, int] = {}
    for record in records:
        counts[record["constraint"]] = counts.get(record["constraint"], 0) + 1
    yes_no = [r["correct"] for r in records if "correct" in r]
    return {"name": IF_PROBE, "kind": IF_PROBE, "source": source or "synthetic (drawn)", "samples": len(samples),
            "rates": compliance(records), "counts": counts, "grounded_rates": grounding(records),
            "yes_no_accuracy": scorers.accuracy(yes_no) if yes_no else None, "records": records}


# --- entry points -------------------------------------------------------------------------------------

def load_tasks(specs: Sequence[str]) -> tuple[list[TaskFile], list[tuple[str | None, str]]]:
    """Read every task file (before any model is loaded: a wrong path fails in seconds); the IF specs apart."""
    tasks, probes, names = [], [], set()
    for spec in specs:
        spec = spec.strip()
        if not spec:
            continue
        if spec == IF_PROBE or spec.startswith(IF_PROBE + ":"):
            probes.append((spec, spec.partition(":")[2] or None))
            continue
        bench_kind, bench_path = benchmarks.parse_spec(spec)
        if bench_kind:
            task = benchmarks.read(bench_kind, bench_path)
        else:
            kind, path = parse_task_spec(spec)
            task = read_task(path, kind)
        base, k = task.name, 1
        while task.name in names:
            k += 1
            task.name = f"{base}_{k}"
        names.add(task.name)
        tasks.append(task)
    return tasks, probes


def evaluate_model(model, tokenizer, preset, task_specs: Sequence[str], *, out_dir: str | Path, image_token_index: int,
                   limit: int | None = None, modes: Sequence[str] = MODES, max_new_tokens: int = 64,
                   prompt_style: str = "chat", seed: int = 0, meta: dict | None = None,
                   loaded_tasks: tuple | None = None, judge=None) -> dict:
    """Evaluate a built model; writes results.json and report.html into out_dir and returns the results.

    `limit` caps the items evaluated per task file (the first ones) and the images of the IF probe
    (default 20 images, 5 prompts each). `judge` (benchmarks/judge.py) scores VisTW-Dialogue answers."""
    from nemo_twvlm.evaluation.report import write_report

    modes = tuple(modes)
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise ValueError(f"modes={modes}: expected a non-empty subset of {MODES}")
    if prompt_style not in PROMPT_STYLES:
        raise ValueError(f"prompt_style={prompt_style!r}: expected one of {PROMPT_STYLES}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks, probes = loaded_tasks or load_tasks(task_specs)
    ctx = _Context(model, tokenizer, preset, image_token_index, max_new_tokens=max_new_tokens,
                   prompt_style=prompt_style, modes=modes, out_dir=out_dir, judge=judge)
    start = time.perf_counter()
    results: dict = {"meta": {**(meta or {}), "modes": list(modes), "prompt_style": prompt_style, "limit": limit,
                              "max_new_tokens": max_new_tokens, "preset": preset.name,
                              "created": time.strftime("%Y-%m-%d %H:%M:%S")},
                     "tasks": [], "problems": []}
    for task in tasks:
        items = task.items[:limit] if limit else task.items
        log.info("evaluating %s (%s, %d items)", task.name, task.kind, len(items))
        if task.kind in benchmarks.KINDS:
            scores, records = benchmarks.run(ctx, task, items)
        else:
            items = usable_items(ctx, task, items)
            scores, records = _RUNNERS[task.kind](ctx, items) if task.kind in _RUNNERS else ({"n": 0}, [])
        results["tasks"].append({"name": task.name, "kind": task.kind, "path": str(task.path),
                                 "summary": {**task.summary(), "evaluated": len(items)},
                                 "scores": scores, "records": records})
        results["problems"] += [p.as_dict() for p in task.problems]
    results["if_probe"] = [_if_probe(ctx, source, limit or DEFAULT_IF_SAMPLES, out_dir, seed) for _, source in probes]
    results["summary"] = {**summarise(tasks), "evaluated": sum(t["summary"]["evaluated"] for t in results["tasks"]),
                          "if_probe_prompts": sum(len(p["records"]) for p in results["if_probe"]),
                          "seconds": round(time.perf_counter() - start, 1)}
    (out_dir / "results.json").write_text(json.dumps(results, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    write_report(results, out_dir / "report.html")
    return results


def evaluate(ckpt_dir: str | Path, task_paths: Sequence[str], *, out_dir: str | Path, limit: int | None = None,
             modes: Sequence[str] = MODES, max_new_tokens: int = 64, prompt_style: str = "chat", seed: int = 0,
             judge: str | None = None, judge_model: str | None = None) -> dict:
    """Load the latest checkpoint in `ckpt_dir` and evaluate it on `task_paths` (task specs, see the module
    docstring); writes out_dir/results.json and out_dir/report.html and returns the results. `judge`: an
    OpenAI-compatible endpoint URL (`judge_model` names its model) or a checkpoint directory."""
    from nemo_twvlm.evaluation.benchmarks.judge import make_judge
    from nemo_twvlm.training.checkpoint import latest_iteration, load_for_inference

    tasks = load_tasks(task_paths)  # a wrong task path fails before any time goes into the model
    iteration = latest_iteration(str(ckpt_dir))
    loaded = load_for_inference(str(ckpt_dir), iteration)
    return evaluate_model(loaded.model, loaded.tokenizer, loaded.preset, task_paths, out_dir=out_dir,
                          image_token_index=loaded.image_token_index, limit=limit, modes=modes,
                          max_new_tokens=max_new_tokens, prompt_style=prompt_style, seed=seed,
                          meta={"checkpoint": str(Path(ckpt_dir).resolve()), "iteration": iteration},
                          loaded_tasks=tasks, judge=make_judge(judge, judge_model) if judge else None)


def cli_evaluate(ckpt: str, tasks: str, out_dir: str = "runs/eval", limit: int | None = None,
                 modes: str = "loglik,generate", max_new_tokens: int = 64, prompt_style: str = "chat",
                 seed: int = 0, judge: str | None = None, judge_model: str | None = None) -> dict:
    """`nemo twvlm evaluate ckpt=DIR tasks=SPEC[,SPEC...] out_dir=DIR`: comma-separated task specs and modes."""
    results = evaluate(ckpt, [t for t in tasks.split(",") if t.strip()], out_dir=out_dir, limit=limit,
                       modes=[m.strip() for m in modes.split(",") if m.strip()], max_new_tokens=max_new_tokens,
                       prompt_style=prompt_style, seed=seed, judge=judge, judge_model=judge_model)
    print(headline(results))
    return results


def headline(results: dict) -> str:
    """A few lines for the terminal: per-task scores, IF compliance, skipped lines, where the report is."""
    lines = []
    for task in results["tasks"]:
        numbers = ", ".join(f"{k}={v:.3f}" for k, v in task["scores"].items() if isinstance(v, float))
        lines.append(f"{task['name']} ({task['kind']}, n={task['summary']['evaluated']}, "
                     f"skipped={task['summary']['skipped']}): {numbers}")
    for probe in results["if_probe"]:
        lines.append("if_probe compliance: " + ", ".join(f"{k}={v:.2f}" for k, v in probe["rates"].items()))
        lines.append("if_probe on-topic (names a true attribute; yes/no: correct): "
                     + ", ".join(f"{k}={v:.2f}" for k, v in probe["grounded_rates"].items()))
    summary = results["summary"]
    lines.append(f"lines={summary['lines']} loaded={summary['loaded']} skipped={summary['skipped']} "
                 f"{summary['skipped_by_reason'] or ''}".rstrip())
    return "\n".join(lines)
