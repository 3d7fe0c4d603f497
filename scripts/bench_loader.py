"""Training-loader throughput: our Energon loader (decode, CLIP preprocessing, tokenisation, packing)
against a plain WebDataset pipeline that only decodes the same shards (PNG -> tensor, caption -> str).

Both read the synthetic `pairs` shards in the same process, count the same number of samples after a
warm-up, and use the same micro-batch size. A third pipeline runs our task encoder's `encode_sample` on
the plainly decoded samples (no Energon), to split the gap into "our per-sample work" and "Energon's
machinery + packing". With num_workers=0 the pipelines are timed in alternating turns of --chunk samples
so that load from other jobs on the machine falls on all of them alike.

    .venv/bin/python scripts/bench_loader.py                      # num_workers=0
    .venv/bin/python scripts/bench_loader.py --num-workers 0 2    # also with 2 worker processes

The data is generated with `nemo_twvlm.data.synthetic` into --data when it is missing. Other bench_*
scripts import `machine_info` and `ensure_data` from here.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT / "runs" / "bench_data"


def machine_info() -> dict:
    """What BENCHMARKS.md records about the machine and the stack."""
    import importlib.metadata as md

    import torch

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for dist in ("torch", "megatron-core", "megatron-energon", "webdataset", "transformers"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = "absent"
    import subprocess

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "?"

    commit = git("rev-parse", "--short", "HEAD")
    if git("status", "--porcelain", "--", "nemo_twvlm", "recipes"):
        commit += " + uncommitted changes in nemo_twvlm/recipes"
    return {
        "commit": commit,
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "arch": platform.machine(),
        "gpu": torch.cuda.is_available(),
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        **versions,
    }


def print_machine(info: dict) -> None:
    print(f"machine: {info['nproc']} CPUs ({info['cpu']}, {info['arch']}), gpu={info['gpu']}, "
          f"python {info['python']}, torch {info['torch']} ({info['torch_threads']} threads), "
          f"megatron-core {info['megatron-core']}, megatron-energon {info['megatron-energon']}, "
          f"webdataset {info['webdataset']}; load average (1 min) {info['loadavg_1m']}; code {info['commit']}",
          flush=True)


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--torch-threads", type=int, default=1,
        help="torch intra-op threads, the same on every side of a comparison (default 1; 0 keeps torch's "
             "default of one per core, which nemo_twvlm.training.pretrain also uses). On a 2-core machine shared "
             "with other jobs, 2 OpenMP threads spin-wait for a core and run 5-10x slower and far noisier.")


def apply_threads(threads: int) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _generator_digest() -> str:
    import hashlib

    digest = hashlib.sha256()
    data_pkg = ROOT / "nemo_twvlm" / "data"
    for source in sorted([*data_pkg.glob("synthetic*.py"), data_pkg / "energon_prep.py", data_pkg / "samples.py"]):
        if source.exists():
            digest.update(source.read_bytes())
    return digest.hexdigest()


def ensure_data(path: Path) -> Path:
    """The synthetic data set (pairs, pairs_val, interleaved, blend.yaml) at `path`, (re)written when missing
    or when the generator's source changed since it was written."""
    stamp = path / ".bench_generator_sha256"
    digest = _generator_digest()
    if not (path / "blend.yaml").exists() or not stamp.exists() or stamp.read_text() != digest:
        from nemo_twvlm.data.synthetic import write_dataset

        print(f"writing synthetic data to {path}", flush=True)
        write_dataset(path)
        stamp.write_text(digest)
    return path


def _encoder(tokenizer_path: str, seq_length: int):
    from nemo_twvlm.data.task_encoder import LlavaTaskEncoder
    from nemo_twvlm.data.tokenizer import load_tokenizer
    from nemo_twvlm.presets import get_preset

    return LlavaTaskEncoder(load_tokenizer(tokenizer_path), get_preset("debug"), seq_length)


