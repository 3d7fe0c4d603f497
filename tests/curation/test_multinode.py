"""A pipeline joins a Ray cluster that is already running, as it does on the head of a Slurm allocation
(nemo_twvlm.launch.ray_cluster): a head and a second `ray start` node on this machine, one CPU each, on
free ports and behind a token of their own. The run is byte-identical to the in-process one. A node lost
mid-run is either survived (Ray reruns its tasks on the head) or costs a rerun, which resumes from the
parts already written; either way the bytes are the same."""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from curation_inputs import LANGID_MODEL, REPO, assert_contract, curate, good_pairs, write_tar

RAY = str(Path(sys.executable).with_name("ray"))
OVERRIDES = ("input.batch_samples=6", "shards.samples_per_shard=7")
# Run as a driver of its own, so this test process never joins the cluster it kills nodes of.
WAIT_FOR_NODES = """
import sys, time, ray
ray.init(address=sys.argv[1], log_to_driver=False)
deadline = time.monotonic() + float(sys.argv[3])
while sum(node["Alive"] for node in ray.nodes()) != int(sys.argv[2]):
    if time.monotonic() > deadline:
        sys.exit(f"alive: {sum(node['Alive'] for node in ray.nodes())}")
    time.sleep(0.2)
"""


def _outputs(out: Path) -> dict[str, bytes]:
    files = ["manifest.json", "stats.json", "quarantine/index.jsonl"]
    files += [str(p.relative_to(out)) for p in sorted((out / "shards").glob("*.tar"))]
    files += [str(p.relative_to(out)) for p in sorted((out / "quarantine").glob("*/*.tar"))]
    return {name: (out / name).read_bytes() for name in files}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    """Two Ray nodes started by `ray start --block`, each in its own session so that it and everything it
    starts (raylet, workers) can be ended by id, without `ray stop`, which ends every Ray on the machine."""

    def __init__(self):
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        # Short paths: Ray's Unix sockets live under the temp dir and their paths are limited to 107 bytes.
        self.dirs = [tempfile.mkdtemp(prefix="rayh", dir="/tmp"), tempfile.mkdtemp(prefix="rayw", dir="/tmp")]
        # Ray 2.60 turns token authentication on when it finds ~/.ray/auth_token (any local ray.init leaves
        # one): every process of this cluster gets its own token, as the Slurm job's do (launch.ray_cluster).
        token = Path(self.dirs[0]) / "auth_token"
        token.write_text(secrets.token_hex(32))
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
        self.head = self._start(self.dirs[0], "--head", f"--port={self.port}", "--include-dashboard=false",
                                f"--ray-client-server-port={_free_port()}")
        self.worker: subprocess.Popen | None = None

    def join_worker(self, timeout_s: float = 90) -> None:
        """Start the second node once the head is up, as the Slurm script does, and wait for it to join.
        On a loaded machine a worker can still give up on the head's pubsub ("Failed to connect to the
        observability pubsub", seen beside a TP-2 training run): it gets one more start, on fresh ports."""
        self.wait_for_nodes(1, timeout_s)
        for attempt in (1, 2):
            self.worker = self._start(self.dirs[1], f"--address={self.address}")
            try:
                self.wait_for_nodes(2, timeout_s)
                return
            except AssertionError:
                self.kill(self.worker)
                if attempt == 2:
                    raise

    def _start(self, temp_dir: str, *args: str) -> subprocess.Popen:
        ports = {flag: _free_port() for flag in ("--dashboard-agent-listen-port", "--metrics-export-port",
                                                 "--runtime-env-agent-port")}
        command = [RAY, "start", "--block", "--disable-usage-stats", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                   "--num-gpus=0", "--object-store-memory=100000000", f"--temp-dir={temp_dir}",
                   *(f"{flag}={port}" for flag, port in ports.items()), *args]
        with open(Path(temp_dir) / "ray_start.log", "wb") as log:  # the child keeps its own descriptor
            return subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_for_nodes(self, n: int, timeout_s: float = 90) -> None:
        """Until exactly n nodes are alive."""
        wait = subprocess.run([sys.executable, "-c", WAIT_FOR_NODES, self.address, str(n), str(timeout_s)],
                              env=self.env, capture_output=True, text=True, timeout=timeout_s + 60)
        assert wait.returncode == 0, f"{n} Ray nodes did not join within {timeout_s} s: {wait.stderr[-2000:]}"

    def kill(self, node: subprocess.Popen) -> None:
        """SIGKILL a node: its `ray start` and every process under it, as if the machine went away."""
        try:
            procs = [psutil.Process(node.pid), *psutil.Process(node.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            procs = []
        for proc in procs:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        try:
            os.killpg(node.pid, signal.SIGKILL)  # the session it was started in: what re-parented itself
        except ProcessLookupError:
            pass
        node.wait()

    def stop(self) -> None:
        if self.worker is not None:
            self.kill(self.worker)
        self.kill(self.head)
        for temp_dir in self.dirs:
            shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def cluster():
    cluster = LocalCluster()
    try:
        cluster.join_worker()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def source(tmp_path_factory, langid_model):
    """Four input files of 30 pairs each (20 parts of 6), and the in-process run's outputs."""
    rng = np.random.default_rng(5)
    src = tmp_path_factory.mktemp("multinode_in")
    for i in range(4):
        samples = good_pairs(rng, 30, prefix=f"s{i}_")
        samples[5] = (f"s{i}_bad", {"png": b"", "txt": "壞掉的圖片".encode()})  # quarantined
        samples[9] = (f"s{i}_dup", dict(samples[3][1]))                         # exact duplicate
        write_tar(src / f"{i:03d}.tar", samples)
    reference = tmp_path_factory.mktemp("multinode_ref")
    curate(src, reference, *OVERRIDES)
    return src, reference


def _driver(src: Path, out: Path, cluster: LocalCluster) -> subprocess.Popen:
    """The pipeline as the head runs it: the curate command, with RAY_ADDRESS naming the cluster."""
    command = [sys.executable, "-m", "nemo_twvlm.curation", "--config-name", "pairs_zh_tw", f"input_dir={src}",
               f"output_dir={out}", f"lang.model_path={LANGID_MODEL}", f"tokens.tokenizer={REPO / 'data' / 'tokenizer'}",
               "executor.name=ray_data", *OVERRIDES]
    env = {**cluster.env, "RAY_ADDRESS": cluster.address, "PYTHONPATH": str(REPO)}
    with open(out.parent / f"{out.name}.log", "ab") as log:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _finish(proc: subprocess.Popen, timeout_s: float) -> int:
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait()


def _ran_on(temp_dir: str, task: str) -> int:
    """How many times a node started `task`: Ray marks each task it starts with a `:task_name:` line in the
    worker's log, under the node's temp dir."""
    return sum(path.read_text(errors="replace").count(f":task_name:{task}")
               for path in Path(temp_dir).glob("session_2*/logs/worker-*.out"))


def _parts(out: Path) -> dict[Path, int]:
    """The completed parts' markers, with their modification times."""
    return {path: path.stat().st_mtime_ns for path in (out / "work" / "analysed").glob("*/part-*.json")}


@pytest.mark.slow
def test_two_node_ray_cluster_matches_in_process(source, cluster, tmp_path):
    src, reference = source
    out = tmp_path / "out"
    proc = _driver(src, out, cluster)
    assert _finish(proc, 300) == 0, (out.parent / "out.log").read_text()[-3000:]
    assert _outputs(out) == _outputs(reference)
    stats = assert_contract(out)
    assert stats["dropped"] == {"exact_duplicate": 4} and stats["quarantined"] == {"empty_image": 4}
    # Curator sets each stage up on every node; which node runs a part is Ray's choice, and may be the head's.
    assert _ran_on(cluster.dirs[1], "_setup_stage_on_node") > 0, "the second node took no part"


@pytest.mark.slow
@pytest.mark.parametrize("lost", ["worker", "worker_and_pipeline"])
def test_a_node_lost_mid_run_then_rerun_gives_the_same_bytes(source, cluster, tmp_path, lost):
    """`worker`: Ray may finish on the head alone or fail. `worker_and_pipeline`: as Slurm does when a node
    of the job fails, the pipeline on the head dies too; the rerun keeps the parts that were complete."""
    src, reference = source
    out = tmp_path / "out"
    proc = _driver(src, out, cluster)
    try:
        deadline = time.monotonic() + 240
        # Parts can finish in a burst: poll often, and kill the pipeline before the node (whose processes
        # are found and killed one by one), or all 20 may be done before it dies (1 run in ~6 did).
        while not _parts(out):
            assert proc.poll() is None, (out.parent / "out.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no part finished within 240 s"
            time.sleep(0.005)
        if lost == "worker_and_pipeline":
            os.killpg(proc.pid, signal.SIGKILL)
        cluster.kill(cluster.worker)
        assert not (out / "stats.json").exists(), "the node was lost after the run finished: nothing was tested"
        _finish(proc, 180)
    finally:
        _finish(proc, 0)
    done = _parts(out)
    if lost == "worker_and_pipeline":
        assert 1 <= len(done) < 20, "4 sources x 5 parts: the rerun must have had work left"

    # A rerun is a new Slurm job, whose cluster has only live nodes; this one must first see the node as dead
    # (Curator's setup_on_node pins a task to every node it lists).
    cluster.wait_for_nodes(1)
    rerun = _driver(src, out, cluster)
    assert _finish(rerun, 300) == 0, (out.parent / "out.log").read_text()[-3000:]
    assert _outputs(out) == _outputs(reference)
    assert_contract(out)
    assert {path: mtime for path, mtime in _parts(out).items() if path in done} == done  # resumed, not redone
