"""A self-contained HTML report of an evaluation's results.json: no external resources, images embedded
as base64 PNG thumbnails, the instruction-following compliance as an inline SVG bar chart.

    python -m nemo_twvlm.evaluation.report runs/eval/results.json   # (re)writes runs/eval/report.html
"""
from __future__ import annotations

import base64
import io
import json
import sys
from html import escape
from pathlib import Path

from nemo_twvlm.evaluation.benchmarks import KINDS as BENCHMARK_KINDS

THUMB = 96  # longest side of an embedded thumbnail, in pixels

_CSS = """
body{font-family:system-ui,"Noto Sans CJK TC","Noto Sans TC","PingFang TC","Microsoft JhengHei",sans-serif;
margin:24px;color:#1d2430;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:2px solid #dde3ea;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}.meta{color:#5a6573;font-size:13px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}th,td{border:1px solid #d5dbe2;padding:4px 8px;vertical-align:top;text-align:left}
th{background:#eef2f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{white-space:pre-wrap;margin:0;font-family:inherit;max-width:460px}
img.thumb{width:96px;height:auto;image-rendering:pixelated;border:1px solid #ccd}
.ok{color:#137333;font-weight:600}.bad{color:#b3261e;font-weight:600}.na{color:#8a939e}
.warn{background:#fff4e5}details{margin:6px 0}summary{cursor:pointer;font-weight:600}
"""


def _thumbnail(path: str, cache: dict) -> str:
    """A data: URI of a PNG thumbnail of the image at `path`, or '' if it cannot be read."""
    if path in cache:
        return cache[path]
    uri = ""
    try:
        from PIL import Image

        with Image.open(path) as img:
            img = img.convert("RGB")
            img.thumbnail((THUMB, THUMB))
            buf = io.BytesIO()
            img.save(buf, "PNG")
        uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    except Exception:  # a report must render even if an image went missing after the run
        uri = ""
    cache[path] = uri
    return uri


def _img(path: str | None, cache: dict) -> str:
    if not path:
        return '<span class="na">-</span>'
    uri = _thumbnail(path, cache)
    if not uri:
        return f'<span class="na">missing {escape(Path(path).name)}</span>'
    return f'<img class="thumb" alt="{escape(Path(path).name)}" src="{uri}">'


def _fmt(value) -> str:
    if value is None:
        return '<span class="na">-</span>'
    if isinstance(value, bool):
        return '<span class="ok">✓</span>' if value else '<span class="bad">✗</span>'
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, (list, tuple)):
        return escape(", ".join(str(v) for v in value))
    return escape(str(value))


def _pre(text) -> str:
    return f"<pre>{escape(str(text)) if text is not None else ''}</pre>"


