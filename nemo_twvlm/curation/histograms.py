"""The fixed histogram bins of stats.json (and report.html): fixed, so per-source counts written by
the shard writer add up without a second pass over the data."""
from __future__ import annotations

import math

INF = math.inf
HISTOGRAMS: dict[str, list[float]] = {
    "image_side": [0, 64, 128, 256, 384, 512, 768, 1024, 2048, 4096, INF],   # longer side, px, as read
    "aspect": [0, 0.33, 0.5, 0.67, 0.8, 0.95, 1.05, 1.25, 1.5, 2, 3, INF],  # width / height
    "text_chars": [0, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, INF],       # after cleaning
    "tokens": [0, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, INF],  # text + image, per sample
}


def histogram(values: list[float], edges: list[float]) -> list[int]:
    counts = [0] * (len(edges) - 1)
    for v in values:
        for i in range(len(edges) - 1):
            if edges[i] <= v < edges[i + 1]:
                counts[i] += 1
                break
    return counts
