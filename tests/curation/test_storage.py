"""Shard bytes: `tar_bytes` writes the same bytes as the header-by-bytearray code it replaced, and
`tarfile` reads them back (it checks every header's checksum); `TarWriter` streams those bytes. Reading: the offsets
`iter_tar_samples` gives hold each part's bytes, deferred parts stay in the file until read from their spans, a compressed tar reads whole, and a part table from before `image_spans` reads as it did.
Writing: an `uncached` write (shards) leaves none of the file in the page cache; a write that fails
leaves no temp file."""
from __future__ import annotations

import ctypes
import gzip
import hashlib
import io
import mmap
import os
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nemo_twvlm.curation.storage import (
    PART_SCHEMA,
    AtomicFile,
    TarTruncated,
    TarWriter,
    atomic_write,
    atomic_writer,
    iter_tar_samples,
    read_input_spans,
    read_part_rows,
    tar_bytes,
)


def _tar_bytes_reference(samples: list[tuple[str, dict[str, bytes]]]) -> bytes:
    out = bytearray()
    for key, parts in samples:
        for ext in sorted(parts):
            name, data = f"{key}.{ext}".encode(), parts[ext]
            header = bytearray(tarfile.BLOCKSIZE)
            header[0:len(name)] = name
            header[100:148] = b"0000644\0" + b"0000000\0" * 2 + b"%011o\0" % len(data) + b"00000000000\0"
            header[148:156] = b" " * 8
            header[156:157] = tarfile.REGTYPE
            header[257:265] = tarfile.POSIX_MAGIC
            header[148:156] = b"%06o\0 " % sum(header)
            out += header + data + bytes(-len(data) % tarfile.BLOCKSIZE)
    return bytes(out + bytes(2 * tarfile.BLOCKSIZE))


def test_tar_bytes_equal_reference_and_read_back():
    samples = [(f"src-{i:07d}", {"jpg": bytes(range(256)) * (i * 37 % 9), "txt": "台北 101".encode() * i,
                                 "json": b"{}"}) for i in range(40)]
    samples.append(("x" * 95, {"txt": b"a 100-byte name"}))
    data = tar_bytes(samples)
    assert data == _tar_bytes_reference(samples)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        got = [(m.name, tar.extractfile(m).read()) for m in tar]
    assert got == [(f"{key}.{ext}", parts[ext]) for key, parts in samples for ext in sorted(parts)]
    assert tar_bytes([]) == bytes(2 * tarfile.BLOCKSIZE)


def test_tar_writer_streams_tar_bytes_and_hashes_them(tmp_path):
    """Samples past the writer's MiB of pending bytes, and a name too long for ustar among short ones."""
    samples = [(f"s{i:03d}", {"jpg": os.urandom(150_000 + 7 * i), "txt": f"第{i}張".encode()}) for i in range(20)]
    samples.insert(9, ("z" * 130, {"json": b"{}"}))
    path = tmp_path / "streamed.tar"
    with open(path, "wb") as f:
        tar = TarWriter(f)
        for key, parts in samples:
            tar.add(key, parts)
        digest = tar.finish()
    data = path.read_bytes()
    assert data == tar_bytes(samples)
    assert (tar.samples, tar.bytes, digest) == (21, len(data), hashlib.sha256(data).hexdigest())
    with tarfile.open(path) as read:
        assert [m.name for m in read] == [f"{key}.{ext}" for key, parts in samples for ext in sorted(parts)]
        assert read.extractfile(f"{'z' * 130}.json").read() == b"{}"


def test_a_failed_atomic_write_leaves_nothing(tmp_path):
    target = tmp_path / "out" / "shard.tar"
    with pytest.raises(ValueError, match="midway"):
        with atomic_writer(target) as f:
            f.write(b"partial")
            raise ValueError("midway")
    atomic = AtomicFile(target)
    atomic.file.write(b"partial")
    atomic.abort()
    assert list((tmp_path / "out").iterdir()) == []
    atomic = AtomicFile(target)
    atomic.file.write(b"whole")
    atomic.commit()
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["shard.tar"] and target.read_bytes() == b"whole"


def test_tar_offsets_hold_the_parts(tmp_path):
    """GNU long names put an extra header before the data."""
    samples = [(f"s{i}", {"jpg": bytes([i]) * (700 * i + 1), "txt": b"caption"}) for i in range(5)]
    samples.append(("y" * 120, {"png": b"a long name's data"}))
    path = tmp_path / "plain.tar"
    path.write_bytes(tar_bytes(samples))
    data = path.read_bytes()
    got = list(iter_tar_samples(path))
    assert [(key, parts) for key, parts, _ in got] == samples
    for _, parts, spans in got:
        assert spans.keys() == parts.keys()
        assert all(data[offset:offset + size] == parts[ext] for ext, (offset, size) in spans.items())


