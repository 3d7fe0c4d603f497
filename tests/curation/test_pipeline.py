"""The pairs pipeline end to end: a real Curator Pipeline, Energon-loadable shards whose manifest
checksums hold, token accounting with the project tokenizer, the budget, and config errors."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from curation_inputs import REPO, assert_contract, curate, good_pairs, merged, write_tar, yaml_config

from nemo_twvlm.curation.config import CurationConfig
from nemo_twvlm.presets import PRESETS

N = 24


@pytest.fixture(scope="module")
def curated(tmp_path_factory, langid_model):
    rng = np.random.default_rng(7)
    src = tmp_path_factory.mktemp("pairs_in")
    samples = good_pairs(rng, N)
    write_tar(src / "shard-0.tar", samples[: N // 2])
    write_tar(src / "shard-1.tar", samples[N // 2:])
    out = tmp_path_factory.mktemp("pairs_out")
    stats = curate(src, out, "shards.samples_per_shard=5", "input.batch_samples=7")
    return stats, out, {key: parts["txt"].decode() for key, parts in samples}


def test_every_good_sample_kept(curated):
    stats, out, _ = curated
    assert stats["kept"] == N and stats["input"] == N
    assert assert_contract(out) == stats


def test_manifest_checksums(curated):
    _, out, _ = curated
    manifest = json.loads((out / "manifest.json").read_text())["shards"]
    assert [s["name"] for s in manifest] == sorted(p.name for p in (out / "shards").glob("*.tar"))
    for shard in manifest:
        data = (out / "shards" / shard["name"]).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (shard["bytes"], shard["sha256"])
    assert all(s["samples"] <= 5 for s in manifest)


def test_token_accounting(curated, tokenizer):
    stats, _, captions = curated
    expected = sum(len(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in captions.values())
    assert stats["text_tokens"] == expected
    assert stats["image_tokens"] == N * PRESETS["debug"].num_image_tokens


def test_energon_loads_the_shards(curated):
    from megatron.energon import WorkerConfig, get_loader, get_train_dataset

    _, out, captions = curated
    ds = get_train_dataset(str(out / "shards"), batch_size=None, shuffle_buffer_size=None,
                           max_samples_per_sequence=None, repeat=False,
                           worker_config=WorkerConfig(rank=0, world_size=1, num_workers=0))
    seen = [sample.caption for sample in get_loader(ds)]
    assert sorted(seen) == sorted(captions.values())


def test_pipeline_is_curator_stages(langid_model, tmp_path):
    from nemo_curator.stages.base import ProcessingStage

    from nemo_twvlm.curation.pipeline import build_pipeline

    cfg = CurationConfig.from_dict(merged(yaml_config().to_dict(), {"input_dir": str(tmp_path), "output_dir": str(tmp_path / "out"),
                                                                "lang": {"model_path": str(langid_model)}}))
    pipeline = build_pipeline(cfg)
    assert all(isinstance(s, ProcessingStage) for s in pipeline.stages)
    assert [s.name for s in pipeline.stages] == ["file_partitioning", "read", "analyse_part", "checkpoint", "dedup",
                                                 "write_shards"]
    assert [s.name for s in pipeline.stages[2].stages] == [
        "decode_verify", "clean_text", "language_id", "script_zh", "quality_zh", "resize", "signatures", "token_count"]
    assert "Stage 5: dedup" in pipeline.describe()


def test_token_budget_keeps_input_order(tmp_path, langid_model):
    rng = np.random.default_rng(3)
    write_tar(tmp_path / "in" / "0.tar", good_pairs(rng, 8))
    full = curate(tmp_path / "in", tmp_path / "full")
    budget = (full["text_tokens"] + full["image_tokens"]) // 2
    stats = curate(tmp_path / "in", tmp_path / "half", f"tokens.budget={budget}")
    assert stats["text_tokens"] + stats["image_tokens"] <= budget
    assert stats["kept"] + stats["dropped"]["over_token_budget"] == 8
    assert_contract(tmp_path / "half")


@pytest.mark.parametrize("override, message", [
    ({"kind": "video"}, "kind='video' is not supported"),
    ({"script": {"simplified": "keep"}}, "script.simplified='keep'"),
    ({"dedup": {"image_hamming": 9}}, "dedup.image_hamming=9"),
    ({"dedup": {"typo": 1}}, "dedup.typo"),
    ({"executor": {"name": "spark"}}, "executor.name='spark'"),
    ({"input": {"format": "mmc4"}}, "input.format='mmc4' feeds kind interleaved, not kind='pairs'"),
    ({"input": {"max_schema_mismatch": 0}}, "input.max_schema_mismatch=0 must be in (0, 1]"),
])
def test_config_errors_name_the_field(override, message):
    base = merged(yaml_config().to_dict(), {"input_dir": "in", "output_dir": "out", "lang": {"model_path": "lid.176.ftz"}})
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        CurationConfig.from_dict(merged(base, override))


def test_hydra_configs_compose():
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(REPO / "conf" / "curation"), version_base="1.3"):
        for name in sorted(p.stem for p in (REPO / "conf" / "curation").glob("*.yaml")):
            cfg = compose(config_name=name, overrides=["input_dir=a", "output_dir=b"])
            CurationConfig.from_dict(OmegaConf.to_container(cfg, resolve=True))


def test_every_input_format_has_a_reader():
    from nemo_twvlm.curation.config import INPUT_FORMATS
    from nemo_twvlm.curation.readers import READERS

    assert READERS.keys() == INPUT_FORMATS.keys()
