"""The `<image>` token and the vocabulary of a Llama-3-layout import: new rows as transformers draws them,
llava-llama-3 checkpoints (appended `<image>`, vocabulary padded to 128,320) round-tripped bitwise, and
the bad inputs, each refused naming its file and field."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from llama3_layout import (
    BPE_SIZE, USER_ONLY_TEMPLATE, VOCAB, write_generation_config, write_llama3_tokenizer, write_published_pair,
)
from nemo_twvlm.conversion import ConversionError, export_hf, import_hf
from nemo_twvlm.data.tokenizer import add_image_token


@pytest.fixture(scope="module")
def published_pair(tiny, tmp_path_factory):
    return write_published_pair(tmp_path_factory.mktemp("published"), tiny.randomize_)


@pytest.fixture(scope="module")
def base(published_pair, tmp_path_factory):
    """The pair imported with the default image token (a reserved id)."""
    dst = tmp_path_factory.mktemp("base") / "ckpt"
    import_hf(published_pair, dst)
    return dst


def test_new_rows_are_drawn_as_transformers_resize_draws_them():
    from transformers import LlamaConfig, LlamaForCausalLM

    from nemo_twvlm.conversion.vocab import mean_resized_rows, padded_vocab_size

    model = LlamaForCausalLM(LlamaConfig(vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=4, tie_word_embeddings=False))
    with torch.no_grad():  # columns with very different means, so "the mean" is a strong check
        model.model.embed_tokens.weight.mul_(5).add_(torch.arange(32.0))
        model.lm_head.weight.mul_(3).sub_(torch.arange(32.0) / 2)
    old_embed, old_head = model.model.embed_tokens.weight.clone(), model.lm_head.weight.clone()
    rows = padded_vocab_size(1001, tp=1)
    model.resize_token_embeddings(1001, pad_to_multiple_of=64)
    assert rows == 1024 == model.model.embed_tokens.weight.shape[0]
    for old, new in ((old_embed, model.model.embed_tokens.weight), (old_head, model.lm_head.weight)):
        ours = mean_resized_rows(old, rows - 1000, seed=0)
        assert torch.allclose(ours, new[1000:], atol=1e-3), float((ours - new[1000:]).abs().max())
        assert float((ours - old.mean(0)).abs().max()) < 1e-3 < float(old.mean(0).abs().max())
    assert padded_vocab_size(VOCAB + 1, tp=8) == 128320 and padded_vocab_size(VOCAB + 1, tp=128) == 128384


def test_reserved_mode_renames_a_reserved_token_and_keeps_every_shape(base):
    from nemo_twvlm.data.tokenizer import load_tokenizer, read_image_token_record
    from nemo_twvlm.rundir import checkpoint_preset

    tokenizer = load_tokenizer(base / "tokenizer")
    assert len(tokenizer) == VOCAB and tokenizer.convert_tokens_to_ids("<image>") == 128002
    assert tokenizer.encode("<image>\n紅色", add_special_tokens=False)[0] == 128002
    assert tokenizer.convert_tokens_to_ids("<|reserved_special_token_1|>") == 128003  # the others stay
    record = read_image_token_record(base / "tokenizer")
    assert (record.mode, record.id, record.replaced, record.tokenizer_size) == \
        ("reserved", 128002, "<|reserved_special_token_0|>", VOCAB)
    assert checkpoint_preset(base).language.vocab_size == VOCAB
    # The source's generation config travels with the tokenizer.
    assert json.loads((base / "tokenizer" / "generation_config.json").read_text())["eos_token_id"] == [128001, 128009]


def _llava_llama3(directory, tiny):
    """A llava-hf checkpoint on a Llama-3 vocabulary, as the public llava-llama-3 transformers exports lay it
    out: `<image>` appended at 128,256, embedding and lm_head padded to 128,320 rows."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    vision = CLIPVisionConfig(**tiny.VISION)
    text = LlamaConfig(**{**tiny.TEXT, "vocab_size": 128320, "bos_token_id": BPE_SIZE, "eos_token_id": BPE_SIZE + 9,
                          "pad_token_id": None})
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=VOCAB,
                         image_seq_length=(vision.image_size // vision.patch_size) ** 2)
    model = LlavaForConditionalGeneration(config)
    tiny.randomize_(model, 11)
    model.save_pretrained(directory)
    plain = write_llama3_tokenizer(directory / "plain")
    add_image_token(plain, directory, "append")
    shutil.rmtree(plain)
    (directory / "twvlm_image_token.json").unlink()  # not part of a published llava directory
    write_generation_config(directory)
    return directory


def test_llava_llama3_layout_round_trips_bitwise_and_matches_transformers(tiny, tmp_path):
    from transformers import LlavaForConditionalGeneration

    src = _llava_llama3(tmp_path / "llava", tiny)
    import_hf(src, tmp_path / "ours")
    out = export_hf(tmp_path / "ours", tmp_path / "back")
    original, exported = tiny.canonical_tensors(src), tiny.canonical_tensors(out)
    assert original.keys() == exported.keys()
    assert all(torch.equal(original[name], exported[name]) for name in original)
    assert exported["language_model.embed_tokens.weight"].shape[0] == 128320
    config = json.loads((out / "config.json").read_text())
    assert (config["image_token_index"], config["text_config"]["vocab_size"]) == (VOCAB, 128320)

    ours, preset = tiny.load_ours(tmp_path / "ours", image_token_index=VOCAB)
    hf_model = LlavaForConditionalGeneration.from_pretrained(src, attn_implementation="eager").eval()
    g = torch.Generator().manual_seed(0)
    images = torch.randn(1, 3, 32, 32, generator=g)
    text = torch.randint(0, BPE_SIZE, (8,), generator=g).tolist()
    with torch.no_grad():
        logits, _ = ours(images=images, input_ids=torch.tensor([[BPE_SIZE, VOCAB, *text]]),
                         position_ids=torch.arange(len(text) + 2)[None], attention_mask=None)
        theirs = hf_model(input_ids=torch.tensor([[BPE_SIZE, *[VOCAB] * preset.num_image_tokens, *text]]),
                          pixel_values=images).logits
    assert logits.shape == theirs.shape and float((logits - theirs).abs().max()) <= 1e-4


# --- bad input: each refused by name ----------------------------------------------------------------

def test_an_image_id_outside_the_vocabulary_names_the_tokenizer_and_the_config(published_pair, tmp_path):
    appended = tmp_path / "tok"
    add_image_token(published_pair[1], appended, "append")  # <image> = 128,256 in a 128,256-row model
    with pytest.raises(ConversionError, match=r"tokenizer .*tok: <image> has id 128256, outside the model's "
                                              r"vocabulary \(text_config.vocab_size=128256 in .*llama/config.json\)"):
        import_hf(published_pair, tmp_path / "out", tokenizer=appended)
    assert not (tmp_path / "out").exists()


def test_reserved_mode_without_reserved_tokens_is_refused(published_pair, tmp_path):
    tokenizer = write_llama3_tokenizer(tmp_path / "tok", reserved=False)
    with pytest.raises(ConversionError, match=r"tokenizer .*tok has no <\|reserved_special_token_N\|> tokens "
                                              r"\(tokenizer.json added_tokens\).*image_token=append"):
        import_hf(published_pair, tmp_path / "out", tokenizer=tokenizer)


def test_a_chat_template_that_drops_assistant_turns_is_refused(published_pair, tmp_path):
    tokenizer = write_llama3_tokenizer(tmp_path / "tok", chat_template=USER_ONLY_TEMPLATE)
    with pytest.raises(ConversionError, match=r"tokenizer .*tok: chat_template drops assistant turns"):
        import_hf(published_pair, tmp_path / "out", tokenizer=tokenizer)


def test_an_unknown_image_token_mode_is_refused(published_pair, tmp_path):
    with pytest.raises(ConversionError, match=r"image_token='prepend': expected one of \['reserved', 'append'\]"):
        import_hf(published_pair, tmp_path / "out", image_token="prepend")


def test_a_data_tokenizer_that_is_not_the_checkpoints_is_refused_naming_both(base):
    from nemo_twvlm.training.lineage import resolve_start
    from nemo_twvlm.training.validate import ConfigError
    from nemo_twvlm.launch.recipes import get_recipe

    cfg = get_recipe("twvlm_debug_align")
    cfg.model.init_from = str(base)
    cfg.checkpoint.save = None
    cfg.data.tokenizer = "data/tokenizer"  # the debug tokenizer, not the import's Llama-3 one
    with pytest.raises(ConfigError, match=r"data.tokenizer='data/tokenizer' \(1024 tokens, fingerprint \w+\) is not "
                                          r"the tokenizer of the checkpoint .*base.*\(.*tokenizer: 128256 tokens"):
        resolve_start(cfg)
    cfg.data.tokenizer = ""
    resolved = resolve_start(cfg)
    assert resolved.data.tokenizer == str(base / "tokenizer")
    # Only the vocabulary differs from the debug preset: the run builds the checkpoint's.
    assert resolved.model.preset == str((base / "twvlm_preset.json").resolve())


def test_dry_runs_validate_the_chain_offline(base, monkeypatch, capsys):
    """The 70B recipe's chain is checked against the checkpoint it names, with nothing downloaded: a
    debug-width import is not a 70B model, and the dry run says so by field."""
    import sys
    import types

    from nemo_twvlm.launch import cli

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    stub = types.ModuleType("nemo_twvlm.training.pretrain")
    stub.run_pretrain = lambda *a, **k: pytest.fail("a dry run must not train")
    monkeypatch.setitem(sys.modules, stub.__name__, stub)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    assert cli.main(["pretrain", "--factory", "twvlm_70b_align", f"model.init_from={base}", "--dryrun"]) == 1
    err = capsys.readouterr().err
    assert "model.preset='70b' does not match the checkpoint" in err and "language.num_layers: 2 vs 80" in err
    assert "Traceback" not in err
    # A local dry run checks that data.path exists (training.validate); any existing directory does here.
    assert cli.main(["pretrain", "--factory", "twvlm_debug_align", f"model.init_from={base}", "data.tokenizer=''",
                     f"data.path={base}", "--dryrun"]) == 0
    out = capsys.readouterr().out
    assert f"starts from {base}: tokenizer {base / 'tokenizer'}" in out
