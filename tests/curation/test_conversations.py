"""Visual instructions in their published layouts (LLaVA JSON list and JSONL with an image folder; HF
parquet with `messages` and `{bytes, path}` image structs) curated into Energon ConversationSample
shards; every bad row is counted by a named reason."""
from __future__ import annotations

import json

import numpy as np
import pytest
from curation_inputs import ZH_LINES, assert_contract, curate, draw, encode, rejections

IMG = "<image>"


def _llava(key: str, image, *turns: str) -> dict:
    row = {"id": key, "conversations": [{"from": "human" if i % 2 == 0 else "gpt", "value": t}
                                        for i, t in enumerate(turns)]}
    if image is not None:
        row["image"] = image
    return row


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """One folder holding a LLaVA JSON list, a LLaVA JSONL, a JSON list cut off mid-row and an HF
    parquet, with the images the JSON rows name under images/ (LLaVA's relative paths)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(11)
    src = tmp_path_factory.mktemp("conv_in")
    (src / "images" / "coco").mkdir(parents=True)
    for i in range(8):
        (src / "images" / "coco" / f"{i}.png").write_bytes(encode(draw(rng)))
    (src / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + rng.bytes(64))
    answer = [ZH_LINES[i] for i in range(12)]

    rows = [
        _llava("one", "images/coco/0.png", f"{IMG}\n這張圖裡有什麼？", answer[0]),
        _llava("multi_turn", "images/coco/1.png", f"{IMG}\n請描述這張圖。", "- 第一點\n- 第二點",
               "還有呢？", answer[1]),
        _llava("two_images", ["images/coco/2.png", "images/coco/3.png"], f"{IMG}\n{IMG}\n兩張圖有什麼不同？",
               answer[2]),
        _llava("text_only", None, "台灣的夜市有什麼好吃的？", answer[3]),
        _llava("simplified", "images/coco/4.png", f"{IMG}\n这个软件怎么用？", "打开鼠标右键的菜单。"),
        _llava("copy_of_one", "images/coco/0.png", f"{IMG}\n這張圖裡有什麼？", answer[0]),
        _llava("two_placeholders", "images/coco/5.png", f"{IMG}\n{IMG}\n比較一下。", answer[4]),
        _llava("missing_file", "images/coco/nope.png", f"{IMG}\n這是哪裡？", answer[5]),
        _llava("undecodable", "images/broken.png", f"{IMG}\n這是哪裡？", answer[6]),
        {"id": "not_alternating", "image": "images/coco/6.png",
         "conversations": [{"from": "human", "value": f"{IMG}\n你好"}, {"from": "human", "value": "在嗎？"},
                           {"from": "gpt", "value": answer[7]}]},
        _llava("no_assistant", "images/coco/6.png", f"{IMG}\n這是哪裡？"),
        _llava("empty_turn", "images/coco/6.png", f"{IMG}\n這是哪裡？", "   "),
    ]
    (src / "llava.json").write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    more = [_llava("jsonl_row", "images/coco/7.png", f"{IMG}\nWhat is shown here? 請用中文回答。", answer[8])]
    (src / "more.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in more) + "not json\n",
                                    encoding="utf-8")
    cut = [_llava(f"cut{i}", None, f"問題{i}：{ZH_LINES[20 + i]}", ZH_LINES[30 + i]) for i in range(3)]
    text = json.dumps(cut, ensure_ascii=False)
    (src / "cut.json").write_text(text[: text.index("cut2") + 30], encoding="utf-8")

    def struct(img=None, path=None):
        return {"bytes": encode(img) if img is not None else None, "path": path}

    def messages(*turns):
        return [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]

    hf = [
        {"id": "hf_bytes", "messages": messages(f"{IMG}\n圖中的東西是什麼顏色？", answer[9]),
         "images": [struct(draw(rng))]},
        {"id": "hf_path_only", "messages": messages(f"{IMG}\n這是什麼地方？", answer[10]),
         "images": [struct(path="images/coco/7.png")]},
        {"id": "hf_empty_struct", "messages": messages(f"{IMG}\n這是什麼？", answer[11]), "images": [struct()]},
        {"id": "hf_text_only", "messages": messages("用一句話介紹台北。", ZH_LINES[13]), "images": []},
    ]
    pq.write_table(pa.Table.from_pylist(hf), src / "hf.parquet")
    one = [{"id": "hf_one_struct", "messages": messages(f"{IMG}\n這是白天還是晚上？", ZH_LINES[14]),
            "image": struct(draw(rng))}]
    pq.write_table(pa.Table.from_pylist(one), src / "hf_one.parquet")
    parts = [{"id": "hf_content_parts", "images": [struct(draw(rng))], "messages": [
        {"role": "user", "content": [{"type": "image", "text": None},
                                     {"type": "text", "text": "圖裡有幾個人？"}]},
        {"role": "assistant", "content": [{"type": "text", "text": ZH_LINES[15]}]}]}]
    pq.write_table(pa.Table.from_pylist(parts), src / "hf_parts.parquet")
    return src


@pytest.fixture(scope="module")
def run(inputs, tmp_path_factory, langid_model):
    out = tmp_path_factory.mktemp("conv_out")
    return curate(inputs, out, config="conversations_zh_tw"), out


def _load(shards):
    from megatron.energon import WorkerConfig, get_loader, get_train_dataset

    from nemo_twvlm.data.samples import ConversationSample

    ds = get_train_dataset(str(shards), batch_size=None, shuffle_buffer_size=None, max_samples_per_sequence=None,
                           worker_config=WorkerConfig(rank=0, world_size=1, num_workers=0), repeat=False)
    samples = list(get_loader(ds))
    assert all(isinstance(s, ConversationSample) for s in samples)
    return samples


def test_every_row_is_kept_or_counted_by_its_reason(run):
    stats, out = run
    assert assert_contract(out) == stats
    reasons = {key: e["reason"] for key, e in rejections(out).items()}
    assert reasons == {
        "copy_of_one": "exact_duplicate",
        "two_placeholders": "image_count_mismatch",
        "missing_file": "missing_file",
        "undecodable": "corrupt_image",
        "not_alternating": "roles_not_alternating",
        "no_assistant": "no_assistant_turn",
        "empty_turn": "empty_turn",
        "more-0000001": "bad_row",            # the JSONL line that is not JSON
        "cut@2": "truncated_json",            # where the cut went through; the two rows before it are kept
        "hf_empty_struct": "missing_image",
    }
    assert stats["kept"] == 13
    assert stats["input"] == 13 + len(reasons)
    cut = rejections(out)["cut@2"]["detail"]
    assert "cut.json" in cut and "after 2 complete entries" in cut
    assert "neither bytes nor path" in rejections(out)["hf_empty_struct"]["detail"]
    assert stats["quarantined"]["image_count_mismatch"] == 1 and stats["dropped"] == {"exact_duplicate": 1}


def test_energon_reads_conversations_with_their_images(run):
    stats, out = run
    samples = {s.__key__.rsplit("/", 1)[-1]: s for s in _load(out / "shards")}
    assert len(samples) == stats["kept"]
    by_id = {}
    for s in samples.values():
        turns = [t["content"] for t in s.conversation]
        assert sum(t.count(IMG) for t in turns) == len(s.images)
        assert [t["role"] for t in s.conversation][:2] == ["user", "assistant"]
        by_id[turns[0]] = s
    assert len(by_id[f"{IMG}\n{IMG}\n兩張圖有什麼不同？"].images) == 2
    assert by_id["台灣的夜市有什麼好吃的？"].images == []
    assert by_id[f"{IMG}\n請描述這張圖。"].conversation[1]["content"] == "- 第一點\n- 第二點"  # lines kept
    converted = by_id[f"{IMG}\n這個軟體怎麼用？"]  # s2twp on every turn: 软件 -> 軟體, 鼠标 -> 滑鼠
    assert converted.conversation[1]["content"] == "開啟滑鼠右鍵的選單。"
    assert stats["converted"] == {"none": 12, "s2twp": 1}
    assert by_id[f"{IMG}\n圖中的東西是什麼顏色？"].images[0].shape[0] == 3
    assert len(by_id[f"{IMG}\n這是白天還是晚上？"].images) == 1  # `image`: one struct, not a list
    assert len(by_id[f"{IMG}\n圖裡有幾個人？"].images) == 1  # HF content parts: the image part is a placeholder


def test_a_rerun_resumes_to_the_same_output(run, inputs):
    stats, out = run
    shards = {p.name: p.read_bytes() for p in (out / "shards").glob("*.tar")}
    assert curate(inputs, out, config="conversations_zh_tw") == stats
    assert {p.name: p.read_bytes() for p in (out / "shards").glob("*.tar")} == shards


def test_tokens_are_counted_as_the_chat_template_renders_them(run):
    from transformers import AutoTokenizer

    from curation_inputs import REPO
    from nemo_twvlm.data.conversation import encode_conversation, normalise_messages
    from nemo_twvlm.presets import get_preset

    stats, out = run
    tokenizer = AutoTokenizer.from_pretrained(REPO / "data" / "tokenizer")
    text = images = 0
    for s in _load(out / "shards"):
        ids, _ = encode_conversation(tokenizer, normalise_messages(s.conversation))
        text += len(ids) - len(s.images)
        images += len(s.images)
    assert stats["text_tokens"] == text
    assert stats["image_tokens"] == images * get_preset("debug").num_image_tokens


def test_near_duplicate_needs_image_and_question(tmp_path, langid_model):
    """One image asked two questions and one question asked of two images are kept; the same question
    of a barely changed copy of the image is dropped."""
    rng = np.random.default_rng(5)
    img, other = draw(rng), draw(rng)
    (tmp_path / "in").mkdir()
    for name, picture in (("a", img), ("b", other)):
        (tmp_path / "in" / f"{name}.png").write_bytes(encode(picture))
    (tmp_path / "in" / "a_copy.jpg").write_bytes(encode(img, "JPEG", quality=70))
    question = f"{IMG}\n請仔細描述這張圖片中的所有東西。"
    rows = [_llava("first", "a.png", question, ZH_LINES[0]),
            _llava("other_question", "a.png", f"{IMG}\n圖片裡的人正在做什麼事情呢？", ZH_LINES[1]),
            _llava("other_image", "b.png", question, ZH_LINES[2]),
            _llava("near_copy", "a_copy.jpg", question + "謝謝", ZH_LINES[3])]
    (tmp_path / "in" / "rows.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    stats = curate(tmp_path / "in", tmp_path / "out", "dedup.caption_jaccard=0.6", config="conversations_zh_tw")
    assert_contract(tmp_path / "out")
    assert {k: e["reason"] for k, e in rejections(tmp_path / "out").items()} == {
        "near_copy": "near_duplicate_conversation"}
    assert stats["kept"] == 3


def test_a_cut_off_list_with_no_complete_row_is_counted_not_raised(tmp_path, langid_model):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "broken.json").write_text('[{"id": "x", "conversations": [{"from": "hu', encoding="utf-8")
    stats = curate(tmp_path / "in", tmp_path / "out", config="conversations_zh_tw")
    assert stats["quarantined"] == {"truncated_json": 1} and stats["kept"] == 0
    assert "broken.json" in rejections(tmp_path / "out")["broken@0"]["detail"]


def test_debug_sft_trains_on_curated_conversations(run, tmp_path):
    """The curated shards are what `twvlm_debug_sft` reads, as they come out of curation."""
    import math
    import re
    import subprocess
    import sys

    from nemo_twvlm.training.config import config_to_json
    from nemo_twvlm.launch.recipes import get_recipe

    _, out = run
    cfg = get_recipe("twvlm_debug_sft")
    cfg.data.path = str(out / "shards")
    cfg.model.init_from = None  # from scratch: no CPT checkpoint here
    cfg.checkpoint.save = None
    cfg.trainer.max_steps, cfg.trainer.warmup_steps, cfg.trainer.log_interval = 3, 1, 1
    path = tmp_path / "sft.json"
    path.write_text(config_to_json(cfg))
    result = subprocess.run([sys.executable, "-m", "nemo_twvlm.training.pretrain", str(path)],
                            capture_output=True, text=True, timeout=600)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    losses = [float(x) for x in re.findall(r"iteration\s+\d+/\s*3 \|.*?lm loss: ([0-9.E+-]+)", log)]
    assert len(losses) == 3 and all(math.isfinite(x) and x > 0 for x in losses)
    assert "skipped sample" not in log  # every curated conversation encodes


@pytest.mark.parametrize("overrides, message", [
    (["input.format=table"], "input.format='table' feeds kind pairs, not kind='conversations'"),
    (["dedup.shards=2"], "dedup.shards=1"),
])
def test_config_refuses_what_the_conversations_kind_cannot_do(overrides, message):
    from nemo_twvlm.curation.cli import compose_config

    with pytest.raises(ValueError, match=message):
        compose_config("conversations_zh_tw", ["input_dir=in", "output_dir=out", *overrides])
