"""Fetch the images rows and documents name: http/https only, bounded in size and time, with retries.

Local paths (relative to the input file's folder) are read when `allow_local_paths`; any other
scheme (file:, ftp:, data:...) is refused, and so is a redirect to one.
"""
from __future__ import annotations

import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from nemo_curator.stages.base import ProcessingStage
from nemo_curator.stages.resources import Resources

from nemo_twvlm.curation.config import DownloadConfig
from nemo_twvlm.curation.sample import ImageItem, Reject, Sample, SampleBatch

_EXT_OF = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}


class _Transient(Reject):
    """A failure worth retrying: a 5xx, 408 or 429 answer, a timeout, a dropped connection."""


class _SchemeGuard(urllib.request.HTTPRedirectHandler):
    def __init__(self, schemes: set[str]):
        self.schemes = schemes

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urlsplit(newurl).scheme.lower() not in self.schemes:
            raise Reject("download_bad_scheme", f"redirect to {newurl[:200]}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


@dataclass
class DownloadStage(ProcessingStage[SampleBatch, SampleBatch]):
    # Defaults (and their meaning) live once, in the pipeline config.
    schemes: list[str] = field(default_factory=lambda: DownloadConfig().schemes)
    allow_local_paths: bool = DownloadConfig.allow_local_paths
    max_bytes: int = DownloadConfig.max_bytes
    timeout_s: float = DownloadConfig.timeout_s
    retries: int = DownloadConfig.retries
    backoff_s: float = DownloadConfig.backoff_s
    threads: int = DownloadConfig.threads
    name: str = "download"
    # Threads wait on sockets, not on the CPU.
    resources: Resources = field(default_factory=lambda: Resources(cpus=0.5))

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def process(self, batch: SampleBatch) -> SampleBatch:
        allowed = {s.lower() for s in self.schemes}
        opener = urllib.request.build_opener(_SchemeGuard(allowed))
        pending = [(s, item) for s, item in batch.images() if item.data is None]
        with ThreadPoolExecutor(max_workers=max(1, self.threads)) as pool:
            results = dict(zip([id(item) for _, item in pending],
                               pool.map(lambda p: self._fetch(p[1], allowed, opener), pending)))

        def check(sample: Sample) -> None:
            for item in sample.images:
                if item.data is None:
                    error = results[id(item)]
                    raise Reject(error.reason, error.detail)
        return batch.apply(self.name, check)

    def _fetch(self, item: ImageItem, allowed: set[str], opener) -> Reject | None:
        """Fill `item.data` and `item.ext`; return the Reject that explains a failure instead."""
        try:
            item.data = self._get(item, allowed, opener)
            return None
        except Reject as r:
            return r

    def _get(self, item: ImageItem, allowed: set[str], opener) -> bytes:
        scheme = urlsplit(item.ref).scheme.lower()
        if len(scheme) <= 1:  # no scheme, or a Windows drive letter: a path
            return self._read_local(item)
        if scheme not in allowed:
            raise Reject("download_bad_scheme", f"{scheme}: not in {sorted(allowed)}")
        last: _Transient | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                return self._http(item, opener)
            except _Transient as t:
                last = t
        raise Reject(last.reason, f"{last.detail} (after {self.retries + 1} tries)")

    def _http(self, item: ImageItem, opener) -> bytes:
        deadline = time.monotonic() + self.timeout_s
        request = urllib.request.Request(item.ref, headers={"User-Agent": "nemo_twvlm-curation/0.1"})
        try:
            with opener.open(request, timeout=self.timeout_s) as response:
                length = response.headers.get("Content-Length")
                if length and length.isdigit() and int(length) > self.max_bytes:
                    raise Reject("download_too_large", f"Content-Length {length} > {self.max_bytes}")
                chunks, size = [], 0
                while chunk := response.read(1 << 16):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise Reject("download_too_large", f"more than {self.max_bytes} bytes")
                    if time.monotonic() > deadline:
                        raise Reject("download_timeout", f"slower than {self.timeout_s}s in total")
                    chunks.append(chunk)
                item.ext = _EXT_OF.get(response.headers.get_content_type(), "")
                item.meta["url"] = item.ref
                return b"".join(chunks)
        except urllib.error.HTTPError as e:
            if e.code >= 500 or e.code in (408, 429):
                raise _Transient("download_failed", f"HTTP {e.code}") from None
            raise Reject("download_failed", f"HTTP {e.code}") from None
        except TimeoutError as e:
            raise _Transient("download_timeout", str(e) or "timed out") from None
        except urllib.error.URLError as e:
            reason = "download_timeout" if isinstance(e.reason, TimeoutError) else "download_failed"
            raise _Transient(reason, str(e.reason)) from None
        except OSError as e:  # connection reset / refused
            raise _Transient("download_failed", f"{type(e).__name__}: {e}") from None

    def _read_local(self, item: ImageItem) -> bytes:
        if not self.allow_local_paths:
            raise Reject("download_bad_scheme", "local paths are not allowed (download.allow_local_paths)")
        path = Path(item.meta.get("base_dir", ".")) / item.ref
        if not path.is_file():
            raise Reject("missing_file", str(path))
        if path.stat().st_size > self.max_bytes:
            raise Reject("download_too_large", f"{path.stat().st_size} bytes > {self.max_bytes}")
        item.meta["path"] = str(path)
        return path.read_bytes()
