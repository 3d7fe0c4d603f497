"""The tasks stages pass along stay cheap to describe: Ray Data repr()s each stage's output while
trying it as an Arrow column, so a repr that spells out a part's image bytes costs a worker their
size several times over in text (BENCHMARKS.md 5c)."""
import os
import tracemalloc

import pytest

from nemo_twvlm.curation.sample import (
    DedupShard,
    ImageItem,
    Sample,
    SampleBatch,
    ShardCandidates,
    SignatureBatch,
    SourceDecision,
)

IMAGE_BYTES = 64 * 1024


def part_of_images(samples: int) -> SampleBatch:
    batch = SampleBatch("pairs", source="web", part=3, num_parts=8)
    for i in range(samples):
        data = os.urandom(IMAGE_BYTES)
        batch.data.append(Sample(f"s{i:05d}", i, [ImageItem("jpg", data=data), "台北的夜市"],
                                 raw={"jpg": data, "txt": "台北的夜市".encode()}))
    return batch


@pytest.mark.parametrize("task", [
    part_of_images(16),
    SignatureBatch("pairs", {"index": list(range(10_000)), "minhash": [os.urandom(512)] * 10_000}),
    SourceDecision("pairs", {i: ("near_duplicate_image", f"of s{i:07d}") for i in range(10_000)}),
    DedupShard("pairs", [("web", p, 10_000) for p in range(10_000)]),
    ShardCandidates("pairs", os.urandom(IMAGE_BYTES), [("web", p, 10_000) for p in range(10_000)]),
], ids=lambda task: type(task).__name__)
def test_a_task_repr_is_one_short_line_whatever_it_carries(task):
    text = repr(task)
    assert text.startswith(type(task).__name__ + "(") and "\n" not in text
    assert len(text) < 200


def test_ray_data_block_of_a_part_costs_no_text_copy_of_its_images():
    from ray.data.block import BlockAccessor

    batch = part_of_images(64)
    payload = 64 * IMAGE_BYTES
    tracemalloc.start()
    try:
        block = BlockAccessor.batch_to_block({"item": [batch]})  # what Ray Data does with a stage's output
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # The pickle Ray falls back to holds the payload once or twice; a dataclass repr held it ~18 times.
    assert peak < 5 * payload, f"{peak / payload:.1f}x the images' bytes"
    (back,) = BlockAccessor.for_block(block).to_pandas()["item"]
    assert [s.images[0].data for s in back.data] == [s.images[0].data for s in batch.data]
    assert (back.source, back.part, back.num_parts) == ("web", 3, 8)
