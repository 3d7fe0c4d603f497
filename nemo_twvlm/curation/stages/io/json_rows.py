"""The rows of a JSON-list or JSONL file read as a stream, from its start or from the byte offset of
any row, so that a reader never holds the file's text: llava_v1_5_mix665k.json is ~1 GB, several GB
once parsed whole. `row_starts` scans a file once for the byte offset of every n-th row (the lister's
ranges); `JsonList` and `jsonl_rows` read rows from such an offset.

A JSON list that breaks off (or is malformed part-way) keeps the entries before the break, and says
where it broke: like a cut tar, what follows cannot be known. Undecodable UTF-8 anywhere raises
UnicodeDecodeError, as decoding the whole file would.
"""
from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

_SPACE = re.compile(r"[ \t\n\r]*")
_NUMBER_GOES_ON = re.compile(r"[0-9.eE+-]*")
_BLOCK = 1 << 18  # 256 KiB: a few MB of transient text and slices at most, at ~1% of entries parsed twice


class JsonList:
    """Iterate the entries of a JSON list in binary file `f`, reading 256 KiB at a time.

    `offset`: 0 for the file's start, or the byte offset of an entry (where `row_starts` found it);
    `entry`: that entry's number in the list, for the messages. After iterating, `broken` says why
    the list ended before (or after) its closing bracket, or is None; while iterating, `position` is
    the byte offset of the entry last yielded."""

    def __init__(self, f: IO[bytes], offset: int = 0, entry: int = 0):
        self._f, self._decode = f, codecs.getincrementaldecoder("utf-8")().decode
        self._text, self._eof = "", False
        self._entry, self._at_start = entry, offset == 0
        f.seek(offset)
        if self._at_start and f.read(len(codecs.BOM_UTF8)) == codecs.BOM_UTF8:
            offset = len(codecs.BOM_UTF8)  # a byte-order mark (Windows tools write one) is not text
        f.seek(offset)
        self._mark = (0, offset)  # a (character, byte) position pair in _text, so offsets cost one encoding
        self.position: int = offset
        self.broken: str | None = None

    def __iter__(self) -> Iterator[Any]:
        decoder, pos = json.JSONDecoder(), 0
        if self._at_start:
            pos = self._skip_space(0)
            if not self._text.startswith("[", pos):
                raise ValueError(self._not_a_list(pos))
            pos = self._skip_space(pos + 1)
            if self._text.startswith("]", pos):
                self._check_end(pos + 1)
                return
        while True:
            pos = self._skip_space(pos)
            try:
                value, end = decoder.raw_decode(self._text, pos)
            except json.JSONDecodeError as e:
                into_entry = e.pos - pos
                pos = self._trim(pos)
                if self._read(len(self._text) - pos):  # the entry goes on in the next block
                    continue
                self.broken = (f"the JSON list breaks off at byte {self._byte(pos + into_entry)} after {self._entry} "
                               f"complete entries: {e.msg}")
                return
            if _NUMBER_GOES_ON.match(self._text, end).end() == len(self._text) and self._read(_BLOCK):
                continue  # a number whose digits reach the end of the text may go on in the next block
            self.position, self._entry = self._byte(pos), self._entry + 1
            pos = self._trim(end)
            yield value
            pos = self._skip_space(pos)
            if self._text.startswith(",", pos):
                pos += 1
            elif self._text.startswith("]", pos):
                self._check_end(pos + 1)
                return
            else:
                self.broken = self._malformed(pos)
                return

    def _check_end(self, pos: int) -> None:
        """After the closing bracket only white space may follow."""
        pos = self._skip_space(pos)
        if pos < len(self._text):
            self.broken = self._malformed(pos)

    def _malformed(self, pos: int) -> str:
        if pos == len(self._text):  # the end of the file
            return (f"the JSON list breaks off at byte {self._byte(pos)} after {self._entry} complete entries: "
                    "no closing ']'")
        return f"the JSON list is malformed at byte {self._byte(pos)} after {self._entry} complete entries"

    def _not_a_list(self, pos: int) -> str:
        if self._text.startswith("{", pos):
            return "the top level is a JSON dict, expected a list of samples"
        return "not a JSON list (it does not start with '[')"

    def _skip_space(self, pos: int) -> int:
        """The position of the next character that is not white space, reading on as needed (the
        text's length at the end of the file)."""
        while True:
            pos = _SPACE.match(self._text, pos).end()
            if pos < len(self._text) or not self._read(_BLOCK):
                return pos

    def _read(self, at_least: int) -> bool:
        """Append a block of text, or `at_least` bytes (an entry's text so far: one larger than a block
        is read in doublings, not parsed again a block at a time); False at the end of the file."""
        if self._eof:
            return False
        data = self._f.read(max(_BLOCK, at_least))
        self._eof = not data
        self._text += self._decode(data, final=self._eof)
        return not self._eof

    def _trim(self, pos: int) -> int:
        """Drop the text before `pos` once it is most of the buffer; returns pos in the kept text."""
        if pos < _BLOCK or pos < len(self._text) // 2:
            return pos
        self._mark = (0, self._byte(pos))
        self._text = self._text[pos:]
        return 0

    def _byte(self, pos: int) -> int:
        """The byte offset in the file of character `pos` of the text; positions asked in order
        (as they are) each encode only the text since the last one."""
        char, byte = self._mark
        if pos < char:
            char, byte = 0, byte - len(self._text[:char].encode("utf-8"))
        self._mark = (pos, byte + len(self._text[char:pos].encode("utf-8")))
        return self._mark[1]


def jsonl_rows(f: IO[bytes], offset: int = 0) -> Iterator[tuple[int, bytes]]:
    """(byte offset, line) of every line of a JSONL file that is not blank, from `offset`; a byte-order
    mark before the first line is not part of it."""
    f.seek(offset)
    for line in f:
        text = line[len(codecs.BOM_UTF8):] if offset == 0 and line.startswith(codecs.BOM_UTF8) else line
        if text.strip():
            yield offset, text
        offset += len(line)


def jsonl_row(line: bytes) -> dict | None:
    """A JSONL line's object, or None for a line that is not one (a counted `bad_row`, not an error)."""
    try:
        row = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return row if isinstance(row, dict) else None


@dataclass(frozen=True)
class RowStarts:
    """A JSON-list or JSONL file's row count, the byte offset of rows 0, every, 2 * every, ..., and the
    keys of all its rows. A broken list counts its break as a row (the reader rejects it, at that
    index), which belongs to the last range of rows even when a new one would start there."""

    total: int
    offsets: list[int]
    columns: tuple[str, ...]


def row_starts(f: IO[bytes], every: int, jsonl: bool, progress=None) -> RowStarts:
    """Scan the file once (JSON lists are parsed, as a reader will; JSONL lines too, for their keys).
    `progress(bytes)` is called as the scan goes. Raises ValueError or UnicodeDecodeError for a file
    that is not a readable list at all."""
    offsets: list[int] = []
    columns: set[str] = set()
    total, done = 0, 0
    entries = None if jsonl else JsonList(f)
    rows = (((offset, jsonl_row(line)) for offset, line in jsonl_rows(f)) if entries is None
            else ((entries.position, row) for row in entries))
    for offset, row in rows:
        if total % every == 0:
            offsets.append(offset)
        total += 1
        if isinstance(row, dict):
            columns.update(row)
        if progress and offset - done > _BLOCK:
            progress(offset - done)
            done = offset
    if entries is not None and entries.broken:
        total += 1  # in the last range, whose reader finds the break again
    return RowStarts(total, offsets, tuple(sorted(columns)))
