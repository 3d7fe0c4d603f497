"""download.timeout_s bounds the whole transfer: a 127.0.0.1 server that drips its body one byte at
a time is cut off as `download_timeout` at about timeout_s, not held for as long as it keeps dripping."""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from curation_inputs import draw, encode, section

from nemo_twvlm.curation.sample import ImageItem, Sample, SampleBatch
from nemo_twvlm.curation.stages.io.download import DownloadStage

TIMEOUT_S = 1.0
DRIP_S = 0.02  # per byte: each receive returns well within any per-receive timeout
IMAGE = encode(draw(np.random.default_rng(0)))


@pytest.fixture(scope="module")
def server(monkeypatch_module):
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            if self.path != "/drip-unsized.png":
                self.send_header("Content-Length", str(len(IMAGE)))
            self.end_headers()
            if self.path == "/fast.png":
                self.wfile.write(IMAGE)
                return
            for byte in IMAGE:  # len(IMAGE) * DRIP_S, far past TIMEOUT_S
                if stop.is_set():
                    return
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(DRIP_S)

    class QuietServer(ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            pass  # the dripping handler finds its client gone: that is the point

    httpd = QuietServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch_module.setenv("no_proxy", "127.0.0.1,localhost")  # a CI proxy must not intercept 127.0.0.1
    monkeypatch_module.setenv("NO_PROXY", "127.0.0.1,localhost")
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    stop.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def fetch(*urls: str) -> tuple[SampleBatch, float]:
    batch = SampleBatch(dataset_name="d", data=[Sample(key=str(i), index=i, segments=[ImageItem(ref=u), "台灣"])
                                                 for i, u in enumerate(urls)])
    stage = DownloadStage(section("download", timeout_s=TIMEOUT_S, retries=2, backoff_s=0.05,
                                  allow_private_addresses=True))
    start = time.monotonic()
    return stage.process(batch), time.monotonic() - start


@pytest.mark.parametrize("name", ["drip.png", "drip-unsized.png"])
def test_dripping_body_is_cut_off_at_the_deadline(server, name):
    assert len(IMAGE) * DRIP_S > 5 * TIMEOUT_S
    batch, wall_s = fetch(f"{server}/{name}")
    assert wall_s < TIMEOUT_S + 1.0
    assert not batch.data and [r.reason for r in batch.rejected] == ["download_timeout"]
    assert "in total" in batch.rejected[0].detail
    assert batch.stage_counts()["download"] == {"in": 1, "out": 0, "rejected": {"download_timeout": 1}}


def test_fast_transfer_beside_a_drip_is_unchanged(server):
    batch, _ = fetch(f"{server}/fast.png", f"{server}/drip.png")
    assert [s.key for s in batch.data] == ["0"] and batch.data[0].images[0].data == IMAGE
    assert [(r.key, r.reason) for r in batch.rejected] == [("1", "download_timeout")]
