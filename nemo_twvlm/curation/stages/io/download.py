"""Fetch the images rows and documents name: http/https only, bounded in size and time, with retries.

Local paths (relative to the input file's folder, or the image folder its config names) are read
when `allow_local_paths`, and only inside that folder (`confined_path`); any other scheme (file:,
ftp:, data:...) is refused, and so is a redirect to one. The whole body must arrive within
`timeout_s` (`read_within`). Unless `allow_private_addresses`, a host is resolved first and
refused when any of its addresses is not public (private, loopback, link-local, multicast,
reserved...), on every redirect too, so a table cannot make the downloader reach the cluster's
own network. The connection resolves the name again: a DNS server that answers differently the
second time (rebinding) is not caught here. `max_requests_per_host_per_s` spaces the requests
each worker process sends to one host.
"""
from __future__ import annotations

import functools
import ipaddress
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from nemo_curator.stages.resources import Resources

from nemo_twvlm.curation.config import DownloadConfig
from nemo_twvlm.curation.sample import ImageItem, Reject, Sample, SampleBatch
from nemo_twvlm.curation.stages.base import CurationStage

_EXT_OF = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}


class _Transient(Reject):
    """A failure worth retrying: a 5xx, 408 or 429 answer, a timeout, a dropped connection."""


class _RedirectGuard(urllib.request.HTTPRedirectHandler):
    """A redirect target passes the checks the first url passed."""

    def __init__(self, admit):
        self.admit = admit

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        self.admit(newurl, redirect=True)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def non_public(address: str) -> str | None:
    """What makes an IP address one a downloader must not reach, or None for a public one."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # without an IPv6 zone ("fe80::1%eth0")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:  # ::ffff:127.0.0.1 is 127.0.0.1
        ip = ip.ipv4_mapped
    for kind in ("loopback", "link_local", "multicast", "unspecified", "reserved", "private"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if ip.is_global else "not global"  # e.g. 100.64.0.0/10, carrier-grade NAT


def refused_host(host: str, port: int) -> str | None:
    """Why `host` must not be fetched from (the first non-public address it resolves to), or None."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise _Transient("download_failed", f"cannot resolve {host!r}: {e}") from None
    for *_, sockaddr in infos:
        kind = non_public(sockaddr[0])
        if kind:
            return f"{host} resolves to {sockaddr[0]} ({kind})"
    return None


def confined_path(base_dir: str, ref: str) -> Path:
    """The file a row's image path `ref` names under `base_dir`, or a Reject (`path_outside_input`)
    when it leaves that folder: an absolute path elsewhere (/etc/passwd), or `../`. The path is
    normalised as written and that normalised path is the one read, so what is checked is what is
    opened (a `link/..` cannot step out through a symlink). Symlinks inside the folder are the data
    owner's and are followed: a Hugging Face snapshot is made of them."""
    base = os.path.abspath(base_dir)
    path = os.path.normpath(os.path.join(base, ref))  # an absolute `ref` replaces `base`
    if os.path.commonpath([base, path]) != base:
        raise Reject("path_outside_input", f"image path {ref[:200]!r} is {path[:200]}, outside the input folder "
                                           f"{base}")
    return Path(path)


