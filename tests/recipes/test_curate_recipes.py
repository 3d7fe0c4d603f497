"""Every curation recipe builds offline into a config that passes its checks once input_dir and
output_dir are given; the bases are the Hydra YAMLs as they are, the cluster variants change only
the executor, the part size and the token accounting."""
import dataclasses

import pytest

from nemo_twvlm.curation.cli import compose_config
from nemo_twvlm.curation.config import CurationConfig
from nemo_twvlm.presets import PRESETS
from nemo_twvlm.launch.recipes import find_recipes, get_recipe

CURATE_RECIPES = find_recipes("curate")

NAMES = sorted(CURATE_RECIPES)


@pytest.mark.parametrize("name", NAMES)
def test_recipe_builds_a_config_that_checks_once_given_its_dirs(name):
    cfg = CURATE_RECIPES[name]()
    assert isinstance(cfg, CurationConfig)
    assert name.startswith(f"curate_{cfg.kind}_")
    assert (cfg.input_dir, cfg.output_dir) == ("", "")  # given at launch
    with pytest.raises(ValueError, match="input_dir is empty"):
        cfg.check()
    dataclasses.replace(cfg, input_dir="in", output_dir="out").check()
    assert cfg.tokens.preset in PRESETS


@pytest.mark.parametrize("name, yaml", [("curate_pairs_zh_tw", "pairs_zh_tw"),
                                        ("curate_interleaved_zh_tw", "interleaved_zh_tw"),
                                        ("curate_conversations_zh_tw", "conversations_zh_tw")])
def test_base_recipe_is_its_yaml(name, yaml):
    assert CURATE_RECIPES[name]() == compose_config(yaml, [], check=False)


@pytest.mark.parametrize("base", ["curate_pairs_zh_tw", "curate_interleaved_zh_tw", "curate_conversations_zh_tw"])
def test_cluster_variant_changes_executor_parts_and_tokens_only(base):
    cluster, plain = CURATE_RECIPES[f"{base}_cluster"](), CURATE_RECIPES[base]()
    cpt = get_recipe("twvlm_70b_cpt")
    assert cluster.executor.name == "xenna"
    assert cluster.input.batch_samples == 4 * plain.input.batch_samples
    # The CPT stage's tokenizer is the one its chain starts from: the import's (data.tokenizer unset).
    assert cpt.data.tokenizer == ""
    starts_from = f"{get_recipe('twvlm_70b_align').model.init_from}/tokenizer"
    assert (cluster.tokens.tokenizer, cluster.tokens.preset) == (starts_from, cpt.model.preset)
    same = dataclasses.replace(
        cluster, executor=plain.executor,
        input=dataclasses.replace(cluster.input, batch_samples=plain.input.batch_samples),
        tokens=dataclasses.replace(cluster.tokens, tokenizer=plain.tokens.tokenizer, preset=plain.tokens.preset))
    assert same == plain


def test_each_call_returns_a_fresh_config():
    first = CURATE_RECIPES["curate_pairs_zh_tw"]()
    first.shards.samples_per_shard = 1
    assert CURATE_RECIPES["curate_pairs_zh_tw"]().shards.samples_per_shard != 1
