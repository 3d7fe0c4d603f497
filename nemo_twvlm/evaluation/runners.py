"""The runners of the JSONL task kinds (tasks.py): each `run_<kind>(ctx, task, items)` returns
(scores, records) for the harness's table.

    mcq      mode "loglik": log p(option text | prompt) summed over its tokens; the prediction is the
             argmax (acc) or the argmax of the per-character mean (acc_norm, lm-eval's length
             normalisation by characters). Mode "generate": greedy answer, then `extract_choice`.
    open_qa  greedy answer; exact match after normalisation and "contains" (a gold answer occurs in it).
    caption  greedy answer; corpus BLEU-4 (character tokens), mean sentence BLEU, CIDEr-D.
"""
from __future__ import annotations

from nemo_twvlm.evaluation import scorers
from nemo_twvlm.evaluation.context import EvalContext
from nemo_twvlm.evaluation.scoring import ScoringItem, continuation_logprobs
from nemo_twvlm.evaluation.tasks import CaptionItem, MCQItem, OpenQAItem, Problem, TaskFile
from nemo_twvlm.inference.generate import PromptTooLong, check_fits, context_length, expanded_length
from nemo_twvlm.inference.prompt import prompt_ids, user_text


def run_mcq(ctx: EvalContext, task: TaskFile, items: list[MCQItem]) -> tuple[dict, list[dict]]:
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


def run_open_qa(ctx: EvalContext, task: TaskFile, items: list[OpenQAItem]) -> tuple[dict, list[dict]]:
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


def run_caption(ctx: EvalContext, task: TaskFile, items: list[CaptionItem]) -> tuple[dict, list[dict]]:
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


def usable_items(ctx: EvalContext, task: TaskFile, items: list) -> list:
    """The items whose image decodes and whose prompt, with what follows it (the longest option scored,
    max_new_tokens generated), fits the model's context; each other one becomes a problem of `task` (a
    counted skip with its reason in results.json), so one bad item never ends the run."""
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
