"""OUT/report.html: one self-contained page (inline SVG charts, thumbnails as data: URIs) that opens
offline: counts per stage and reason, histograms, language and script split, a grid of kept
samples and one of rejected samples with their reasons."""
from __future__ import annotations

import base64
import html
import io
import json
from itertools import islice
from pathlib import Path

from nemo_twvlm.curation.histograms import HISTOGRAMS, INF
from nemo_twvlm.curation.sample import Reject
from nemo_twvlm.curation.storage import atomic_write, iter_tar_groups, read_json

_TITLES = {"image_side": "Image size (longer side, px)", "aspect": "Aspect ratio (w/h)",
           "text_chars": "Text length (characters)", "tokens": "Tokens per sample (text + image)"}
_IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
# Sample meta the optional model stages add, shown under each kept sample.
_SCORES = (("clip_score", "clip"), ("aesthetic_score", "aesthetic"), ("nsfw_score", "nsfw"))


def _bin_label(lo: float, hi: float) -> str:
    fmt = lambda x: f"{x:g}"  # noqa: E731
    return f"≥ {fmt(lo)}" if hi == INF else f"{fmt(lo)}–{fmt(hi)}"


def svg_bars(labels: list[str], values: list[float], *, color: str = "#3b7dd8", width: int = 420) -> str:
    """A horizontal bar chart, one row per label."""
    row, label_w, pad = 18, 120, 4
    top = max(values, default=0) or 1
    height = row * len(labels) + pad
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">']
    for i, (label, value) in enumerate(zip(labels, values)):
        y = pad + i * row
        w = (width - label_w - 60) * value / top
        out.append(f'<text x="{label_w - 6}" y="{y + 12}" text-anchor="end" font-size="11">{html.escape(label)}</text>'
                   f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{row - 5}" fill="{color}"/>'
                   f'<text x="{label_w + w + 4:.1f}" y="{y + 12}" font-size="11">{value:g}</text>')
    out.append("</svg>")
    return "".join(out)


def _thumb(data: bytes, px: int, max_pixels: int) -> str | None:
    """A JPEG data: URI, or None for bytes that are not a safe, decodable image (bombs included)."""
    from nemo_twvlm.curation.stages.io.decode_verify import decode
    from nemo_twvlm.data.image import normalise_image

    try:
        img = normalise_image(decode(data, formats=list(_IMAGE_EXTS), max_pixels=max_pixels, keep_side=px)[0])[0]
    except Reject:
        return None
    img.thumbnail((px, px))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _image_part(parts: dict[str, bytes]) -> bytes | None:
    for name in sorted(parts):
        if name.rsplit(".", 1)[-1] in _IMAGE_EXTS:
            return parts[name]
    return None


def _text_of(parts: dict[str, bytes]) -> str:
    if "txt" in parts:
        return parts["txt"].decode("utf-8", errors="replace")
    for name in ("json", "row.json", "doc.json"):
        if name in parts:
            try:
                doc = json.loads(parts[name].decode("utf-8", errors="replace"))
            except json.JSONDecodeError:
                return parts[name][:200].decode("utf-8", errors="replace")
            if isinstance(doc, dict):
                if isinstance(doc.get("caption"), str):
                    return doc["caption"]
                texts = [s for s in doc.get("segments") or [] if isinstance(s, str)]
                turns = doc.get("conversations") or doc.get("messages") or []  # as read, or as curated
                texts += [str(t.get("content", t.get("value", ""))) for t in turns if isinstance(t, dict)]
                return " ".join(texts)
    return ""


def kept_examples(out: Path, n: int, px: int, max_pixels: int) -> list[dict]:
    manifest = read_json(out / "manifest.json")["shards"]
    examples: list[dict] = []
    for shard in manifest:
        for key, parts in islice(iter_tar_groups(out / "shards" / shard["name"]), n - len(examples)):
            doc = json.loads(parts["json"])
            meta = doc.get("meta", doc)  # documents keep theirs beside the segments
            image = _image_part(parts)
            scores = [f"{label} {meta[name]:g}" for name, label in _SCORES if name in meta]
            examples.append({"key": key, "img": _thumb(image, px, max_pixels) if image else None,
                             "text": _text_of(parts),
                             "note": " · ".join([str(meta.get("lang")), meta.get("script") or "", *scores])})
        if len(examples) >= n:
            break
    return examples


def rejected_examples(out: Path, n: int, px: int, max_pixels: int) -> list[dict]:
    """Up to n rejected samples, taken round-robin over reasons so rare reasons show too. The index is
    read a line at a time and each quarantine tar once, keeping only the chosen members: at 5*10^7
    samples the index alone is gigabytes, and a source's dedup tar can hold thousands of images."""
    by_reason: dict[str, list[dict]] = {}
    with open(out / "quarantine" / "index.jsonl", encoding="utf-8") as index:
        for line in index:
            entry = json.loads(line)
            picks = by_reason.setdefault(entry["reason"], [])
            if len(picks) < n:
                picks.append(entry)
    chosen: list[dict] = []
    while len(chosen) < n and any(by_reason.values()):
        for reason in sorted(by_reason):
            if by_reason[reason] and len(chosen) < n:
                chosen.append(by_reason[reason].pop(0))
    wanted: dict[str, set[str]] = {}
    for entry in chosen:
        if entry["tar"]:
            wanted.setdefault(entry["tar"], set()).add(entry["member"])
    found: dict[tuple[str, str], dict[str, bytes]] = {}
    for tar, members in wanted.items():
        left = set(members)
        for member, parts in iter_tar_groups(out / tar):
            if member in left:
                found[tar, member] = parts
                left.discard(member)
                if not left:
                    break
    examples = []
    for entry in chosen:
        parts = found.get((entry["tar"], entry["member"]), {}) if entry["tar"] else {}
        image = _image_part(parts)
        examples.append({"key": f"{entry['source']}/{entry['key']}", "text": _text_of(parts),
                         "img": _thumb(image, px, max_pixels) if image else None,
                         "note": f"{entry['reason']} ({entry['disposition']})", "detail": entry["detail"]})
    return examples


