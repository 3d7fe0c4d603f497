"""Read one WebDataset tar into batches of samples; malformed samples are rejected, never raised.

The images of a plain tar are not read here: each image item gets its byte range in the tar (its
`span`) and no bytes, and decode_verify reads a part's images when it starts on that part. A worker
so holds one part's images, not the whole input file's (storage.iter_tar_samples)."""
from __future__ import annotations

import json
import os
import tarfile
from dataclasses import asdict, dataclass

from nemo_twvlm.curation.parts import split_parts
from nemo_twvlm.curation.sample import ImageItem, InputFile, InputSpan, Reject, Rejection, Sample, SampleBatch
from nemo_twvlm.curation.stages.io.reader import ReaderStage
from nemo_twvlm.curation.storage import TarTruncated, iter_tar_samples, read_input_spans


@dataclass
class WebDatasetReaderStage(ReaderStage):
    """Pairs: an image part (first of `formats` present) and `txt`, or `json` with a `caption`.
    Interleaved: a `json` part `{"segments": [text | {"image": "<part>"}, ...]}` naming image parts
    of the same sample (the layout `nemo_twvlm.data.synthetic` writes)."""

    input_dir: str
    work_dir: str
    kind: str
    formats: list[str]  # image.formats
    batch_samples: int
    name: str = "read"

    def read(self, path: str, source: str, dataset_name: str) -> list[SampleBatch]:
        samples: list[Sample] = []
        rejected: list[Rejection] = []
        index = 0
        try:
            stat = os.stat(path)  # before reading: a change while it is read shows at decode or shard writing
            file = InputFile(os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
            for key, parts, spans in iter_tar_samples(path, defer=self._is_image):
                sample = Sample(key=key, index=index, segments=[], raw=parts)
                try:
                    sample.segments = self._segments(parts)
                    for item in sample.images:  # the shards read pass-through images back from the tar
                        if item.ref in spans and item.data is parts[item.ref]:
                            item.span = InputSpan(file, *spans[item.ref], item.data)
                    refs = {item.ref for item in sample.images}
                    _read_parts(file, parts, spans, [ext for ext in parts if ext not in refs])  # unused formats
                    samples.append(sample)
                except Reject as r:
                    _read_parts(file, parts, spans, list(parts))
                    rejected.append(Rejection(key, index, self.name, r.reason, r.detail, parts))
                index += 1
        except TarTruncated as t:
            rejected.append(Rejection(t.key or f"{source}@{index}", index, self.name, "truncated_tar",
                                      t.detail, t.parts))
        except (tarfile.TarError, OSError) as e:
            rejected.append(Rejection(source, index, self.name, "unreadable_tar", f"{type(e).__name__}: {e}"))
        return split_parts(dataset_name, source, samples, rejected, self.batch_samples, self.work_dir, self.name)

    def _is_image(self, ext: str) -> bool:
        """A part to leave in the tar: one of image.formats, as a pair's `jpg` or a document's `0.jpg`."""
        return ext.rsplit(".", 1)[-1] in self.formats

    def _segments(self, parts: dict[str, bytes | None]) -> list:
        if self.kind == "interleaved":
            return self._document(parts)
        image_ext = next((ext for ext in self.formats if ext in parts), None)
        if image_ext is None:
            raise Reject("missing_image", f"parts {sorted(parts)} hold none of {self.formats}")
        if parts[image_ext] == b"":  # None: not read yet (never empty)
            raise Reject("empty_image", f"{image_ext} is 0 bytes")
        return [ImageItem(ref=image_ext, data=parts[image_ext], ext=image_ext), _caption(parts)]

    def _document(self, parts: dict[str, bytes | None]) -> list:
        if "json" not in parts:
            raise Reject("missing_caption", f"no json part among {sorted(parts)}")
        doc = _json(parts["json"])
        segments = doc.get("segments") if isinstance(doc, dict) else None
        if not isinstance(segments, list) or not segments:
            raise Reject("bad_caption_json", "json has no non-empty 'segments' list")
        out: list = []
        for seg in segments:
            if isinstance(seg, str):
                out.append(seg)
            elif isinstance(seg, dict) and isinstance(seg.get("image"), str):
                ref = seg["image"]
                if ref not in parts:
                    raise Reject("missing_image", f"segment names part {ref!r}, not in {sorted(parts)}")
                if parts[ref] == b"":
                    raise Reject("empty_image", f"{ref} is 0 bytes")
                out.append(ImageItem(ref=ref, data=parts[ref], ext=ref.rsplit(".", 1)[-1]))
            else:
                raise Reject("bad_caption_json", f"segment {seg!r:.80} is neither text nor {{'image': part}}")
        if not any(isinstance(s, ImageItem) for s in out):
            raise Reject("missing_image", "document has no image segment")
        if not any(isinstance(s, str) and s.strip() for s in out):
            raise Reject("empty_caption", "document has no text segment")
        return out


def _read_parts(file: InputFile, parts: dict[str, bytes | None], spans: dict[str, tuple[int, int]],
                exts: list[str]) -> None:
    """Read those of `exts` the tar scan left in the file: a rejected sample's, for the quarantine, and
    image formats no image item names (a sample with both `jpg` and `png` ships one)."""
    deferred = [ext for ext in exts if parts[ext] is None]
    if deferred:
        data = read_input_spans(asdict(file), [spans[ext] for ext in deferred], f"the reader of {file.path}")
        parts.update(zip(deferred, data))


def _text(data: bytes, part: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Reject("caption_not_utf8", f"{part}: {e}") from None


def _json(data: bytes):
    try:
        return json.loads(_text(data, "json"))
    except json.JSONDecodeError as e:
        raise Reject("bad_caption_json", str(e)) from None


def _caption(parts: dict[str, bytes]) -> str:
    if "txt" in parts:
        text = _text(parts["txt"], "txt")
    elif "json" in parts:
        meta = _json(parts["json"])
        text = meta.get("caption") if isinstance(meta, dict) else None
        if not isinstance(text, str):
            raise Reject("missing_caption", "json part has no string 'caption'")
    else:
        raise Reject("missing_caption", f"no txt or json part among {sorted(parts)}")
    if not text.strip():
        raise Reject("empty_caption")
    return text