class HostRateLimiter:
    """A token bucket per host holding one token, refilled `rate` times a second: requests to one
    host leave 1/rate s apart, with no burst. Shared by every thread (and batch) of a process."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}  # host -> when its next token is there

    def wait(self, host: str) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next.get(host, now))
            self._next[host] = start + self.interval
            if len(self._next) > 100_000:  # a crawl of many hosts: forget those whose bucket is full
                self._next = {h: t for h, t in self._next.items() if t > now}
        if start > now:
            time.sleep(start - now)


@functools.cache
def host_limiter(rate: float) -> HostRateLimiter:
    """One limiter per rate and process, so the limit holds across batches, not only within one."""
    return HostRateLimiter(rate)


def read_within(response, deadline: float, max_bytes: int, timeout_s: float) -> bytes:
    """The body of an http.client response by `deadline` (time.monotonic()), or a Reject:
    `download_timeout` (not retried: the whole transfer was too slow), `download_too_large`.

    `read1` returns what one receive brings and each receive may wait only until the deadline, so a
    server dripping a byte at a time cannot hold a thread past it; `read(n)` would wait for all n bytes
    under a timeout that restarts with every byte. The headers, read by urllib before this, are bounded
    per receive only (by `timeout_s`).
    """
    # The socket under the response's buffered reader: http.client exposes no other way to bound a receive.
    sock = getattr(getattr(response.fp, "raw", None), "_sock", None)
    chunks, size = [], 0
    while True:
        left = deadline - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError
            if sock is not None:
                sock.settimeout(left)
            chunk = response.read1(1 << 16)
        except TimeoutError:  # the deadline, between receives or during one
            raise Reject("download_timeout", f"slower than {timeout_s}s in total ({size} bytes by then)") from None
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            raise Reject("download_too_large", f"more than {max_bytes} bytes")
        chunks.append(chunk)


@dataclass
class DownloadStage(CurationStage[SampleBatch, SampleBatch]):
    download: DownloadConfig  # download.* (conf/curation/pairs_zh_tw.yaml says what each field means)
    name: str = "download"
    # Threads wait on sockets, not on the CPU.
    resources: Resources = field(default_factory=lambda: Resources(cpus=0.5))

    def process(self, batch: SampleBatch) -> SampleBatch:
        allowed = {s.lower() for s in self.download.schemes}
        opener = urllib.request.build_opener(_RedirectGuard(functools.partial(self._admit, allowed=allowed)))
        pending = [(s, item) for s, item in batch.images() if item.data is None]
        with ThreadPoolExecutor(max_workers=max(1, self.download.threads)) as pool:
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
        if len(urlsplit(item.ref).scheme) <= 1:  # no scheme, or a Windows drive letter: a path
            return self._read_local(item)
        last: _Transient | None = None
        for attempt in range(self.download.retries + 1):
            if attempt:
                time.sleep(self.download.backoff_s * 2 ** (attempt - 1))
            try:
                self._admit(item.ref, allowed=allowed)
                return self._http(item, opener)
            except _Transient as t:
                last = t
        raise Reject(last.reason, f"{last.detail} (after {self.download.retries + 1} tries)")

    def _admit(self, url: str, *, allowed: set[str], redirect: bool = False) -> None:
        """Refuse a url (or redirect target) by scheme or address; wait for its host's rate limit."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in allowed:
            raise Reject("download_bad_scheme",
                         f"redirect to {url[:200]}" if redirect else f"{scheme}: not in {sorted(allowed)}")
        try:
            host, port = parts.hostname, parts.port or (443 if scheme == "https" else 80)
        except ValueError as e:  # a port that is not a number, or out of range
            raise Reject("download_failed", f"{e}: {url[:200]}") from None
        if not host:
            raise Reject("download_failed", f"no host in {url[:200]}")
        if not self.download.allow_private_addresses:
            refused = refused_host(host, port)
            if refused:
                raise Reject("download_private_address",
                             f"{refused}{f' (redirect to {url[:200]})' if redirect else ''}; "
                             "download.allow_private_addresses=true allows it")
        if self.download.max_requests_per_host_per_s:
            host_limiter(self.download.max_requests_per_host_per_s).wait(host)

    def _http(self, item: ImageItem, opener) -> bytes:
        deadline = time.monotonic() + self.download.timeout_s
        request = urllib.request.Request(item.ref, headers={"User-Agent": "nemo_twvlm-curation/0.1"})
        try:
            with opener.open(request, timeout=self.download.timeout_s) as response:
                length = response.headers.get("Content-Length")
                if length and length.isdigit() and int(length) > self.download.max_bytes:
                    raise Reject("download_too_large", f"Content-Length {length} > {self.download.max_bytes}")
                body = read_within(response, deadline, self.download.max_bytes, self.download.timeout_s)
                item.ext = _EXT_OF.get(response.headers.get_content_type(), "")
                item.meta["url"] = item.ref
                return body
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
        if not self.download.allow_local_paths:
            raise Reject("download_bad_scheme", "local paths are not allowed (download.allow_local_paths)")
        path = confined_path(item.meta.get("base_dir", "."), item.ref)
        if not path.is_file():
            raise Reject("missing_file", str(path))
        if path.stat().st_size > self.download.max_bytes:
            raise Reject("download_too_large", f"{path.stat().st_size} bytes > {self.download.max_bytes}")
        item.meta["path"] = str(path)
        return path.read_bytes()