def test_deferred_parts_are_left_in_the_tar_and_read_back_from_their_spans(tmp_path):
    samples = [(f"s{i}", {"jpg": bytes([i + 1]) * (900 * i + 1), "txt": f"caption {i}".encode()}) for i in range(6)]
    samples.append(("empty", {"jpg": b"", "txt": b"an empty image is read, not deferred"}))
    path = tmp_path / "plain.tar"
    path.write_bytes(tar_bytes(samples))
    file = {"path": str(path), "size": path.stat().st_size, "mtime_ns": path.stat().st_mtime_ns}
    got = list(iter_tar_samples(path, defer=lambda ext: ext == "jpg"))
    assert [key for key, _, _ in got] == [key for key, _ in samples]
    assert [parts["jpg"] for _, parts, _ in got] == [None] * 6 + [b""]
    assert [parts["txt"] for _, parts, _ in got] == [parts["txt"] for _, parts in samples]
    images = read_input_spans(file, [spans["jpg"] for _, _, spans in got[:6]], "this test")
    assert images == [parts["jpg"] for _, parts in samples[:6]]

    offset, size = got[5][2]["jpg"]
    path.write_bytes(path.read_bytes()[:offset + size // 2])  # into the last deferred image's bytes
    with pytest.raises(RuntimeError, match=f"input file {path} changed during the run.*this test refers to its bytes"):
        read_input_spans(file, [got[0][2]["jpg"]], "this test")
    read = []
    with pytest.raises(TarTruncated) as cut:
        read.extend(key for key, _, _ in iter_tar_samples(path, defer=lambda ext: ext == "jpg"))
    assert read == ["s0", "s1", "s2", "s3", "s4"]
    assert cut.value.key == "s5" and cut.value.parts == {} and "member s5.jpg has" in cut.value.detail


def test_a_compressed_tar_reads_whole_and_cut_short_is_truncated(tmp_path):
    """A .tar that holds gzip-compressed data: every sample, no offsets (the bytes
    are not stored as read); the same file cut short raises TarTruncated after the samples before the cut."""
    samples = [(f"s{i}", {"jpg": bytes(range(256)) * (i + 1), "txt": f"caption {i}".encode()}) for i in range(30)]
    data = gzip.compress(tar_bytes(samples))
    path = tmp_path / "gzipped.tar"
    path.write_bytes(data)
    got = list(iter_tar_samples(path))
    assert [(key, parts) for key, parts, _ in got] == samples
    assert all(offsets == {} for _, _, offsets in got)
    path.write_bytes(data[:len(data) // 2])
    read = []
    with pytest.raises(TarTruncated) as cut:
        read.extend(key for key, _, _ in iter_tar_samples(path))
    assert 0 < len(read) < len(samples) and read == [key for key, _ in samples[:len(read)]]
    assert cut.value.detail == "ReadError: unexpected end of data"


def test_part_table_without_image_spans_reads(tmp_path):
    """A run resumed by this code over parts an earlier version wrote: those parts hold every image."""
    row = {"index": 0, "key": "k", "doc": "[]", "images": [b"jpeg"], "image_exts": ["jpg"], "content_sha": "c",
           "phash": 1, "minhash": b"m", "text_tokens": 2, "image_tokens": 3, "meta": "{}"}
    old_schema = pa.schema([f for f in PART_SCHEMA if f.name != "image_spans"])
    pq.write_table(pa.Table.from_pylist([row], schema=old_schema), tmp_path / "part.parquet")
    assert read_part_rows(tmp_path / "part.parquet") == [
        {k: v for k, v in row.items() if k not in ("content_sha", "phash", "minhash")}]


def _resident_pages(path) -> int:
    """Pages of the file in the page cache (mincore over a private mapping, which faults nothing in)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype, libc.mmap.argtypes = ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                                                              ctypes.c_int, ctypes.c_int, ctypes.c_long]
    size, page = os.path.getsize(path), mmap.PAGESIZE
    with open(path, "rb") as f:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_PRIVATE, f.fileno(), 0)
    try:
        vec = (ctypes.c_ubyte * ((size + page - 1) // page))()
        assert libc.mincore(ctypes.c_void_p(addr), ctypes.c_size_t(size), vec) == 0, os.strerror(ctypes.get_errno())
        return sum(v & 1 for v in vec)
    finally:
        libc.munmap(ctypes.c_void_p(addr), ctypes.c_size_t(size))


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="no posix_fadvise on this platform")
def test_an_uncached_write_is_on_disk_and_out_of_the_page_cache(tmp_path):
    data = os.urandom(4 << 20)
    cached, uncached = tmp_path / "cached.tar", tmp_path / "uncached.tar"
    atomic_write(cached, data)
    atomic_write(uncached, data, uncached=True)
    assert cached.read_bytes() == data
    if _resident_pages(cached) == 0:
        pytest.skip(f"{tmp_path}'s filesystem keeps no page cache to drop")
    assert _resident_pages(uncached) == 0
    assert uncached.read_bytes() == data  # read back from disk
