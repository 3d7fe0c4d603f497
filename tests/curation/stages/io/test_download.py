"""Parquet / JSONL rows of (url or path, caption): the download stage is bounded (http/https only,
size and time limits, retries, no private addresses, a per-host rate), against a local HTTP server
on 127.0.0.1, which the pipeline runs here are allowed to reach."""
from __future__ import annotations

import json
import threading
import time
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from curation_inputs import assert_contract, curate, draw, encode, rejections, section, zh_caption

from nemo_twvlm.curation.sample import ImageItem, Sample, SampleBatch
from nemo_twvlm.curation.stages.io import download
from nemo_twvlm.curation.stages.io.download import DownloadStage, HostRateLimiter, non_public

MAX_BYTES = 60_000


class Server:
    def __init__(self, images: dict[str, bytes]):
        self.images = images
        self.hits: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path
                server.hits[path] = server.hits.get(path, 0) + 1
                if path == "/slow.png":
                    time.sleep(2)
                if path == "/flaky.png" and server.hits[path] == 1:
                    return self._send(503, b"try again")
                if path == "/to-ftp.png" or path.startswith("/redirect/"):
                    self.send_response(302)
                    self.send_header("Location", path.removeprefix("/redirect/") if path != "/to-ftp.png"
                                     else "ftp://127.0.0.1/x.png")
                    self.end_headers()
                    return None
                if path == "/huge.png":
                    return self._send(200, b"\x89PNG" + b"\0" * (MAX_BYTES * 2), "image/png")
                if path == "/huge-unsized.png":  # no Content-Length: the limit is enforced while reading
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.end_headers()
                    self.wfile.write(b"\x89PNG" + b"\0" * (MAX_BYTES * 2))
                    return None
                name = path.rsplit("/", 1)[-1]
                if name in server.images:
                    return self._send(200, server.images[name], "image/png")
                return self._send(404, b"not found")

            def _send(self, code, body, ctype="text/plain"):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class QuietServer(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # the slow response finds its client gone: that is the point

        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


EXPECTED = {  # key -> reason
    "url_404": "download_failed",
    "url_huge": "download_too_large",
    "url_huge_unsized": "download_too_large",
    "url_slow": "download_timeout",
    "url_ftp": "download_bad_scheme",
    "url_redirect_ftp": "download_bad_scheme",
    "url_file_scheme": "download_bad_scheme",
    "path_missing": "missing_file",
    "row_no_caption": "missing_caption",
    "row_empty_caption": "empty_caption",
    "row_no_url": "missing_image",
    "url_corrupt": "corrupt_image",
}


@pytest.fixture(scope="module")
def run(tmp_path_factory, langid_model):
    rng = np.random.default_rng(5)
    images = {f"ok{i}.png": encode(draw(rng)) for i in range(4)}
    images["flaky.png"] = encode(draw(rng))
    images["corrupt.png"] = b"\x89PNG\r\n\x1a\n" + rng.bytes(300)
    server = Server(images)
    src = tmp_path_factory.mktemp("table_in")
    (src / "imgs").mkdir()
    (src / "imgs" / "local.png").write_bytes(encode(draw(rng)))
    u = server.url
    rows = [{"key": f"url_ok{i}", "url": f"{u}/img/ok{i}.png", "caption": zh_caption(rng)} for i in range(4)]
    rows += [
        {"key": "url_flaky", "url": f"{u}/flaky.png", "caption": zh_caption(rng)},
        {"key": "url_404", "url": f"{u}/nothing.png", "caption": zh_caption(rng)},
        {"key": "url_huge", "url": f"{u}/huge.png", "caption": zh_caption(rng)},
        {"key": "url_huge_unsized", "url": f"{u}/huge-unsized.png", "caption": zh_caption(rng)},
        {"key": "url_slow", "url": f"{u}/slow.png", "caption": zh_caption(rng)},
        {"key": "url_ftp", "url": "ftp://127.0.0.1/x.png", "caption": zh_caption(rng)},
        {"key": "url_redirect_ftp", "url": f"{u}/to-ftp.png", "caption": zh_caption(rng)},
        {"key": "url_file_scheme", "url": f"file://{src}/imgs/local.png", "caption": zh_caption(rng)},
        {"key": "url_corrupt", "url": f"{u}/corrupt.png", "caption": zh_caption(rng)},
    ]
    pq.write_table(pa.Table.from_pylist(rows), src / "rows.parquet")
    lines = [
        json.dumps({"key": "path_local", "url": "imgs/local.png", "caption": zh_caption(rng)}, ensure_ascii=False),
        json.dumps({"key": "path_missing", "url": "imgs/none.png", "caption": zh_caption(rng)}, ensure_ascii=False),
        json.dumps({"key": "row_no_caption", "url": f"{u}/img/ok0.png"}),
        json.dumps({"key": "row_empty_caption", "url": f"{u}/img/ok1.png", "caption": "  "}),
        json.dumps({"key": "row_no_url", "caption": zh_caption(rng)}, ensure_ascii=False),
        "{this line is not json",
    ]
    (src / "more_rows.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path_factory.mktemp("table_out")
    try:
        with pytest.MonkeyPatch.context() as env:  # a CI proxy must not intercept 127.0.0.1
            env.setenv("no_proxy", "127.0.0.1,localhost")
            env.setenv("NO_PROXY", "127.0.0.1,localhost")
            stats = curate(src, out, "input.format=table", f"download.max_bytes={MAX_BYTES}",
                           "download.timeout_s=1.0", "download.retries=1", "download.backoff_s=0.05",
                           "dedup.caption_jaccard=null", "download.allow_private_addresses=true")
    finally:
        server.close()
    return stats, out, server


def test_contract(run):
    stats, out, _ = run
    assert assert_contract(out) == stats
    assert stats["input"] == 13 + 6


def test_fetched_and_local_images_kept(run):
    stats, out, server = run
    rejected = rejections(out)
    for key in ("url_ok0", "url_ok1", "url_ok2", "url_ok3", "url_flaky", "path_local"):
        assert key not in rejected
    assert stats["kept"] == 6
    assert server.hits["/flaky.png"] == 2  # a 503, then a retry that succeeded
    assert server.hits["/nothing.png"] == 1  # a 404 is not retried


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_failure_counted_under_its_reason(run, key):
    _, out, _ = run
    assert rejections(out)[key]["reason"] == EXPECTED[key]


def test_bad_jsonl_line(run):
    stats, _, _ = run
    assert stats["quarantined"]["bad_row"] == 1


# --- private addresses and the per-host rate ------------------------------------------------------

@pytest.fixture
def server():
    rng = np.random.default_rng(6)
    server = Server({f"ok{i}.png": encode(draw(rng)) for i in range(5)})
    with pytest.MonkeyPatch.context() as env:
        env.setenv("no_proxy", "127.0.0.1,localhost")
        env.setenv("NO_PROXY", "127.0.0.1,localhost")
        yield server
    server.close()


def _fetch(urls: list[str], **options) -> SampleBatch:
    samples = [Sample(key=f"s{i}", index=i, segments=[ImageItem(url), "文字"]) for i, url in enumerate(urls)]
    stage = DownloadStage(section("download", timeout_s=2, retries=0, **options))
    return stage.process(SampleBatch(dataset_name="t", data=samples))


def test_private_addresses_are_refused_by_default_and_counted(server, tmp_path, langid_model):
    port = server.url.rsplit(":", 1)[1]
    urls = [f"{server.url}/img/ok0.png", f"http://localhost:{port}/img/ok1.png", f"http://[::1]:{port}/img/ok2.png",
            "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/x.png", "http://[::ffff:127.0.0.1]/x.png"]
    rows = [{"key": f"k{i}", "url": url, "caption": zh_caption(np.random.default_rng(i))} for i, url in enumerate(urls)]
    (tmp_path / "in").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in" / "rows.parquet")
    stats = curate(tmp_path / "in", tmp_path / "out", "input.format=table")
    assert stats["quarantined"] == {"download_private_address": len(urls)} and stats["kept"] == 0
    assert_contract(tmp_path / "out")
    assert server.hits == {}  # refused before connecting
    assert "127.0.0.1 (loopback)" in rejections(tmp_path / "out")["k0"]["detail"]


def test_a_redirect_to_a_private_address_is_refused(server, monkeypatch):
    """127.0.0.1 stands in for a public host here; localhost (the same server) stays private."""
    real = download.refused_host
    monkeypatch.setattr(download, "refused_host", lambda host, port: None if host == "127.0.0.1" else real(host, port))
    port = server.url.rsplit(":", 1)[1]
    batch = _fetch([f"{server.url}/img/ok0.png", f"{server.url}/redirect/http://localhost:{port}/img/ok1.png"])
    assert [s.key for s in batch.data] == ["s0"]
    (rejected,) = batch.rejected
    assert rejected.reason == "download_private_address" and "redirect to http://localhost" in rejected.detail
    assert "/img/ok1.png" not in server.hits


def test_allow_private_addresses(server):
    batch = _fetch([f"{server.url}/img/ok0.png"], allow_private_addresses=True)
    assert [s.key for s in batch.data] == ["s0"] and not batch.rejected


@pytest.mark.parametrize("address, kind", [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"), ("10.1.2.3", "private"),
    ("192.168.0.1", "private"), ("169.254.169.254", "link-local"), ("fe80::1%eth0", "link-local"),
    ("224.0.0.1", "multicast"), ("0.0.0.0", "unspecified"), ("240.0.0.1", "reserved"), ("100.64.0.1", "not global"),
    ("8.8.8.8", None), ("2001:4860:4860::8888", None),
])
def test_non_public_addresses(address, kind):
    assert non_public(address) == kind


def test_rate_limit_spaces_requests_to_one_host(server):
    start = time.monotonic()
    batch = _fetch([f"{server.url}/img/ok{i}.png" for i in range(5)], allow_private_addresses=True,
                   max_requests_per_host_per_s=10, threads=5)
    elapsed = time.monotonic() - start
    assert len(batch.data) == 5
    assert elapsed >= 0.35, elapsed  # 5 requests at 10/s: the last may leave 0.4 s after the first


def test_rate_limiter_is_per_host(monkeypatch):
    """On a fake clock: one host's requests leave 1/rate apart, another host's do not wait for them."""
    clock = types.SimpleNamespace(now=0.0)
    fake = types.SimpleNamespace(monotonic=lambda: clock.now,
                                 sleep=lambda s: setattr(clock, "now", clock.now + s))
    monkeypatch.setattr(download, "time", fake)
    limiter, starts = HostRateLimiter(10), []
    for host in ("a", "a", "a", "b", "a"):
        limiter.wait(host)
        starts.append((host, round(clock.now, 6)))
    assert starts == [("a", 0.0), ("a", 0.1), ("a", 0.2), ("b", 0.2), ("a", 0.3)]