def _grid(examples: list[dict]) -> str:
    cells = []
    for ex in examples:
        img = (f'<img src="{ex["img"]}" alt="{html.escape(ex["key"])}">' if ex["img"]
               else '<div class="noimg">no image</div>')
        detail = f'<div class="detail">{html.escape(ex.get("detail", "")[:160])}</div>' if ex.get("detail") else ""
        cells.append(f'<figure>{img}<figcaption><b>{html.escape(ex["note"])}</b><br>'
                     f'{html.escape(ex["text"][:80])}{detail}<div class="key">{html.escape(ex["key"])}</div>'
                     f'</figcaption></figure>')
    return f'<div class="grid">{"".join(cells)}</div>' if cells else "<p>none</p>"


_STYLE = """
body{font-family:system-ui,"Noto Sans CJK TC",sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}
th{background:#f3f3f3}td.n{text-align:right}.charts{display:flex;flex-wrap:wrap;gap:24px}
.grid{display:flex;flex-wrap:wrap;gap:10px}figure{margin:0;width:150px;font-size:11px}
figure img,.noimg{width:140px;height:140px;object-fit:contain;background:#eee;display:block}
.noimg{display:flex;align-items:center;justify-content:center;color:#888}
.detail{color:#a33}.key{color:#888;word-break:break-all}
"""
# Counts the images that decoded, so a headless browser's DOM dump can prove the page shows them.
_SCRIPT = """
window.addEventListener("load", () => {
  const imgs = [...document.images];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.imagesLoaded = ok + "/" + imgs.length;
});
"""


def render(stats: dict, kept: list[dict], rejected: list[dict], *, title: str, wall_s: float | None) -> str:
    dropped, quarantined = stats["dropped"], stats["quarantined"]
    summary = [("input", stats["input"]), ("kept", stats["kept"]), ("dropped", sum(dropped.values())),
               ("quarantined", sum(quarantined.values())), ("text tokens", stats["text_tokens"]),
               ("image tokens", stats["image_tokens"]), ("shards", stats["shards"])]
    if stats["budget"]["tokens"]:
        summary.append(("token budget used", f"{stats['budget']['used']} / {stats['budget']['tokens']}"))
    if wall_s is not None:
        summary.append(("wall time (s)", f"{wall_s:.1f}"))
    summary_rows = "".join(f"<tr><th>{k}</th><td class=n>{v}</td></tr>" for k, v in summary)
    stage_rows = "".join(
        f"<tr><td>{html.escape(s['stage'])}</td><td class=n>{s['in']}</td><td class=n>{s['out']}</td>"
        f"<td>{html.escape(', '.join(f'{r}: {n}' for r, n in sorted(s['rejected'].items())))}"
        f"{html.escape(' · converted ' + json.dumps(s['converted'])) if s.get('converted') else ''}"
        f"{html.escape(' · noted ' + json.dumps(s['notes'])) if s.get('notes') else ''}</td></tr>"
        for s in stats["stages"])
    reason_rows = "".join(f"<tr><td>{html.escape(r)}</td><td>{d}</td><td class=n>{n}</td></tr>"
                          for d, table in (("dropped", dropped), ("quarantined", quarantined))
                          for r, n in sorted(table.items(), key=lambda kv: -kv[1]))
    charts = []
    for name, edges in HISTOGRAMS.items():
        counts = stats["histograms"].get(name, [0] * (len(edges) - 1))
        labels = [_bin_label(lo, hi) for lo, hi in zip(edges, edges[1:])]
        charts.append(f"<div><h3>{_TITLES[name]}</h3>{svg_bars(labels, counts)}</div>")
    for name, color in (("lang", "#d8843b"), ("script", "#3bb08f")):
        split = stats[name]
        charts.append(f"<div><h3>{'Language' if name == 'lang' else 'Script (zh)'} of kept samples</h3>"
                      f"{svg_bars([str(k) for k in split], list(split.values()), color=color)}</div>")
    return f"""<!doctype html>
<html lang="zh-Hant"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_STYLE}</style><script>{_SCRIPT}</script></head><body>
<h1>{html.escape(title)}</h1>
<p>input = kept + dropped + quarantined: {stats['input']} = {stats['kept']} + {sum(dropped.values())} + \
{sum(quarantined.values())}</p>
<table>{summary_rows}</table>
<h2>Stages</h2>
<table><tr><th>stage</th><th>in</th><th>out</th><th>rejected</th></tr>{stage_rows}</table>
<h2>Reasons</h2><table><tr><th>reason</th><th>disposition</th><th>samples</th></tr>{reason_rows}</table>
<h2>Distributions</h2><div class="charts">{''.join(charts)}</div>
<h2>Kept samples</h2>{_grid(kept)}
<h2>Rejected samples</h2>{_grid(rejected)}
</body></html>
"""


def write_report(out: Path, stats: dict, cfg, *, wall_s: float | None = None) -> Path:
    grid, px, max_pixels = cfg.report.grid, cfg.report.thumb_px, cfg.image.max_pixels
    kept = kept_examples(out, grid, px, max_pixels)
    rejected = rejected_examples(out, grid, px, max_pixels)
    page = render(stats, kept, rejected, title=f"Curation report: {Path(cfg.input_dir).name} ({cfg.kind})",
                  wall_s=wall_s)
    path = out / "report.html"
    atomic_write(path, page.encode("utf-8"))
    return path
