"""Read img2dataset's webdataset output: per sample `<key>.<jpg|png|webp>`, `<key>.txt` (the caption,
"" when the row had none) and the `<key>.json` sidecar (url, key, status, sizes, hashes and the extra
columns). The `<shard>_stats.json` and `<shard>.parquet` beside the tars summarise every url tried,
failed ones included: they are not inputs and are not read."""
from __future__ import annotations

from dataclasses import dataclass

from nemo_twvlm.curation.sample import Reject
from nemo_twvlm.curation.stages.io.read_webdataset import WebDatasetReaderStage, _json


@dataclass
class Img2DatasetReaderStage(WebDatasetReaderStage):
    """Pairs as the webdataset reader reads them; the sidecar's url goes with the image into the
    output metadata, and a sidecar of the wrong shape is rejected under a named reason."""

    def _segments(self, parts: dict[str, bytes]) -> list:
        segments = super()._segments(parts)
        if "json" not in parts:
            return segments
        sidecar = _json(parts["json"])
        if not isinstance(sidecar, dict):
            raise Reject("bad_field_type", f"json sidecar is a {type(sidecar).__name__}, expected an object")
        status = sidecar.get("status", "success")
        if status != "success":  # img2dataset writes only successes to tars; anything else is not an image
            raise Reject("download_failed", f"sidecar status {status!r}: {sidecar.get('error_message')!r:.200}")
        url = sidecar.get("url")
        if url is not None and not isinstance(url, str):
            raise Reject("bad_field_type", f"json sidecar 'url' is {type(url).__name__}, expected a string")
        if url:
            segments[0].meta["url"] = url
        return segments
