"""Which files under input_dir a run reads: one listing, used by the partitioner that hands files to
the reader (stages/list_inputs.py), by the summary that counts them and by the stale-shard cleanup
(pipeline.finalize), so a file is either processed and kept track of, or named as skipped.

Extensions match case-insensitively (`A.TAR` is a tar). A file that carries the format's extension
followed by another (`a.tar.gz`, `rows.jsonl.bz2`) is not read and is named in stats.json's
`skipped_inputs`, so a compressed copy is never lost without a word.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nemo_twvlm.curation.storage import source_id


@dataclass
class Inputs:
    files: list[Path] = field(default_factory=list)    # read, in path order
    skipped: dict[str, str] = field(default_factory=dict)  # path under input_dir -> why it is not read


def list_inputs(input_dir: str | Path, extensions: list[str] | tuple[str, ...]) -> Inputs:
    root = Path(input_dir).resolve()
    wanted = {e.lower() for e in extensions}
    inputs = Inputs()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        suffixes = [s.lower() for s in path.suffixes]
        if suffixes and suffixes[-1] in wanted:
            inputs.files.append(path)
        elif any(s in wanted for s in suffixes[:-1]):
            inputs.skipped[str(path.relative_to(root))] = (
                f"ends in {path.suffix!r} after {'/'.join(sorted(wanted))}: not read (decompress it, or rename it)")
    return inputs


def sources_of(input_dir: str | Path, files: list[Path]) -> dict[str, Path]:
    """Input files by source id; two files with one id (`a.tar`, `a.TAR`) are an error naming both."""
    sources: dict[str, Path] = {}
    for path in files:
        sid = source_id(path, Path(input_dir).resolve())
        if sid in sources:
            raise ValueError(f"input files {sources[sid]} and {path} map to the same source id {sid!r}; rename one")
        sources[sid] = path
    return sources
