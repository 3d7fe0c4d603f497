"""A literal `<image>` in a caption or a document's text never becomes an image placeholder: curation
strips it and notes `image_token_in_text` (the sample is kept), the task encoder strips it too and
counts it. A conversation's `<image>` stays the placeholder."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from curation_inputs import assert_contract, curate, draw, encode, rejections, stage_args, write_tar, zh_caption
from megatron.energon import CaptioningSample, InterleavedSample

from nemo_twvlm.curation.sample import Sample, SampleBatch
from nemo_twvlm.curation.stages.filters.clean_text import CleanTextStage
from nemo_twvlm.data import task_encoder
from nemo_twvlm.data.samples import ConversationSample
from nemo_twvlm.data.task_encoder import BadSample, LlavaTaskEncoder
from nemo_twvlm.presets import PRESETS

DEBUG = PRESETS["debug"]


@pytest.fixture(scope="module")
def encoder(tokenizer) -> LlavaTaskEncoder:
    return LlavaTaskEncoder(tokenizer, DEBUG, 256)


def image() -> torch.Tensor:
    return torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("caption", ["台灣的<image>夜市", "<im<image>age>夜市小吃"])
def test_caption_image_token_is_not_a_placeholder(encoder, caption):
    before = task_encoder.REPAIRED[task_encoder.IMAGE_TOKEN_IN_TEXT]
    out = encoder.encode_sample(CaptioningSample(__key__="k", __restore_key__=(), image=image(), caption=caption))
    assert out.tokens.tolist().count(encoder.image_id) == 1 == len(out.images)
    assert task_encoder.REPAIRED[task_encoder.IMAGE_TOKEN_IN_TEXT] == before + 1


def test_interleaved_text_image_token_is_not_a_placeholder(encoder):
    doc = InterleavedSample(__key__="d", __restore_key__=(),
                            sequence=["看這張<image>圖：", image(), "<image>很好吃"])
    out = encoder.encode_sample(doc)
    assert out.tokens.tolist().count(encoder.image_id) == 1 == len(out.images)


def test_caption_of_only_image_token_is_empty(encoder):
    with pytest.raises(BadSample) as caught:
        encoder.encode_sample(CaptioningSample(__key__="k", __restore_key__=(), image=image(), caption=" <image> "))
    assert caught.value.reason == "empty_caption"


def test_conversation_image_token_stays_the_placeholder(encoder):
    turns = [{"from": "human", "value": "<image>\n這是哪裡？"}, {"from": "gpt", "value": "台北101。"}]
    out = encoder.encode_sample(ConversationSample(__key__="c", __restore_key__=(), images=[image()],
                                                   conversation=turns))
    assert out.tokens.tolist().count(encoder.image_id) == 1 == len(out.images)


def batch_of(*texts: str) -> SampleBatch:
    return SampleBatch(dataset_name="d",
                       data=[Sample(key=str(i), index=i, segments=[t]) for i, t in enumerate(texts)])


# With strip_html an entity-spelled one (&lt;image&gt;) goes as any tag does, unnoted; without, it is noted.
@pytest.mark.parametrize("strip_html, noted", [(True, 2), (False, 3)])
def test_clean_text_strips_and_notes(strip_html, noted):
    batch = CleanTextStage(**stage_args("text", strip_html=strip_html)).process(
        batch_of("台灣<image>夜市", "&lt;image&gt;小籠包", "沒有問題的句子", "<image>", "夜市<image>"))
    assert [s.text for s in batch.data] == ["台灣夜市", "小籠包", "沒有問題的句子", "夜市"]
    assert [r.reason for r in batch.rejected] == ["empty_after_cleaning"]
    assert batch.stage_counts()["clean_text"] == {"in": 5, "out": 4, "rejected": {"empty_after_cleaning": 1},
                                                  "notes": {"image_token_in_text": noted}}


def test_curation_counts_the_note_and_keeps_the_samples(tmp_path, langid_model):
    rng = np.random.default_rng(7)
    captions = {f"tok{i}": f"{zh_caption(rng)}<image>" for i in range(3)}
    captions |= {f"ok{i}": zh_caption(rng) for i in range(2)}
    captions["only"] = "<image>"
    samples = [(key, {"png": encode(draw(rng)), "txt": text.encode()}) for key, text in captions.items()]
    write_tar(tmp_path / "in" / "a.tar", samples)
    stats = curate(tmp_path / "in", tmp_path / "out", "text.strip_html=false")
    assert_contract(tmp_path / "out")
    assert stats["notes"] == {"image_token_in_text": 3}
    assert stats["kept"] == 5 and stats["dropped"] == {"empty_after_cleaning": 1} and not stats["quarantined"]
    assert set(rejections(tmp_path / "out")) == {"only"}
    row = next(r for r in stats["stages"] if r["stage"] == "clean_text")
    assert row["notes"] == {"image_token_in_text": 3}
    for shard in (tmp_path / "out" / "shards").glob("*.tar"):
        assert b"<image>" not in shard.read_bytes()
