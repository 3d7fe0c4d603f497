"""The curation planner: per-stage costs worked by hand from the measured constants, linear in samples
where the work is per sample, memory per node falling with nodes for the sharded dedup, named errors."""
from __future__ import annotations

import pytest

from nemo_twvlm.curation.cli import compose_config
from nemo_twvlm.curation.config import TAR_FORMATS
from nemo_twvlm.curation.plan import format_curation_plan, plan_curation
from nemo_twvlm.curation.readers import READERS


@pytest.fixture
def cfg():
    return compose_config("pairs_zh_tw", [], check=False)


def _plan(cfg, **changes):
    args = {"samples": 1_000_000, "nodes": 1, "cores_per_node": 10, "image_px": 256, "images_per_sample": 1.0}
    return plan_curation(cfg, **(args | changes))


def _stage(plan, name):
    (stage,) = [s for s in plan.stages if s.name.startswith(name)]
    return stage


def test_single_process_plan_by_hand(cfg):
    cfg.dedup.caption_jaccard = None
    plan = _plan(cfg)
    # 10^6 samples at 256 px: the floor 3034 samples/s, the pipeline 1608/s per core (BENCHMARKS.md 5).
    assert _stage(plan, "read").cpu_s == pytest.approx(1e6 / 3034)          # 329.6 core-s
    assert _stage(plan, "read").wall_s == pytest.approx(1e6 / 3034 / 10)
    assert _stage(plan, "filters").cpu_s == pytest.approx(1e6 / 1608 - 1e6 / 3034)  # 292.3 core-s
    # 227 us per decision at 10^6 codes; its probes over the node's 10 threads, 8% of it serial.
    image = _stage(plan, "dedup: image")
    assert image.cpu_s == pytest.approx(227)
    assert image.wall_s == pytest.approx(227 * (0.08 + 0.92 / 10))  # 39.0 s
    assert [s.name for s in plan.stages if s.name.startswith("dedup")] == ["dedup: image search (1 node)"]
    # 285 B of signatures (153 MB at 10^5 less the caption index then) + 144 B of image index per sample,
    # + the index's two 512 MiB bitmaps, in a worker process of 858 MiB before any of it.
    index = 1e6 * (1530 - 6.10e9 / 4.9e6 + 0.577e9 / 4e6) + 2**30
    assert index == pytest.approx(1503.3e6, rel=1e-3)
    assert plan.dedup_memory_per_node == pytest.approx(index + 858 * 2**20)
    # 256 px JPEG q90: 19,641 B + 2,604 B of tar headers, padding, caption and metadata.
    assert plan.shard_bytes == pytest.approx(1e6 * (19_641 + 2_604))
    # The part tables: 253 B of row per sample.
    assert plan.work_bytes == pytest.approx(1e6 * 253)  # tar input shipped as read: no image in them
    # Each of 10 workers: 858 MiB of its own less the 318 MiB of libraries all of them map (counted once),
    # and one task of 256 images of 256 x 256 px at 5.07 B a pixel (bench_curation_memory.py); Ray's
    # own processes 820 MiB.
    task = 256 * 256 * 256 * 5.07
    assert plan.pipeline_memory_per_node == pytest.approx(10 * ((858 - 318) * 2**20 + task) + (318 + 820) * 2**20)
    assert plan.pipeline_memory_per_node / 2**30 == pytest.approx(7.18, abs=0.01)


def test_a_row_reader_task_is_charged_when_it_outweighs_a_part_of_images(cfg):
    """LAION parquet: 100,000 rows a task, in whole parts of 256: 100,096 rows of 1,728 B + 5 B per caption
    character (45.5) is 186.7 MiB, over a part's 256 decoded 256 px images (81.1 MiB)."""
    laion = compose_config("pairs_laion", [], check=False)
    plan = _plan(laion)
    assert plan.reader_task_bytes == pytest.approx(100_096 * (1728 + 5.0 * 45.5))
    assert plan.image_task_bytes == pytest.approx(256 * 256 * 256 * 5.07)
    tar = _plan(cfg)
    assert tar.reader_task_bytes == 0 and tar.image_task_bytes == plan.image_task_bytes
    extra = 10 * (plan.reader_task_bytes - plan.image_task_bytes)  # each of the 10 workers
    assert plan.pipeline_memory_per_node - tar.pipeline_memory_per_node == pytest.approx(extra)
    assert "186.7 MiB of rows a reader task" in format_curation_plan(plan)
    # At 1024 px a part's images outweigh the rows again, and the charge is theirs.
    big = _plan(laion, image_px=1024)
    assert big.image_task_bytes > big.reader_task_bytes
    assert big.pipeline_memory_per_node == pytest.approx(_plan(cfg, image_px=1024).pipeline_memory_per_node)
    # A document's row grows with its text: OBELICS at 3,000 characters, 10,048 rows (157 parts of 64) a task.
    docs = _plan(compose_config("interleaved_obelics", [], check=False), images_per_sample=3.0, text_chars=3000)
    assert docs.reader_task_bytes == pytest.approx(10_048 * (2851 + 5.88 * 3000))


