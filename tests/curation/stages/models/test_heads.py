"""The optional aesthetic and NSFW stages: NeMo Curator's LAION heads over the embeddings of a tiny
random CLIP saved locally (no hub). The heads are built so that their output is known: zero weights
and a set bias give a constant, one path through the layers gives an affine function of the
embedding, so the test knows every score, and so which samples each threshold must drop."""
from __future__ import annotations

import io
import json
import math
import tarfile

import numpy as np
import pytest
import torch
from curation_inputs import assert_contract, curate, good_pairs, merged, rejections, tiny_clip, write_tar, yaml_config
from loguru import logger
from PIL import Image
from safetensors.torch import save_file

from nemo_twvlm.curation.config import CurationConfig
from nemo_twvlm.curation.pipeline import build_pipeline
from nemo_twvlm.curation.sample import ImageItem, Sample, SampleBatch
from nemo_twvlm.curation.stages.fused import unfused
from nemo_twvlm.curation.stages.models.aesthetic import AestheticStage
from nemo_twvlm.curation.stages.models.image_embed import ImageEmbedStage
from nemo_twvlm.curation.stages.models.nsfw import NsfwStage

N = 8


def aesthetic_head(direction: np.ndarray | None, bias: float):
    """Curator's aesthetic MLP computing `direction · embedding + bias` (no direction: the bias)."""
    from nemo_curator.models.aesthetics import MLP

    head = MLP()
    linears = [m for m in head.layers if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for layer in linears:
            layer.weight.zero_()
            layer.bias.zero_()
        if direction is not None:
            linears[0].weight[0] = torch.from_numpy(direction)
            for layer in linears[1:]:
                layer.weight[0, 0] = 1.0
        linears[-1].bias.fill_(bias)
    return head


def nsfw_head(direction: np.ndarray | None, bias: float):
    """Curator's NSFW model computing `sigmoid(direction · embedding + bias)`."""
    from nemo_curator.models.nsfw import NSFWModel

    head = NSFWModel()
    linears = [head.linear_1, head.linear_2, head.linear_3, head.linear_4]
    lift = 100.0  # keeps the one live unit above zero through the ReLUs; taken off again at the end
    with torch.no_grad():
        for layer in linears:
            layer.weight.zero_()
            layer.bias.zero_()
        if direction is None:
            linears[-1].bias.fill_(bias)
            return head
        linears[0].weight[0] = torch.from_numpy(direction)
        linears[0].bias[0] = bias + lift
        for layer in linears[1:]:
            layer.weight[0, 0] = 1.0
        linears[-1].bias.fill_(-lift)
    return head


def save_aesthetic(head, path):
    save_file(head.state_dict(), str(path))  # safetensors, as the hub copy Curator uses
    return path


def save_nsfw(head, path):
    torch.save(head.state_dict(), path)  # a .pth state dict, as Curator's conversion of the Keras model
    return path


def expected_embeddings(clip_dir, pngs: dict[str, bytes]) -> dict[str, np.ndarray]:
    """Normalised image embeddings computed here, apart from the stage's code."""
    from transformers import CLIPImageProcessor, CLIPModel

    model = CLIPModel.from_pretrained(clip_dir).eval()
    processor = CLIPImageProcessor.from_pretrained(clip_dir)
    keys = sorted(pngs)
    images = [Image.open(io.BytesIO(pngs[k])).convert("RGB") for k in keys]
    with torch.no_grad():
        out = model.get_image_features(**processor(images=images, return_tensors="pt"))
    out = out if hasattr(out, "dim") else out.pooler_output
    return dict(zip(keys, torch.nn.functional.normalize(out, dim=-1).numpy()))


def kept_meta(out) -> dict[str, dict]:
    metas = {}
    for shard in (out / "shards").glob("*.tar"):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".json"):
                    meta = json.loads(tar.extractfile(m).read())
                    metas[meta["key"]] = meta
    return metas


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    torch.manual_seed(0)
    return tiny_clip(tmp_path_factory.mktemp("tiny_clip_768"), projection_dim=768)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    src = tmp_path_factory.mktemp("heads_in")
    samples = good_pairs(np.random.default_rng(11), N)
    write_tar(src / "0.tar", samples)
    return src, {key: parts["png"] for key, parts in samples}


