"""JSON lists and JSONL read as a stream: the entries json.loads gives, from the file's start or from
any row's byte offset, across block boundaries of every kind; a broken list keeps its complete
entries and names the byte and entry where it broke, whichever offset it was read from."""
from __future__ import annotations

import io
import json

import pytest

from nemo_twvlm.curation.stages.io import json_rows
from nemo_twvlm.curation.stages.io.json_rows import JsonList, jsonl_rows, row_starts

ENTRIES = [{"id": i, "caption": "台灣的夜市" * (i % 4), "score": [1.5e-3, -i], "nested": {"a": [None, True]}}
           for i in range(40)] + [1234567890123, "不是物件", None, 3.25, [], {}]


@pytest.fixture
def tiny_blocks(monkeypatch):
    """7-byte blocks: numbers, strings and multi-byte characters all fall across them."""
    monkeypatch.setattr(json_rows, "_BLOCK", 7)


def _file(text: str) -> io.BytesIO:
    return io.BytesIO(text.encode("utf-8"))


@pytest.mark.parametrize("text", [
    json.dumps(ENTRIES), json.dumps(ENTRIES, ensure_ascii=False, indent=2), "[]", " \n[ ]\n", "[12345678901234567890]",
    '[ "a" ,\t"b"\r\n]',
])
def test_entries_are_what_json_loads_gives(tiny_blocks, text):
    assert list(JsonList(_file(text))) == json.loads(text)


def test_reading_from_each_row_start_gives_the_rest_of_the_list(tiny_blocks):
    text = json.dumps(ENTRIES, ensure_ascii=False, indent=1)
    starts = row_starts(_file(text), 5, jsonl=False)
    assert starts.total == len(ENTRIES) and len(starts.offsets) == 10
    assert starts.columns == ("caption", "id", "nested", "score")
    for k, offset in enumerate(starts.offsets):
        assert text.encode()[offset:offset + 1] in (b"{", b"1", b'"', b"n", b"3", b"[")  # an entry's first byte
        entries = JsonList(_file(text), offset, 5 * k)
        assert list(entries) == ENTRIES[5 * k:]
        assert entries.broken is None


@pytest.mark.parametrize("text, entries, message", [
    ('[{"id": 1}, {"id": 2}', 2, "breaks off at byte 21 after 2 complete entries: no closing ']'"),
    ('[{"id": 1}] trailing', 1, "malformed at byte 12 after 1 complete entries"),
    ('[{"id": 1} {"id": 2}]', 1, "malformed at byte 11 after 1 complete entries"),
    ('[{"id": 1}, {"id": 2},]', 2, "breaks off at byte 22 after 2 complete entries: Expecting value"),
    ('[{"id": 1}, {"id": 2}, {"id": "台', 2, "breaks off at byte 30 after 2 complete entries: Unterminated string"),
])
def test_a_broken_list_keeps_its_entries_and_says_where(tiny_blocks, text, entries, message):
    whole = JsonList(_file(text))
    assert list(whole) == [{"id": i + 1} for i in range(entries)]
    assert message in whole.broken
    # Read from its last entry, it breaks at the same byte and entry count.
    starts = row_starts(_file(text), 1, jsonl=False)
    assert starts.total == entries + 1  # the break is a row of its own, in the last range
    assert len(starts.offsets) == entries
    tail = JsonList(_file(text), starts.offsets[-1], entries - 1)
    assert list(tail) == [{"id": entries}] and tail.broken == whole.broken


@pytest.mark.parametrize("text, message", [
    ('{"id": 1}', "the top level is a JSON dict, expected a list of samples"),
    ("", "not a JSON list"), ("  1", "not a JSON list"),
])
def test_not_a_list_is_an_error(text, message):
    with pytest.raises(ValueError, match=message):
        list(JsonList(_file(text)))


def test_bad_utf8_anywhere_is_an_error():
    data = json.dumps([{"a": "x" * 100}] * 3).encode()
    data = data[:150] + b"\xff" + data[151:]
    with pytest.raises(UnicodeDecodeError):
        list(JsonList(io.BytesIO(data)))


def test_an_entry_larger_than_the_buffer_is_read_in_doublings(monkeypatch):
    monkeypatch.setattr(json_rows, "_BLOCK", 1024)
    text = json.dumps([{"a": 1}, {"long": "字" * 2_000_000}, {"b": 2}])  # a 12 MB entry (\u escapes)
    reads = []

    class Counting(io.BytesIO):
        def read(self, size=-1):
            reads.append(size)
            return super().read(size)

    assert [sorted(e) for e in JsonList(Counting(text.encode()))] == [["a"], ["long"], ["b"]]
    assert len(reads) < 30  # a read per block would be ~12,000, each parsing the entry again


def test_jsonl_rows_skip_blank_lines_and_keep_bad_ones():
    lines = [b'{"a": 1}\n', b"\n", b"   \n", b"not json\n", b'{"b": "\xe5\x8f\xb0"}\n', b'[1]']
    data = b"".join(lines)
    rows = list(jsonl_rows(io.BytesIO(data)))
    assert [line for _, line in rows] == [lines[0], lines[3], lines[4], lines[5]]
    assert [offset for offset, _ in rows] == [0, 14, 23, 36]
    assert list(jsonl_rows(io.BytesIO(data), 14)) == rows[1:]
    starts = row_starts(io.BytesIO(data), 2, jsonl=True)
    assert (starts.total, starts.offsets, starts.columns) == (4, [0, 23], ("a", "b"))


def test_a_byte_order_mark_is_not_text():
    bom = "\ufeff".encode()
    entries = JsonList(io.BytesIO(bom + b'[{"a": 1}, 2, {"b": 3}'))
    assert list(entries) == [{"a": 1}, 2, {"b": 3}]
    assert "breaks off at byte 25 after 3 complete entries" in entries.broken  # bytes of the file, BOM included
    starts = row_starts(io.BytesIO(bom + b'[{"a": 1}, 2]'), 1, jsonl=False)
    assert starts.offsets == [4, 14] and starts.columns == ("a",)
    assert [line for _, line in jsonl_rows(io.BytesIO(bom + b'{"a": 1}\n{"b": 2}\n'))] == [b'{"a": 1}\n', b'{"b": 2}\n']


@pytest.mark.parametrize("block", [5, 6, 7, 8, 9, 13])
def test_a_list_cut_anywhere_names_the_byte_json_loads_does(monkeypatch, block):
    """Every cut of a list with numbers, strings of Han characters and nesting, read in blocks of a few
    bytes: the break is named at the byte json.loads points at, whatever the buffer had dropped by then."""
    monkeypatch.setattr(json_rows, "_BLOCK", block)
    text = json.dumps([{"id": i, "v": "夜市" * (i % 3), "n": [i * 1.5, None]} for i in range(6)] + [123, "燈"],
                      ensure_ascii=False, indent=(block % 2) or None)
    for cut in range(1, len(text) - 1):
        with pytest.raises(json.JSONDecodeError) as error:
            json.loads(text[:cut])
        entries = JsonList(_file(text[:cut]))
        list(entries)
        assert f"at byte {len(text[:error.value.pos].encode())} after" in entries.broken, (cut, entries.broken)
