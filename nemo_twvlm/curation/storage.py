"""Files curation writes: atomically (temp + rename), reproducibly (same input, same bytes).

Layout under OUT/:
    shards/<source>-<k>.tar       kept samples, N per shard, + Energon's .nv-meta/
    manifest.json                 every shard with its sample count, size and sha256
    quarantine/<source>/*.tar     rejected samples: <id>.reason.json + the parts that were readable
    quarantine/index.jsonl        one line per rejected sample: source, key, stage, reason, disposition
    stats.json, report.html
    work/analysed/<source>/part-<p>.{parquet,json}   per-part results; the .json marks the part done
    work/final/<source>.json                         per-source shard list; marks the source written
    work/dedup/shards-<N>/shard-<s>/<source>/part-<p>.arrow  a part's band keys that go to shard s (dedup.shards > 1)

A marker is written last, so a killed run leaves either a complete part (skipped on rerun) or
none (redone); redoing a part writes the same bytes. A part table holds the images a stage
re-encoded and, for those shipped as read, their byte ranges in the input tar: an input must not
change until the run ends (read_part_rows checks its size and mtime).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def source_id(path: str | Path, root: str | Path) -> str:
    """A file-name-safe id for an input file: its path under `root`, without the extension."""
    rel = Path(os.path.abspath(path)).relative_to(os.path.abspath(root))  # symlinked files stay under root
    stem = str(rel.with_suffix("")) if rel.suffix else str(rel)
    return _UNSAFE.sub("_", stem.replace(os.sep, "__")).strip("_") or "input"


def atomic_write(path: Path, data: bytes | pa.Buffer, durable: bool = True, uncached: bool = False) -> None:
    with atomic_writer(path, durable, uncached) as f:
        f.write(data)


class AtomicFile:
    """A file whose content appears at `path` only on `commit()`; until then it is a temp file beside it,
    which `abort()` removes. `commit` may run on another thread than the writes (shards: a shard's
    fsync beside the next one's writing).

    `durable=False` skips the fsync, for files every rerun writes again (a crash loses nothing a rerun needs).
    `uncached=True` drops the file's pages from the page cache once they are on disk, for bulk output
    no stage reads again (shards; Energon's indexing reads each once, from disk): the next file's writes
    then reuse those pages instead of taking never-touched memory. Writing 10 MB files one after another
    cost 17-20 ms of CPU each without it and 2.2 ms with it on the 2-core VM of BENCHMARKS.md 5 (fresh
    guest pages fault in the hypervisor); anywhere, the cache stays for what is read again (input tars,
    part tables)."""

    def __init__(self, path: Path, durable: bool = True, uncached: bool = False):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.durable, self.uncached = path, durable, uncached
        self._tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self.file = open(self._tmp, "wb")

    def commit(self) -> None:
        try:
            with self.file as f:
                f.flush()
                if self.durable:
                    os.fsync(f.fileno())
                    if self.uncached and hasattr(os, "posix_fadvise"):  # clean pages only: after the fsync
                        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            os.replace(self._tmp, self.path)
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise

    def abort(self) -> None:
        self.file.close()
        self._tmp.unlink(missing_ok=True)


@contextmanager
def atomic_writer(path: Path, durable: bool = True, uncached: bool = False) -> Iterator[io.BufferedWriter]:
    """An `AtomicFile`'s handle, committed when the block completes and removed if it raises."""
    atomic = AtomicFile(path, durable, uncached)
    try:
        yield atomic.file
    except BaseException:
        atomic.abort()
        raise
    atomic.commit()


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write(path, (json.dumps(obj, ensure_ascii=False, indent=1, sort_keys=True) + "\n").encode("utf-8"))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def tar_bytes(samples: Iterable[tuple[str, dict[str, bytes]]]) -> bytes:
    """A WebDataset tar (`<key>.<part>` members, in sample order) with fixed metadata: what `TarWriter`
    streams, in memory."""
    chunks = [chunk for key, parts in samples for chunk in _sample_chunks(key, parts)]
    chunks.append(_END_OF_ARCHIVE)
    return b"".join(chunks)  # one copy of the payload: a growing bytearray copies it twice


class TarWriter:
    """`tar_bytes`'s bytes for samples added one at a time, written to `file` about a MiB at a time and
    hashed on the way: a shard is never in memory whole (a source's shards are written as its parts are
    read back). `finish()` ends the archive; `bytes`, `samples` and `sha256` then describe it."""

    _WRITE_BYTES = 1 << 20

    def __init__(self, file: io.BufferedWriter):
        self._file, self._hash = file, hashlib.sha256()
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self.bytes = self.samples = 0
        self.sha256: str | None = None

    def add(self, key: str, parts: dict[str, bytes]) -> None:
        for chunk in _sample_chunks(key, parts):
            self._pending.append(chunk)
            self._pending_bytes += len(chunk)
        self.samples += 1
        if self._pending_bytes >= self._WRITE_BYTES:
            self._flush()

    def finish(self) -> str:
        self._pending.append(_END_OF_ARCHIVE)
        self._flush()
        self.sha256 = self._hash.hexdigest()
        return self.sha256

    def _flush(self) -> None:
        data = b"".join(self._pending)  # one write and one hash call per MiB, not three of each per part
        self._hash.update(data)
        self._file.write(data)
        self.bytes += len(data)
        self._pending, self._pending_bytes = [], 0


_END_OF_ARCHIVE = bytes(2 * tarfile.BLOCKSIZE)


def _sample_chunks(key: str, parts: dict[str, bytes]) -> Iterator[bytes]:
    """A sample's members, parts in sorted order: header, data, padding to the next block.

    Headers are built directly (POSIX ustar, mode 644, owner 0, mtime 0): `tarfile.addfile` copies
    every TarInfo and costs more than the rest of shard writing together. A name over 100 bytes, which
    ustar cannot hold without a directory split, gets `tarfile`'s GNU long-name header instead.
    """
    for ext in sorted(parts):
        name, data = f"{key}.{ext}".encode(), parts[ext]
        yield _ustar_header(name, len(data)) if len(name) <= 100 else _gnu_header(name, len(data))
        yield data
        if len(data) % tarfile.BLOCKSIZE:
            yield bytes(-len(data) % tarfile.BLOCKSIZE)


# The header bytes every member shares after the checksum field: type, empty link name, magic, zeros.
_HEADER_TAIL = tarfile.REGTYPE + bytes(100) + tarfile.POSIX_MAGIC + bytes(247)
# The checksum is the sum of all 512 header bytes with its own field read as 8 spaces; this is the
# part of it that does not depend on the member, summed once instead of per header.
_CHECKSUM_BASE = 8 * ord(" ") + sum(_HEADER_TAIL)


def _ustar_header(name: bytes, size: int) -> bytes:
    fields = b"0000644\0" + b"0000000\0" * 2 + b"%011o\0" % size + b"00000000000\0"  # mode uid gid size mtime
    checksum = _CHECKSUM_BASE + sum(name) + sum(fields)
    return b"".join((name.ljust(100, b"\0"), fields, b"%06o\0 " % checksum, _HEADER_TAIL))


def _gnu_header(name: bytes, size: int) -> bytes:
    info = tarfile.TarInfo(name.decode("utf-8"))
    info.size = size
    info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = 0o644, 0, 0, 0, "", ""
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class TarTruncated(Exception):
    def __init__(self, key: str | None, parts: dict[str, bytes], detail: str):
        super().__init__(detail)
        self.key, self.parts, self.detail = key, parts, detail


def iter_tar_groups(path: str | Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """WebDataset grouping: consecutive members `<key>.<ext>` form one sample (`iter_tar_samples`)."""
    for key, parts, _ in iter_tar_samples(path):
        yield key, parts


def iter_tar_samples(path: str | Path, defer: Callable[[str], bool] | None = None,
                     ) -> Iterator[tuple[str, dict[str, bytes | None], dict[str, tuple[int, int]]]]:
    """WebDataset grouping: consecutive members `<key>.<ext>` form one sample, yielded with where
    each part's bytes lie in the file, (offset, size) by ext (none for a compressed tar or a sparse
    member, whose bytes are not stored as they are read).

    A non-empty member of a plain tar whose ext `defer` accepts is not read: its part is None, and
    its bytes stay in the file at its span until `read_input_spans` reads them. So a reader holds a
    whole input file's captions but not its images (an img2dataset tar of 10,000 512 px pairs is ~0.7 GB).

    A tar cut short raises `TarTruncated` carrying the sample it was reading (deferred parts read),
    after every complete sample before it was yielded. A tar cut exactly between members is recognised
    by its missing end-of-archive blocks; the last sample read may then lack parts, so it is the one
    reported. A gzip, bz2 or xz tar is read through its decompressor. A file that is not a tar
    raises `tarfile.ReadError`.
    """
    key: str | None = None
    parts: dict[str, bytes | None] = {}
    spans: dict[str, tuple[int, int]] = {}
    compressed = _compressed(path)
    # A plain tar is read with random access, so a deferred member's bytes are skipped, not read.
    with tarfile.open(path, mode="r|*" if compressed else "r:") as tar:
        size = None if compressed else os.fstat(tar.fileobj.fileno()).st_size
        try:
            for member in tar:
                if not member.isfile():
                    continue
                directory, _, base = member.name.rpartition("/")
                stem, dot, ext = base.partition(".")
                if not dot:
                    continue
                member_key = f"{directory}/{stem}" if directory else stem
                if member_key != key and key is not None:
                    yield key, parts, spans
                    parts, spans = {}, {}
                key, ext = member_key, ext.lower()
                spans.pop(ext, None)
                if not compressed and not member.issparse():
                    if defer is not None and member.size and defer(ext):
                        if member.offset_data + member.size > size:
                            raise EOFError(f"member {member.name} has {size - member.offset_data} of {member.size} bytes")
                        parts[ext], spans[ext] = None, (member.offset_data, member.size)
                        continue
                    spans[ext] = (member.offset_data, member.size)
                data = tar.extractfile(member).read()
                if len(data) != member.size:
                    raise EOFError(f"member {member.name} has {len(data)} of {member.size} bytes")
                parts[ext] = data
        except (tarfile.TarError, EOFError, OSError) as e:
            raise TarTruncated(key, _read_deferred(tar, parts, spans), f"{type(e).__name__}: {e}") from None
        # Only a plain tar's end can be checked against its file size; a compressed one cut short
        # fails in its decompressor above.
        if not compressed and size - tar.offset < tarfile.BLOCKSIZE:
            raise TarTruncated(key, _read_deferred(tar, parts, spans), f"no end-of-archive block after byte {tar.offset}")
    if key is not None:
        yield key, parts, spans


def _compressed(path: str | Path) -> bool:
    with open(path, "rb") as f:
        return f.read(6).startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00"))  # gzip, bz2, xz


def _read_deferred(tar: tarfile.TarFile, parts: dict[str, bytes | None], spans: dict[str, tuple[int, int]]) -> dict[str, bytes]:
    """A truncated sample's parts for the quarantine: deferred ones read (each was checked to lie in the file)."""
    return {ext: os.pread(tar.fileobj.fileno(), spans[ext][1], spans[ext][0]) if data is None else data
            for ext, data in parts.items()}


def open_unchanged(file: dict, reader: str) -> BinaryIO:
    """Input file `file` (path, size, mtime_ns as it was when first read) opened for reading, if it is
    unchanged since: `reader` names what refers to its bytes, for the error otherwise."""
    try:
        f = open(file["path"], "rb")
    except FileNotFoundError:
        raise _input_changed(file, reader, "is gone") from None
    stat = os.fstat(f.fileno())
    if (stat.st_size, stat.st_mtime_ns) != (file["size"], file["mtime_ns"]):
        f.close()
        raise _input_changed(file, reader, f"is now {stat.st_size} bytes, mtime_ns {stat.st_mtime_ns}")
    return f


def read_input_spans(file: dict, spans: Iterable[tuple[int, int]], reader: str) -> list[bytes]:
    """The bytes at each (offset, size) of input file `file` (path, size, mtime_ns as it was when read),
    which must be unchanged since: `reader` names what refers to them, for the error otherwise."""
    with open_unchanged(file, reader) as f:
        out = []
        for offset, size in spans:
            out.append(os.pread(f.fileno(), size, offset))
            if len(out[-1]) != size:
                raise _input_changed(file, reader, f"holds no {size} bytes at {offset}")
    return out


# The analysed-part table: one row per sample that passed every per-sample stage.
PART_SCHEMA = pa.schema([
    ("index", pa.int64()), ("key", pa.string()),
    ("doc", pa.string()),                      # JSON: texts as strings, images as {"image": i}
    ("images", pa.list_(pa.binary())), ("image_exts", pa.list_(pa.string())),
    # An image shipped as its input bytes is null in `images` and found here instead: its byte range
    # in the part's input file (the schema metadata's `image_file`); null for one held in `images`.
    ("image_spans", pa.list_(pa.struct([("offset", pa.int64()), ("size", pa.int64())]))),
    ("content_sha", pa.string()), ("phash", pa.uint64()), ("minhash", pa.binary()),
    ("text_tokens", pa.int64()), ("image_tokens", pa.int64()),
    ("meta", pa.string()),
])
SIGNATURE_COLUMNS = ["index", "key", "content_sha", "phash", "minhash", "text_tokens", "image_tokens"]
_DEDUP_HASHES = ("content_sha", "phash", "minhash")


def write_part_table(path: Path, rows: list[dict[str, Any]], image_file: dict | None = None) -> pa.Table:
    """Write the part table (`image_file`: path, size and mtime_ns of the input its `image_spans`
    point into) and return it, so its writer need not read it back."""
    table = pa.Table.from_pylist(rows, schema=PART_SCHEMA)
    if image_file is not None:
        table = table.replace_schema_metadata({"image_file": json.dumps(image_file)})
    buf = pa.BufferOutputStream()
    # Encoded images neither compress nor repeat: no zstd and no dictionary for them (building
    # one hashes every image, half of the write's time), both for the other columns.
    others = [name for name in PART_SCHEMA.names if name != "images"]
    compression = {name: "zstd" if name in others else "none" for name in PART_SCHEMA.names}
    pq.write_table(table, buf, compression=compression, use_dictionary=others, write_statistics=False)
    atomic_write(path, buf.getvalue())  # an Arrow buffer: written without a copy to Python bytes
    return table


def signatures(table: pa.Table) -> dict[str, list]:
    """What dedup reads of a part table: its SIGNATURE_COLUMNS, MinHashes as uint32 arrays."""
    cols = table.select(SIGNATURE_COLUMNS).to_pydict()
    cols["minhash"] = [None if m is None else np.frombuffer(m, np.uint32) for m in cols["minhash"]]
    return cols


def read_signatures(path: Path) -> dict[str, list]:
    return signatures(pq.read_table(path, columns=SIGNATURE_COLUMNS))


def read_part_rows(path: Path) -> list[dict[str, Any]]:
    """The part table's rows, every image's bytes in `images`: those it refers to are read back from
    its input file, which must still be the size and mtime it had when the part was analysed. Dedup's
    hashes are not read: dedup has decided. A table written before parts could refer to images (no
    `image_spans`) holds them all."""
    parquet = pq.ParquetFile(path)
    table = parquet.read(columns=[name for name in parquet.schema_arrow.names if name not in _DEDUP_HASHES])
    rows = table.to_pylist()
    image_file = (table.schema.metadata or {}).get(b"image_file")
    if image_file is None:
        return rows
    file = json.loads(image_file)
    where = [(row, i, span) for row in rows for i, span in enumerate(row["image_spans"]) if span is not None]
    data = read_input_spans(file, [(span["offset"], span["size"]) for _, _, span in where],
                            f"part table {path}")
    for (row, i, _), image in zip(where, data):
        row["images"][i] = image
    return rows


def _input_changed(file: dict, reader: str, now: str) -> RuntimeError:
    return RuntimeError(
        f"input file {file['path']} changed during the run: it was {file['size']} bytes, mtime_ns "
        f"{file['mtime_ns']}, when read, and {now}; {reader} refers to its bytes, so an input "
        "must stay as it is until the run ends. Rerun into the same output_dir: it redoes that file's parts")