@pytest.fixture(scope="module")
def affine_run(clip_dir, source, tmp_path_factory, langid_model):
    """Heads whose scores are affine in the embedding; thresholds set between known scores so that
    NSFW drops the two least safe samples and aesthetic the two least aesthetic of the rest."""
    src, pngs = source
    emb = expected_embeddings(clip_dir, pngs)
    rng = np.random.default_rng(0)
    direction = rng.normal(size=768).astype(np.float32)
    v = {k: float(e @ direction) for k, e in emb.items()}
    centre, spread = float(np.mean(list(v.values()))), float(np.std(list(v.values())))
    # Scores in standard units: the thresholds below sit far from float and rounding noise.
    nsfw = {k: 1 / (1 + math.exp(-(x - centre) / spread)) for k, x in v.items()}
    aesthetic = {k: 5.0 - (x - centre) / spread for k, x in v.items()}
    heads = tmp_path_factory.mktemp("heads")
    nsfw_path = save_nsfw(nsfw_head(direction / spread, -centre / spread), heads / "nsfw.pth")
    # The aesthetic head looks the other way: the samples NSFW drops would fail the aesthetic
    # threshold too, and must be counted once, under the stage that saw them first.
    aes_path = save_aesthetic(aesthetic_head(-direction / spread, 5.0 + centre / spread),
                              heads / "aesthetic.safetensors")

    by_nsfw = sorted(nsfw, key=nsfw.get)
    max_nsfw = (nsfw[by_nsfw[-3]] + nsfw[by_nsfw[-2]]) / 2
    survivors = sorted(by_nsfw[:-2], key=aesthetic.get)
    min_aesthetic = (aesthetic[survivors[1]] + aesthetic[survivors[2]]) / 2
    expected = {k: "nsfw" for k in by_nsfw[-2:]} | {k: "low_aesthetic" for k in survivors[:2]}

    out = tmp_path_factory.mktemp("heads_out")
    stats = curate(src, out, f"models.embedding_model={clip_dir}", f"models.nsfw_model={nsfw_path}",
                   f"models.aesthetic_model={aes_path}", f"models.max_nsfw_score={max_nsfw}",
                   f"models.min_aesthetic_score={min_aesthetic}", f"models.clip_model={clip_dir}",
                   "models.min_clip_score=-1.0")
    return stats, out, expected, nsfw, aesthetic


def test_thresholds_drop_exactly_the_expected_samples(affine_run):
    stats, out, expected, _, _ = affine_run
    assert_contract(out)
    assert stats["dropped"] == {"low_aesthetic": 2, "nsfw": 2}
    assert {k: e["reason"] for k, e in rejections(out).items()} == expected
    assert stats["kept"] == N - 4


def test_scores_are_in_each_kept_samples_meta(affine_run):
    stats, out, expected, nsfw, aesthetic = affine_run
    metas = kept_meta(out)
    assert sorted(metas) == sorted(set(nsfw) - set(expected))
    for key, meta in metas.items():
        assert meta["nsfw_score"] == pytest.approx(nsfw[key], abs=2e-4)
        assert 0.0 <= meta["nsfw_score"] <= 1.0
        assert meta["aesthetic_score"] == pytest.approx(aesthetic[key], abs=2e-4)
        assert -1.0 <= meta["clip_score"] <= 1.0
        assert all("clip_embedding" not in image for image in meta["images"])  # never written out
    names = [s["stage"] for s in stats["stages"]]
    assert names[names.index("quality_zh") + 1:names.index("quality_zh") + 5] == [
        "image_embed", "nsfw", "aesthetic", "clip_score"]
    assert "aesthetic " in (out / "report.html").read_text(encoding="utf-8")


