"""once_per_process: loaded once per process, and again when the file or directory it names changes."""
import os
from pathlib import Path

from nemo_twvlm.curation.stages.base import once_per_process


def _reader(calls):
    def read(path):
        calls.append(path)
        if os.path.isdir(path):
            return sorted((file.name, file.read_text()) for file in Path(path).iterdir())
        return Path(path).read_text()
    return read


def test_a_file_is_loaded_once_until_it_is_replaced_in_place(tmp_path):
    path, calls = tmp_path / "model.bin", []
    read = _reader(calls)
    path.write_text("v1")
    assert once_per_process(read, str(path)) == once_per_process(read, str(path)) == "v1"
    assert len(calls) == 1
    path.write_text("v2")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))  # a later mtime, surely
    assert once_per_process(read, str(path)) == "v2"
    assert len(calls) == 2


def test_a_directory_is_keyed_by_its_files(tmp_path):
    (tmp_path / "tok").mkdir()
    vocab, calls = tmp_path / "tok" / "vocab.json", []
    read = _reader(calls)
    vocab.write_text("{}")
    first = once_per_process(read, str(tmp_path / "tok"))
    assert once_per_process(read, str(tmp_path / "tok")) is first
    vocab.write_text('{"a": 0}')  # rewritten inside: the directory's own mtime does not change
    assert once_per_process(read, str(tmp_path / "tok")) == [("vocab.json", '{"a": 0}')]
    assert len(calls) == 2


def test_arguments_that_are_not_paths_are_keyed_as_they_are():
    calls = []

    def build(name):
        calls.append(name)
        return object()

    assert once_per_process(build, "org/model-on-a-hub") is once_per_process(build, "org/model-on-a-hub")
    assert once_per_process(build, "another") is not once_per_process(build, "org/model-on-a-hub")
    assert calls == ["org/model-on-a-hub", "another"]
