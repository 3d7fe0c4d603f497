"""Tiny curation inputs drawn with PIL, a runner that goes through the real entry point (Hydra +
conf/curation) with the in-process executor, and the output-contract check every test makes."""
from __future__ import annotations

import io
import json
import os
import struct
import tarfile
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from nemo_twvlm.data.synthetic import TAIWAN_LINES

REPO = Path(__file__).resolve().parents[2]
LANGID_MODEL = Path(os.environ.get("TWVLM_LANGID_MODEL", REPO / ".venv" / "share" / "nemo_twvlm" / "lid.176.ftz"))
ZH_LINES = [line for line in TAIWAN_LINES if not line.isascii()]
EN_LINES = [line for line in TAIWAN_LINES if line.isascii()]


def draw(rng: np.random.Generator, size: tuple[int, int] = (64, 64)) -> Image.Image:
    """A few random rectangles and ellipses: every draw has its own perceptual hash."""
    img = Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 256, 3)))
    d = ImageDraw.Draw(img)
    w, h = size
    for _ in range(5):
        x0, y0 = int(rng.integers(0, w - 8)), int(rng.integers(0, h - 8))
        box = [x0, y0, x0 + int(rng.integers(8, w)), y0 + int(rng.integers(8, h))]
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        (d.rectangle if rng.random() < 0.5 else d.ellipse)(box, fill=fill)
    return img


def encode(img: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def zh_caption(rng: np.random.Generator) -> str:
    """Three everyday zh-TW lines: distinct enough that two draws are never near-duplicates."""
    return "".join(ZH_LINES[i] for i in rng.choice(len(ZH_LINES), 3, replace=False))


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A valid PNG header claiming width x height pixels, with almost no data: decoding it would
    allocate gigabytes, so it must be refused from the header alone."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def write_tar(path: Path, samples: list[tuple[str, dict[str, bytes]]]) -> Path:
    """Members written exactly as given (zero-byte, non-UTF-8 and all)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for key, parts in samples:
            for ext, data in parts.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def good_pairs(rng: np.random.Generator, n: int, prefix: str = "good") -> list[tuple[str, dict[str, bytes]]]:
    return [(f"{prefix}{i:04d}", {"png": encode(draw(rng)), "txt": zh_caption(rng).encode()}) for i in range(n)]


def tiny_clip(path: Path, projection_dim: int = 16) -> Path:
    """A random 1-layer CLIP saved like a real one (model, image processor, tokenizer): no hub.
    projection_dim=768 gives embeddings of ViT-L/14's width, what the LAION heads read."""
    from transformers import AutoTokenizer, CLIPConfig, CLIPImageProcessor, CLIPModel

    text = dict(vocab_size=1024, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    vision = dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                  num_attention_heads=2)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim)).save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    AutoTokenizer.from_pretrained(REPO / "data" / "tokenizer").save_pretrained(path)
    return path


@contextmanager
def image_server(images: dict[str, bytes]) -> Iterator[str]:
    """Serve `images` by file name (any path ending in it) from 127.0.0.1, 404 otherwise; yields
    the base url. Curation runs against it need download.allow_private_addresses=true."""
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            body = images.get(self.path.rsplit("/", 1)[-1])
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "image/png" if body is not None else "text/plain")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    saved = {k: os.environ.get(k) for k in ("no_proxy", "NO_PROXY")}
    os.environ.update(no_proxy="127.0.0.1,localhost", NO_PROXY="127.0.0.1,localhost")  # a CI proxy must not intercept
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def curate(input_dir: Path, output_dir: Path, *overrides: str, config: str = "pairs_zh_tw",
           executor: str = "in_process") -> dict:
    """conf/curation/<config>.yaml with Hydra overrides, run in this process (what `nemo twvlm curate` runs)."""
    from nemo_twvlm.curation.cli import run

    return run(config, [f"input_dir={input_dir}", f"output_dir={output_dir}", f"lang.model_path={LANGID_MODEL}",
                        f"tokens.tokenizer={REPO / 'data' / 'tokenizer'}", f"executor.name={executor}", *overrides])


def yaml_config(name: str = "pairs_zh_tw", **sections: dict):
    """conf/curation/<name>.yaml as the entry point composes it (every value comes from there), with
    `section={key: value}` changes; the run's paths are left for the caller (check=False)."""
    from nemo_twvlm.curation.cli import compose_config
    from nemo_twvlm.curation.config import CurationConfig

    values = compose_config(name, [], check=False).to_dict()
    return CurationConfig.from_dict(merged(values, sections), check=False)


def merged(base: dict, changes: dict) -> dict:
    """`base` with `changes` merged in, nested mappings key by key."""
    out = dict(base)
    for key, value in changes.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def section(name: str, **changes):
    """A config section of pairs_zh_tw.yaml, with `changes`."""
    from dataclasses import replace

    return replace(getattr(yaml_config(), name), **changes)


def stage_args(section: str, **changes) -> dict:
    """A config section of pairs_zh_tw.yaml as the keyword arguments of the stage that reads it."""
    from dataclasses import asdict

    return asdict(getattr(yaml_config(), section)) | changes


def rejections(output_dir: Path) -> dict[str, dict]:
    """quarantine/index.jsonl by sample key."""
    lines = (output_dir / "quarantine" / "index.jsonl").read_text(encoding="utf-8").splitlines()
    return {entry["key"]: entry for entry in map(json.loads, lines)}


def assert_contract(output_dir: Path) -> dict:
    """stats.json has the contract's fields, input = kept + dropped + quarantined, and the
    quarantine index and the manifest account for every sample."""
    stats = json.loads((output_dir / "stats.json").read_text(encoding="utf-8"))
    for key, kind in (("input", int), ("kept", int), ("dropped", dict), ("quarantined", dict),
                      ("text_tokens", int), ("image_tokens", int)):
        assert isinstance(stats[key], kind), (key, stats[key])
    rejected = sum(stats["dropped"].values()) + sum(stats["quarantined"].values())
    assert stats["input"] == stats["kept"] + rejected
    index = (output_dir / "quarantine" / "index.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(index) == rejected
    manifest = json.loads((output_dir / "manifest.json").read_text(encoding="utf-8"))
    assert sum(s["samples"] for s in manifest["shards"]) == stats["kept"]
    return stats


def energon_samples(shards: Path) -> list:
    """Every sample Energon reads from curated shards, in order (no shuffling, no repeat)."""
    from megatron.energon import WorkerConfig, get_loader, get_train_dataset

    ds = get_train_dataset(str(shards), batch_size=None, shuffle_buffer_size=None, max_samples_per_sequence=None,
                           worker_config=WorkerConfig(rank=0, world_size=1, num_workers=0), repeat=False)
    return list(get_loader(ds))


def kept_meta(output_dir: Path) -> dict[str, dict]:
    """The json part of every kept sample, by key (documents keep theirs under "meta")."""
    kept = {}
    for shard in sorted((output_dir / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".json"):
                    part = json.loads(tar.extractfile(member).read())
                    meta = part.get("meta", part)
                    kept[meta["key"]] = meta
    return kept