def test_constant_heads(clip_dir, source, tmp_path, langid_model):
    """Zero weights and a bias: every sample gets exactly that score, on both sides of a threshold."""
    src, _ = source
    nsfw = save_nsfw(nsfw_head(None, math.log(0.25 / 0.75)), tmp_path / "nsfw.pth")
    aesthetic = save_aesthetic(aesthetic_head(None, 5.0), tmp_path / "aesthetic.safetensors")
    stats = curate(src, tmp_path / "out", f"models.embedding_model={clip_dir}", f"models.nsfw_model={nsfw}",
                   f"models.aesthetic_model={aesthetic}")
    assert stats["kept"] == N
    metas = kept_meta(tmp_path / "out")
    assert {m["aesthetic_score"] for m in metas.values()} == {5.0}
    assert {m["nsfw_score"] for m in metas.values()} == {0.25}
    stats = curate(src, tmp_path / "strict", f"models.embedding_model={clip_dir}", f"models.nsfw_model={nsfw}",
                   f"models.aesthetic_model={aesthetic}", "models.max_nsfw_score=0.2")
    assert stats["kept"] == 0 and stats["dropped"] == {"nsfw": N}
    assert_contract(tmp_path / "strict")


def test_documents_score_as_their_worst_image(clip_dir, tmp_path):
    """Interleaved documents: NSFW takes the highest image score, aesthetic the lowest."""
    rng = np.random.default_rng(4)
    images = [Image.new("RGB", (40, 40), tuple(int(c) for c in rng.integers(0, 256, 3))) for _ in range(4)]
    emb = expected_embeddings(clip_dir, {str(i): _png(img) for i, img in enumerate(images)})
    direction = np.random.default_rng(1).normal(size=768).astype(np.float32)
    direction /= np.linalg.norm(direction)  # unit: scores stay in the sigmoid's sensitive range
    per_image = [float(emb[str(i)] @ direction) for i in range(4)]
    nsfw = save_nsfw(nsfw_head(direction, 0.0), tmp_path / "nsfw.pth")
    aesthetic = save_aesthetic(aesthetic_head(direction, 0.0), tmp_path / "aesthetic.safetensors")
    docs = [Sample(key=f"doc{d}", index=d, segments=["文字", ImageItem("0.png", pil=images[2 * d]), "更多",
                                                     ImageItem("1.png", pil=images[2 * d + 1])]) for d in range(2)]
    batch = SampleBatch(dataset_name="docs", data=docs)
    for stage in (ImageEmbedStage(str(clip_dir)), NsfwStage(str(nsfw), max_score=1.0),
                  AestheticStage(str(aesthetic), min_score=-1e9)):
        batch = stage.process(batch)
    for d, doc in enumerate(batch.data):
        pair = per_image[2 * d:2 * d + 2]
        assert doc.meta["nsfw_score"] == pytest.approx(1 / (1 + math.exp(-max(pair))), abs=1e-4)
        assert doc.meta["aesthetic_score"] == pytest.approx(min(pair), abs=1e-4)


def test_embeddings_of_another_width_are_refused(tmp_path):
    torch.manual_seed(0)
    narrow = tiny_clip(tmp_path / "clip16", projection_dim=16)
    head = save_aesthetic(aesthetic_head(None, 5.0), tmp_path / "aesthetic.safetensors")
    image = ImageItem("png", pil=Image.new("RGB", (32, 32)))
    batch = SampleBatch(dataset_name="pairs", data=[Sample(key="a", index=0, segments=[image, "文字"])])
    batch = ImageEmbedStage(str(narrow)).process(batch)
    with pytest.raises(ValueError, match="models.aesthetic_model expects 768-d .* gives 16-d"):
        AestheticStage(str(head), min_score=4.5).process(batch)


def test_weights_for_another_head_are_refused(tmp_path):
    wrong = save_nsfw(nsfw_head(None, 0.0), tmp_path / "nsfw.pth")
    with pytest.raises(ValueError, match="models.aesthetic_model=.*nsfw.pth.* does not hold weights for MLP"):
        AestheticStage(str(wrong), min_score=4.5).load()


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _config(tmp_path, **models) -> CurationConfig:
    return CurationConfig.from_dict(merged(yaml_config().to_dict(), {
        "input_dir": str(tmp_path), "output_dir": str(tmp_path / "out"), "lang": {"model_path": "lid.176.ftz"},
        "models": models}))


