"""Curation recipes: no-argument functions that return a `CurationConfig`.

A base recipe is its Hydra YAML in conf/curation composed as it is, so the YAML stays the one
place that holds (and documents) every default; variants call a base and change a few fields.
input_dir and output_dir are left empty: they are given at launch,

    nemo twvlm curate --factory curate_pairs_zh_tw input_dir=IN output_dir=OUT [field=value ...]
"""
from __future__ import annotations

from nemo_twvlm.curation.cli import compose_config
from nemo_twvlm.curation.config import CurationConfig
from nemo_twvlm.rundir import TOKENIZER_DIR
from .pretrain import BASE_70B, twvlm_70b_cpt


def curate_pairs_zh_tw() -> CurationConfig:
    """Image-caption pairs -> zh-TW Energon CaptioningSample shards (conf/curation/pairs_zh_tw.yaml)."""
    return compose_config("pairs_zh_tw", [], check=False)


def curate_interleaved_zh_tw() -> CurationConfig:
    """Interleaved documents -> zh-TW Energon InterleavedSample shards (conf/curation/interleaved_zh_tw.yaml)."""
    return compose_config("interleaved_zh_tw", [], check=False)


def curate_conversations_zh_tw() -> CurationConfig:
    """Visual instructions (LLaVA JSON/JSONL, HF parquet) -> zh-TW Energon ConversationSample shards
    (conf/curation/conversations_zh_tw.yaml)."""
    return compose_config("conversations_zh_tw", [], check=False)


def at_cluster_scale(cfg: CurationConfig) -> CurationConfig:
    """Xenna's streaming executor (the laptop default, Ray Data, is for few cores), 4x larger parts,
    and tokens counted as the 70B CPT stage will see them: its tokenizer, its preset's image tokens."""
    cpt = twvlm_70b_cpt()
    cfg.executor.name = "xenna"
    cfg.input.batch_samples *= 4
    cfg.tokens.tokenizer = f"{BASE_70B}/{TOKENIZER_DIR}"  # the import's tokenizer, which every stage uses
    cfg.tokens.preset = cpt.model.preset
    return cfg


def curate_pairs_zh_tw_cluster() -> CurationConfig:
    """`curate_pairs_zh_tw` on a cluster, with the 70B tokenizer and image-token count."""
    return at_cluster_scale(curate_pairs_zh_tw())


def curate_interleaved_zh_tw_cluster() -> CurationConfig:
    """`curate_interleaved_zh_tw` on a cluster, with the 70B tokenizer and image-token count."""
    return at_cluster_scale(curate_interleaved_zh_tw())


def curate_conversations_zh_tw_cluster() -> CurationConfig:
    """`curate_conversations_zh_tw` on a cluster, with the 70B tokenizer and image-token count."""
    return at_cluster_scale(curate_conversations_zh_tw())


RECIPES = {
    fn.__name__: fn
    for fn in (curate_pairs_zh_tw, curate_interleaved_zh_tw, curate_conversations_zh_tw, curate_pairs_zh_tw_cluster,
               curate_interleaved_zh_tw_cluster, curate_conversations_zh_tw_cluster)
}
