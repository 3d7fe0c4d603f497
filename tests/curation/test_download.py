"""Parquet / JSONL rows of (url or path, caption): the download stage is bounded (http/https only,
size and time limits, retries), against a local HTTP server on 127.0.0.1."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from curation_inputs import assert_contract, curate, draw, encode, rejections, zh_caption

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
                if path == "/to-ftp.png":
                    self.send_response(302)
                    self.send_header("Location", "ftp://127.0.0.1/x.png")
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
                           "download.timeout_s=0.5", "download.retries=1", "download.backoff_s=0.05",
                           "dedup.caption_jaccard=null")
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