def test_left_out_with_a_warning_when_not_configured(tmp_path):
    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(str(m)), level="WARNING")
    try:
        names = [s.name for s in unfused(build_pipeline(_config(tmp_path)).stages)]
    finally:
        logger.remove(sink)
    assert not {"image_embed", "aesthetic", "nsfw", "clip_score"} & set(names)
    for field in ("models.aesthetic_model", "models.nsfw_model", "models.clip_model"):
        assert any(f"{field} is not set" in m for m in messages), field


def test_runs_end_to_end_without_models(source, tmp_path, langid_model):
    stats = curate(source[0], tmp_path)
    assert stats["kept"] == N
    assert not {"image_embed", "aesthetic", "nsfw"} & {s["stage"] for s in stats["stages"]}


@pytest.mark.parametrize("field, kind", [
    ("aesthetic_model", "weights file"), ("nsfw_model", "weights file"), ("embedding_model", "model directory"),
])
def test_missing_path_names_the_field(clip_dir, tmp_path, field, kind):
    models = {"embedding_model": str(clip_dir), "aesthetic_model": str(tmp_path / "a.safetensors"),
              "nsfw_model": str(tmp_path / "n.pth")}
    (tmp_path / "a.safetensors").touch()
    (tmp_path / "n.pth").touch()
    models[field] = str(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match=f"models.{field}='.*missing' is not a local {kind}"):
        build_pipeline(_config(tmp_path, **models))


def test_a_head_without_an_embedding_model_names_both_fields(tmp_path):
    with pytest.raises(ValueError, match="models.nsfw_model='n.pth' needs models.embedding_model"):
        _config(tmp_path, nsfw_model="n.pth")


def test_clip_score_reuses_the_embeddings_of_the_same_model(clip_dir, tmp_path):
    heads = {"aesthetic_model": str(save_aesthetic(aesthetic_head(None, 5.0), tmp_path / "a.safetensors"))}
    same = {s.name: s for s in unfused(build_pipeline(_config(tmp_path, embedding_model=str(clip_dir),
                                                              clip_model=str(clip_dir), **heads)).stages)}
    assert same["clip_score"].reuse_image_embeddings
    other = tiny_clip(tmp_path / "zh_clip")
    apart = {s.name: s for s in unfused(build_pipeline(_config(tmp_path, embedding_model=str(clip_dir),
                                                               clip_model=str(other), **heads)).stages)}
    assert not apart["clip_score"].reuse_image_embeddings


def test_interleaved_pipeline_has_the_model_stages(clip_dir, tmp_path):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from nemo_twvlm.curation.cli import conf_dir

    (tmp_path / "a.safetensors").touch()
    (tmp_path / "n.pth").touch()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(config_name="interleaved_zh_tw", overrides=[
            f"input_dir={tmp_path}", f"output_dir={tmp_path / 'out'}", f"models.embedding_model={clip_dir}",
            f"models.nsfw_model={tmp_path / 'n.pth'}", f"models.aesthetic_model={tmp_path / 'a.safetensors'}"])
    names = [s.name for s in unfused(build_pipeline(CurationConfig.from_dict(OmegaConf.to_container(cfg, resolve=True))).stages)]
    assert ["image_embed", "nsfw", "aesthetic"] == [n for n in names if n in ("image_embed", "nsfw", "aesthetic")]


def test_reused_embeddings_give_the_same_clip_scores(clip_dir, source):
    from nemo_twvlm.curation.stages.models.clip_score import ClipScoreStage

    _, pngs = source

    def batch() -> SampleBatch:
        samples = [Sample(key=k, index=i, segments=[ImageItem("png", pil=Image.open(io.BytesIO(png)).convert("RGB")),
                                                    f"第 {i} 張圖"]) for i, (k, png) in enumerate(sorted(pngs.items()))]
        return SampleBatch(dataset_name="pairs", data=samples)

    own = ClipScoreStage(str(clip_dir), min_score=-1.0, reuse_image_embeddings=False).process(batch())
    shared = ClipScoreStage(str(clip_dir), min_score=-1.0, reuse_image_embeddings=True).process(
        ImageEmbedStage(str(clip_dir)).process(batch()))
    assert [s.meta["clip_score"] for s in shared.data] == pytest.approx([s.meta["clip_score"] for s in own.data],
                                                                        abs=1e-4)