class Stream:
    """A pipeline's batch iterator and how many samples a batch holds."""

    def __init__(self, batches, count):
        self.batches, self.count = batches, count
        self.seconds, self.samples = 0.0, 0

    def consume(self, samples: int, timed: bool = True) -> None:
        """Pull whole batches until at least `samples` samples have arrived."""
        start, got = time.perf_counter(), 0
        while got < samples:
            got += self.count(next(self.batches))
        if timed:
            self.seconds += time.perf_counter() - start
            self.samples += got

    def close(self) -> None:
        """Stop worker processes now, so that none linger into the next pipeline's measurement (and no
        later fork inherits a half-dead loader iterator)."""
        import gc

        shutdown = getattr(self.batches, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        elif hasattr(self.batches, "close"):
            self.batches.close()  # a generator: runs its finally blocks, which stop Energon's workers
        self.batches = None
        gc.collect()

    @property
    def rate(self) -> float:
        return self.samples / self.seconds


def ours_stream(data: Path, encoder, *, batch: int, packing_buffer: int, workers: int) -> Stream:
    from nemo_twvlm.data.loader import train_loader

    loader = train_loader(str(data / "pairs"), encoder, micro_batch_size=batch, packing=True,
                          packing_buffer_size=packing_buffer, num_workers=workers)
    return Stream(iter(loader), lambda b: sum(len(k) for k in b.keys))


def _plain_webdataset(data: Path, *fields: str):
    import webdataset as wds

    shards = sorted(str(p) for p in (data / "pairs").glob("*.tar"))
    return wds.WebDataset(shards, shardshuffle=False, empty_check=False).repeat().decode("torchrgb").to_tuple(*fields)


def plain_stream(data: Path, *, batch: int, workers: int) -> Stream:
    import torch

    pipeline = _plain_webdataset(data, "png", "txt").batched(batch, partial=False)
    if workers:
        pipeline = torch.utils.data.DataLoader(pipeline, batch_size=None, num_workers=workers)
    return Stream(iter(pipeline), lambda b: len(b[1]))


def encode_stream(data: Path, encoder) -> Stream:
    """Plain decode + our `encode_sample` (CLIP preprocessing, tokenisation): no Energon, no packing."""
    from megatron.energon import CaptioningSample

    def samples():
        for key, image, caption in _plain_webdataset(data, "__key__", "png", "txt"):
            yield encoder.encode_sample(CaptioningSample(__key__=key, __restore_key__=(), image=image,
                                                         caption=caption))

    return Stream(samples(), lambda _: 1)


def measure_interleaved(streams: dict[str, Stream], *, warmup: int, samples: int, chunk: int) -> None:
    """Time the streams in turns of `chunk` samples, so that load from other processes hits all alike.
    In-process pipelines only: worker processes would keep producing while another stream is timed."""
    for stream in streams.values():
        stream.consume(warmup, timed=False)
    while any(s.samples < samples for s in streams.values()):
        for stream in streams.values():
            if stream.samples < samples:
                stream.consume(chunk)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--tokenizer", default=str(ROOT / "data" / "tokenizer"))
    parser.add_argument("--samples", type=int, default=4096, help="samples timed per pipeline")
    parser.add_argument("--warmup", type=int, default=512, help="samples consumed before timing")
    parser.add_argument("--chunk", type=int, default=256,
                        help="with num_workers=0 the pipelines are timed in turns of this many samples")
    parser.add_argument("--repeats", type=int, default=3,
                        help="with worker processes: sequential measurements per pipeline, median reported")
    parser.add_argument("--num-workers", type=int, nargs="+", default=[0])
    parser.add_argument("--micro-batch-size", type=int, default=8)
    parser.add_argument("--seq-length", type=int, default=256)
    parser.add_argument("--packing-buffer-size", type=int, default=256)
    add_threads_argument(parser)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    apply_threads(args.torch_threads)

    info = machine_info()
    print_machine(info)
    data = ensure_data(args.data.resolve())
    encoder = _encoder(args.tokenizer, args.seq_length)
    print(f"data: {data / 'pairs'}; micro-batch {args.micro_batch_size}, seq_length {args.seq_length}, "
          f"packing buffer {args.packing_buffer_size}; {args.samples} samples timed per pipeline after "
          f"{args.warmup} warm-up", flush=True)

    results = {"machine": info, "args": {k: str(v) for k, v in vars(args).items()}, "runs": []}
    for workers in args.num_workers:
        makers = {
            "plain": lambda: plain_stream(data, batch=args.micro_batch_size, workers=workers),
            "ours": lambda: ours_stream(data, encoder, batch=args.micro_batch_size,
                                        packing_buffer=args.packing_buffer_size, workers=workers),
        }
        if workers == 0:
            makers["encode"] = lambda: encode_stream(data, encoder)
            streams = {name: make() for name, make in makers.items()}
            measure_interleaved(streams, warmup=args.warmup, samples=args.samples, chunk=args.chunk)
            rates = {name: s.rate for name, s in streams.items()}
            how = f"in-process, interleaved in turns of {args.chunk} samples"
            for stream in streams.values():
                stream.close()
        else:
            # One pipeline at a time (its workers would compete with the one being timed), alternating
            # over --repeats; medians reported.
            per_repeat: dict[str, list[float]] = {name: [] for name in makers}
            for _ in range(args.repeats):
                for name, make in makers.items():
                    stream = make()
                    stream.consume(args.warmup, timed=False)
                    stream.consume(args.samples)
                    per_repeat[name].append(stream.rate)
                    stream.close()
            rates = {name: statistics.median(r) for name, r in per_repeat.items()}
            ratios = ", ".join(f"{o / p:.3f}" for o, p in zip(per_repeat["ours"], per_repeat["plain"]))
            how = f"{workers} worker processes, one pipeline at a time, median of {args.repeats} (ratios {ratios})"
        plain, ours = rates["plain"], rates["ours"]
        row = {"num_workers": workers, "measurement": how, "plain_decode_samples_per_s": plain,
               "ours_samples_per_s": ours, "ratio_ours_over_plain": ours / plain}
        print(f"num_workers={workers}: plain webdataset decode {plain:8.0f} samples/s", flush=True)
        if "encode" in rates:
            row["decode_plus_encode_sample_per_s"] = rates["encode"]
            print(f"num_workers={workers}: plain decode + our encode_sample (no Energon) "
                  f"{rates['encode']:8.0f} samples/s", flush=True)
        print(f"num_workers={workers}: our Energon loader (packed) {ours:8.0f} samples/s", flush=True)
        print(f"num_workers={workers}: ratio ours / plain decode = {ours / plain:.3f} ({how})", flush=True)
        results["runs"].append(row)
    results["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