def bar_chart_svg(rates: dict[str, float], counts: dict[str, int] | None = None, *, width: int = 560) -> str:
    """Horizontal bars, one per constraint (and 'overall'), rate in [0, 1] written at the bar's end."""
    counts = counts or {}
    row, label_w, bar_w = 28, 120, width - 120 - 110  # room for "100% (n=999)" after a full bar
    height = row * len(rates) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="if-chart" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="instruction-following compliance">']
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        x = label_w + tick * bar_w
        parts.append(f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height - 22}" stroke="#e1e6ec"/>')
        parts.append(f'<text x="{x:.1f}" y="{height - 8}" font-size="11" text-anchor="middle" fill="#5a6573">'
                     f'{int(tick * 100)}%</text>')
    for i, (name, rate) in enumerate(rates.items()):
        y = i * row + 4
        colour = "#3c6e9f" if name != "overall" else "#1d2430"
        n = f" (n={counts[name]})" if name in counts else ""
        parts.append(f'<text x="{label_w - 8}" y="{y + 15}" font-size="12" text-anchor="end">{escape(name)}</text>')
        parts.append(f'<rect class="bar" data-constraint="{escape(name)}" x="{label_w}" y="{y}" '
                     f'width="{max(0.0, min(1.0, rate)) * bar_w:.1f}" height="{row - 8}" fill="{colour}"/>')
        parts.append(f'<text x="{label_w + max(0.0, min(1.0, rate)) * bar_w + 6:.1f}" y="{y + 15}" font-size="12">'
                     f'{rate * 100:.0f}%{escape(n)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _scores_table(results: dict) -> str:
    rows = []
    for task in results["tasks"]:
        s = task["summary"]
        scores = ", ".join(f"{k} {_fmt(v)}" for k, v in task["scores"].items() if k not in ("n", "tables"))
        warn = ' class="warn"' if s["skipped"] else ""
        rows.append(f"<tr{warn}><td>{escape(task['name'])}</td><td>{escape(task['kind'])}</td>"
                    f"<td class=num>{s['lines']}</td><td class=num>{s['loaded']}</td><td class=num>{s['skipped']}</td>"
                    f"<td class=num>{s['evaluated']}</td><td>{scores}</td></tr>")
    for probe in results.get("if_probe", []):
        rows.append(f"<tr><td>{escape(probe['name'])}</td><td>instruction following</td>"
                    f"<td class=num>-</td><td class=num>-</td><td class=num>-</td>"
                    f"<td class=num>{len(probe['records'])} prompts</td><td>overall compliance "
                    f"{_fmt(probe['rates'].get('overall'))}</td></tr>")
    total = results.get("summary", {})
    rows.append(f"<tr><th>total</th><th></th><th class=num>{total.get('lines', '')}</th>"
                f"<th class=num>{total.get('loaded', '')}</th><th class=num>{total.get('skipped', '')}</th>"
                f"<th class=num>{total.get('evaluated', '')}</th><th></th></tr>")
    return ("<table id=scores><tr><th>task</th><th>kind</th><th>lines</th><th>loaded</th><th>skipped</th>"
            "<th>evaluated</th><th>scores</th></tr>" + "".join(rows) + "</table>")


def _problems_table(results: dict) -> str:
    problems = results.get("problems", [])
    if not problems:
        return "<p>No bad lines.</p>"
    by_reason = results.get("summary", {}).get("skipped_by_reason", {})
    head = "<p>" + ", ".join(f"{escape(k)}: {v}" for k, v in by_reason.items()) + "</p>"
    rows = "".join(f"<tr><td>{escape(p['file'])}</td><td class=num>{p['line']}</td><td>{escape(p['reason'])}</td></tr>"
                   for p in problems)
    return head + f"<table id=problems><tr><th>file</th><th>line</th><th>reason</th></tr>{rows}</table>"


def _group_tables(task: dict) -> str:
    """The per-subject / per-category accuracy tables a benchmark kind reports."""
    parts = []
    for key, table in task["scores"].get("tables", {}).items():
        rows = "".join(f"<tr><td>{escape(name)}</td><td class=num>{row['n']}</td><td class=num>{_fmt(row['accuracy'])}"
                       f"</td></tr>" for name, row in table.items())
        parts.append(f"<h3>accuracy by {escape(key)}</h3><table class=groups data-by=\"{escape(key)}\"><tr>"
                     f"<th>{escape(key)}</th><th>n</th><th>accuracy</th></tr>{rows}</table>")
    return "".join(parts)


def _benchmark_rows(task: dict, cache: dict) -> str:
    rows = []
    if task["kind"] == "vistw_dialogue":
        head = "<th>image</th><th>id</th><th>question</th><th>ground truth</th><th>generation</th><th>judge score</th>"
        for r in task["records"]:
            rows.append(f"<tr><td>{_img(r['image'], cache)}</td><td>{escape(r['id'])}</td><td>{_pre(r['prompt'])}</td>"
                        f"<td>{_pre(r['ground_truth'])}</td><td>{_pre(r.get('generation'))}</td>"
                        f"<td class=num>{_fmt(r.get('judge_score'))}</td></tr>")
    else:
        head = "<th>image</th><th>id</th><th>prompt</th><th>answer</th><th>generation</th><th>extracted</th>"
        for r in task["records"]:
            rows.append(f"<tr><td>{_img(r['image'], cache)}</td><td>{escape(r['id'])}</td><td>{_pre(r['prompt'])}</td>"
                        f"<td>{escape(r['answer'])}</td><td>{_pre(r.get('generation'))}</td>"
                        f"<td>{_fmt(r.get('extracted'))} {_fmt(r['correct'])}</td></tr>")
    if not rows:
        return "<p>No items.</p>"
    return f"<table class=records><tr>{head}</tr>{''.join(rows)}</table>"


def _task_rows(task: dict, cache: dict) -> str:
    kind, rows = task["kind"], []
    if kind in BENCHMARK_KINDS:
        return _group_tables(task) + _benchmark_rows(task, cache)
    if kind == "mcq":
        head = "<th>image</th><th>id</th><th>prompt</th><th>answer</th><th>log-likelihood pick</th><th>generation</th><th>extracted</th>"
        for r in task["records"]:
            ll = (f"{escape(r['pred_loglik'])} {_fmt(r['correct_loglik'])}<br><small>{_fmt(r['loglik'])}</small>"
                  if "pred_loglik" in r else _fmt(None))
            ext = f"{_fmt(r.get('extracted'))} {_fmt(r['correct_generate'])}" if "generation" in r else _fmt(None)
            rows.append(f"<tr><td>{_img(r['image'], cache)}</td><td>{escape(r['id'])}</td><td>{_pre(r['prompt'])}</td>"
                        f"<td>{escape(r['answer'])}</td><td>{ll}</td><td>{_pre(r.get('generation'))}</td><td>{ext}</td></tr>")
    elif kind == "open_qa":
        head = "<th>image</th><th>id</th><th>prompt</th><th>answers</th><th>generation</th><th>exact</th><th>contains</th>"
        for r in task["records"]:
            rows.append(f"<tr><td>{_img(r['image'], cache)}</td><td>{escape(r['id'])}</td><td>{_pre(r['prompt'])}</td>"
                        f"<td>{_fmt(r['answers'])}</td><td>{_pre(r.get('generation'))}</td>"
                        f"<td>{_fmt(_flag(r.get('exact_match')))}</td><td>{_fmt(_flag(r.get('contains')))}</td></tr>")
    elif kind == "caption":
        head = "<th>image</th><th>id</th><th>prompt</th><th>references</th><th>generation</th><th>BLEU-4</th><th>CIDEr-D</th>"
        for r in task["records"]:
            refs = "<br>".join(escape(x) for x in r["references"])
            rows.append(f"<tr><td>{_img(r['image'], cache)}</td><td>{escape(r['id'])}</td><td>{_pre(r['prompt'])}</td>"
                        f"<td>{refs}</td><td>{_pre(r.get('generation'))}</td><td class=num>{_fmt(r.get('bleu4'))}</td>"
                        f"<td class=num>{_fmt(r.get('cider_d'))}</td></tr>")
    else:
        return "<p>No items.</p>"
    return f"<table class=records><tr>{head}</tr>{''.join(rows)}</table>"


def _flag(value):
    return None if value is None else bool(value)


def _if_section(probe: dict, cache: dict) -> str:
    rows = []
    for r in probe["records"]:
        extra = (f"<br>{_fmt(r['correct'])} correct" if "correct" in r
                 else f"<br>{_fmt(r['grounded'])} on topic" if "grounded" in r else "")
        rows.append(f"<tr><td>{_img(r.get('image'), cache)}</td><td>{escape(r['constraint'])}<br>"
                    f"<small>{escape(r['template'])}</small></td><td>{_pre(r['prompt'])}</td><td>{_pre(r['answer'])}</td>"
                    f"<td>{escape(r.get('language', ''))}</td><td>{_fmt(r['compliant'])}{extra}</td></tr>")
    yes_no = probe.get("yes_no_accuracy")
    return (f"<p class=meta>source: {escape(str(probe.get('source')))}; {probe.get('samples')} images, "
            f"{len(probe['records'])} prompts" + (f"; yes/no accuracy {yes_no:.3f}" if yes_no is not None else "")
            + "</p>" + bar_chart_svg(probe["rates"], probe.get("counts")) + _grounding_line(probe)
            + "<details><summary>prompts and answers</summary><table class=records><tr><th>image</th><th>constraint</th>"
            "<th>prompt</th><th>answer</th><th>language</th><th>compliant</th></tr>" + "".join(rows) + "</table></details>")


def _grounding_line(probe: dict) -> str:
    rates = probe.get("grounded_rates") or {}
    if not rates:
        return ""
    return ("<p class=meta>Compliance is about form only. Answers that name the image's true colour, object or "
            "position (yes/no: answered correctly): " + ", ".join(f"{escape(k)} {v * 100:.0f}%" for k, v in rates.items())
            + "</p>")


def render_report(results: dict) -> str:
    cache: dict = {}
    meta = results.get("meta", {})
    meta_line = " · ".join(f"{escape(str(k))}: {escape(str(v))}" for k, v in meta.items() if v is not None)
    body = [f"<h1>nemo_twvlm evaluation</h1><p class=meta>{meta_line}</p>",
            "<h2>Scores</h2>", _scores_table(results)]
    for probe in results.get("if_probe", []):
        body += ["<h2>Instruction following: compliance per constraint</h2>", _if_section(probe, cache)]
    body += ["<h2>Skipped lines</h2>", _problems_table(results)]
    for task in results["tasks"]:
        body += [f"<h2>{escape(task['name'])} <small class=meta>({escape(task['kind'])}, {escape(task['path'])})</small></h2>",
                 _task_rows(task, cache)]
    return ("<!DOCTYPE html><html lang=zh-Hant><head><meta charset=utf-8><title>nemo_twvlm evaluation</title>"
            f"<style>{_CSS}</style></head><body>" + "\n".join(body) + "</body></html>\n")


def write_report(results: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(results), encoding="utf-8")
    return path


if __name__ == "__main__":
    source = Path(sys.argv[1])
    print(write_report(json.loads(source.read_text(encoding="utf-8")), source.with_name("report.html")))