def test_finalize_is_energons_index_on_one_node_by_hand(cfg):
    """10^6 pairs (3 tar members each) on a node of 10 cores: header reading 0.0135 + 3 x 0.0256 ms a sample
    spread over 10 processes is 0.0090 ms, under the one index writer's 0.0028 + 3 x 0.0022 = 0.0094 ms;
    0.0015 ms of markers and stats after (BENCHMARKS.md 5c)."""
    finalize = _stage(_plan(cfg), "finalize")
    assert finalize.cpu_s == pytest.approx(1e6 * (0.0903 + 0.0094 + 0.0015) / 1e3)  # 101.2 core-s
    assert finalize.wall_s == pytest.approx(1e6 * (0.0094 + 0.0015) / 1e3)          # 10.9 s
    assert "bound by the index writer" in finalize.note
    assert _plan(cfg).index_bytes == pytest.approx(1e6 * 263)
    # On 2 cores the header readers bound it; a document of 3 images is 4 members (its json + 3 images).
    assert _stage(_plan(cfg, cores_per_node=2), "finalize").wall_s == pytest.approx(1e6 * (0.0903 / 2 + 0.0015) / 1e3)
    docs = _stage(_plan(compose_config("interleaved_zh_tw", [], check=False), images_per_sample=3.0), "finalize")
    assert docs.cpu_s == pytest.approx(1e6 * (0.0135 + 4 * 0.0256 + 0.0028 + 4 * 0.0022 + 0.0015) / 1e3)


def test_part_tables_hold_images_only_when_not_shipped_from_a_tar(cfg):
    resized = _plan(cfg, image_px=1024)  # shipped at 672 px: re-encoded, so the table holds it
    assert resized.work_bytes == pytest.approx(1e6 * (253 + 74_600))
    cfg.input.format = "table"  # downloaded images have no input tar to refer to
    assert _plan(cfg).work_bytes == pytest.approx(1e6 * (253 + 19_641))
    assert set(TAR_FORMATS) == {name for name, fmt in READERS.items() if fmt.extensions == (".tar",)}


def test_image_side_is_linear_in_pixels_between_measured_sides(cfg):
    plan = _plan(cfg, image_px=384)  # 384^2 is 5/12 of the way from 256^2 to 512^2
    per_ms = 1e3 / 3034 + 5 / 12 * (1e3 / 1026 - 1e3 / 3034)
    assert _stage(plan, "read").cpu_s == pytest.approx(1e6 * per_ms / 1e3)
    assert per_ms == pytest.approx(0.59837, rel=1e-4)
    assert _plan(cfg, image_px=1024).shipped_px == 672  # resize.max_side


def test_per_sample_work_is_linear_in_samples_and_the_index_is_not(cfg):
    one, two = _plan(cfg, samples=1_000_000), _plan(cfg, samples=2_000_000)
    for name in ("read", "filters"):
        assert _stage(two, name).cpu_s == pytest.approx(2 * _stage(one, name).cpu_s)
    assert two.shard_bytes == pytest.approx(2 * one.shard_bytes)
    # The indexes' bitmaps are fixed; what grows is signatures (285 B) + image (144 B) + caption (861 B) per sample.
    assert two.dedup_memory_per_node - one.dedup_memory_per_node == pytest.approx(1e6 * (285.1 + 144.25 + 861), rel=1e-3)
    # A decision costs slightly more in a larger index: 227 us at 10^6, 227 * 2^0.0575 = 236.3 at 2*10^6
    # (log-log to 249 at 5*10^6).
    assert _stage(two, "dedup: image").cpu_s / _stage(one, "dedup: image").cpu_s == pytest.approx(2.081, rel=1e-3)
    # Captions: 38.5 us at 10^6, 38.5 * 2^0.0629 = 40.2 at 2*10^6 (log-log to 42.6 at 5*10^6).
    caption = _stage(two, "dedup: caption").cpu_s / _stage(one, "dedup: caption").cpu_s
    assert caption == pytest.approx(2 * 40.2 / 38.5, rel=1e-3)


