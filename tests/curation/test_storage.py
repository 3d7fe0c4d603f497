"""Shard bytes: `tar_bytes` writes the same bytes as the header-by-bytearray code it replaced, and
`tarfile` reads them back (it checks every header's checksum)."""
from __future__ import annotations

import io
import tarfile

from nemo_twvlm.curation.storage import tar_bytes


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