def test_text_beyond_the_captions_is_charged_per_character(cfg):
    base = _plan(cfg, images_per_sample=2.0)
    docs = _plan(cfg, images_per_sample=2.0, text_chars=2000)
    # Two images bring two 45.5-character captions, whose cost the per-image figures hold; the other 1,909
    # characters cost 2.28 us of CPU, 3.02 B of shard and 1.35 B of part table each (bench_curation_text.py).
    text = _stage(docs, "text beyond captions")
    assert text.cpu_s == pytest.approx(1e6 * 1909 * 2.28e-6)  # 4,352.5 core-s
    assert text.wall_s == pytest.approx(text.cpu_s / 10)
    assert docs.cpu_s - base.cpu_s == pytest.approx(text.cpu_s)
    assert docs.shard_bytes - base.shard_bytes == pytest.approx(1e6 * 1909 * 3.02)
    assert docs.work_bytes - base.work_bytes == pytest.approx(1e6 * 1909 * 1.35)
    assert "2,000 chars of text per sample" in format_curation_plan(docs)
    # Text no longer than the captions adds nothing.
    short = _plan(cfg, images_per_sample=2.0, text_chars=80)
    assert short.stages == base.stages and short.shard_bytes == base.shard_bytes
    assert base.text_chars == 91 and short.text_chars == 80


def test_sharded_dedup_memory_per_node_falls_with_nodes(cfg):
    cfg.dedup.shards = 64
    plans = {nodes: _plan(cfg, samples=50_000_000, nodes=nodes, cores_per_node=32) for nodes in (1, 4, 16)}
    memory = {nodes: p.dedup_memory_per_node for nodes, p in plans.items()}
    # Shards a node runs at once: min(64 / nodes, 32) = 32, 16, 4; each holds 1/64 of 13 rows (exact,
    # 8 pHash bands, 4 MinHash bands) of 704 B per sample, in a process of its own (858 MiB, of which the
    # node holds the 318 MiB of libraries once).
    rows = {nodes: memory[nodes] - (at_once * (858 - 318) + 318) * 2**20
            for nodes, at_once in ((1, 32), (4, 16), (16, 4))}
    assert rows[16] == pytest.approx(4 * 5e7 * 13 * 704 / 64)
    assert rows[1] == pytest.approx(2 * rows[4]) and rows[4] == pytest.approx(4 * rows[16])
    single = plan_curation(compose_config("pairs_zh_tw", [], check=False), samples=50_000_000, nodes=16,
                           cores_per_node=32, image_px=256, images_per_sample=1.0)
    assert memory[16] < single.dedup_memory_per_node / 2
    assert _stage(plans[16], "read").wall_s == pytest.approx(_stage(plans[1], "read").wall_s / 16)


def test_table_names_every_stage_and_the_verdict(cfg):
    text = format_curation_plan(_plan(cfg, memory_per_node=2**30))
    assert "1,000,000 pairs samples of 256 px images, shipped at 256 px" in text
    assert "1 node x 10 cores, 1.0 GiB per node" in text
    assert "dedup: caption search (1 core)" in text and "shards 20.7 GiB + Energon index 250.8 MiB" in text
    assert "finalize: Energon index + stats (1 node)" in text
    assert "DOES NOT FIT: raise dedup.shards or nodes" in text


@pytest.mark.parametrize("change, match", [
    ({"image_px": 2000}, "image_px=2000: per-sample costs were measured from 256 to 1024 px"),
    ({"samples": 0}, "samples=0"),
    ({"cores_per_node": 2.5}, "cores_per_node=2.5"),
    ({"memory_per_node": -1}, "memory_per_node=-1"),
    ({"text_chars": -1}, "text_chars=-1: expected characters of text per sample"),
])
def test_bad_arguments_are_named(cfg, change, match):
    with pytest.raises(ValueError, match=match):
        _plan(cfg, **change)


def test_unmeasured_output_settings_are_named(cfg):
    cfg.resize.quality = 80
    with pytest.raises(ValueError, match="resize.quality=80"):
        _plan(cfg)
    cfg.resize.quality, cfg.resize.max_side = 90, 512
    with pytest.raises(ValueError, match="resize.max_side=512: with image_px=1024 it ships 512 px"):
        _plan(cfg, image_px=1024)
