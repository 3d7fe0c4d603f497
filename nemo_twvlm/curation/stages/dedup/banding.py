"""Sharded exact and near-duplicate search: the decisions of `stages/dedup.py` (same kept samples,
same reasons, same details) with no process holding every index. `dedup.shards: N > 1` runs it as
four stages:

1. `dedup_partition`, per analysed part: every band key of every sample (its content sha; its pHash
   cut into `image_bands` bands; its MinHash cut into the LSH bands `lsh_bands` picks, as the
   single-process caption index cuts them) goes to shard crc32(relation, band, key) mod N: one file
   per part (work/dedup/shards-N/<source>/part-<p>.arrow), one record batch in it per shard.
2. `dedup_fanout`: a barrier that starts the N shard tasks once every part is partitioned.
3. `dedup_shard`, N independent tasks, each reading only its own record batches: rows sharing a key form
   a bucket. Samples with the same value (sha, pHash or MinHash) form a *group*: they match each
   other at distance 0 / Jaccard 1. Two different values in a bucket are compared exactly (Hamming
   distance, share of equal MinHash values). These are the pairs the sequential indexes match: a
   caption pair is compared there only if it shares a band, and two pHashes within
   `image_hamming < image_bands` bits always share one (pigeonhole), which is every pair the
   sequential (exact) image search finds. The bands stay as the partition key because they send
   every matching pair to a common shard; large image buckets are searched with MultiHashIndex,
   small ones all-pairs (INDEX_ABOVE), the same pairs either way. A value matching at least
   DENSE_DEGREE others over the shard's buckets is *dense*; a matching pair becomes an *edge*
   between its groups unless both of its values are dense, in which case both go to the merge with
   their values instead. So a cluster of k different values that all match each other (a
   stock photo re-encoded k ways) costs k dense entries, not k^2 edges, while every edge left has an
   end with fewer than DENSE_DEGREE of them.
4. `dedup_merge`, one task: walk the candidates in input order (source, index), remembering each
   group's first kept member, and holding the first kept members of dense groups in the sequential
   stage's own indexes (MultiHashIndex, MinHashIndex). A sample is dropped when its own group or a
   group an edge joins it to already has a kept member, or, when it is dense, when the index finds a
   kept dense match; the earliest of those is the sample the sequential index returns (it returns
   the earliest kept match, and every matching pair is an edge or two dense values), so chains
   (A~B, B~C, A!~C: A and C kept) resolve as there. The merge reads only candidates, plus every
   sample's token counts when a token budget is set.

Groups keep a cluster of k identical values at k entries and dense values one of k different but
matching values at k, so neither costs k^2 edges (the comparisons inside a bucket stay all-pairs
below INDEX_ABOVE, at ~1 ns a pair in numpy).
"""
from __future__ import annotations

import json
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa

from nemo_twvlm.curation.hashing import PHASH_BITS, MinHashIndex, lsh_bands
from nemo_twvlm.curation.near_dup_search import MultiHashIndex
from nemo_twvlm.curation.parts import dedup_partition
from nemo_twvlm.curation.storage import atomic_write

EXACT, IMAGE, CAPTION = 0, 1, 2
Order = tuple[str, int]  # (source, index): the input order every decision follows

PARTITION_SCHEMA = pa.schema([
    ("relation", pa.uint8()), ("band", pa.uint8()), ("bucket", pa.binary()),
    ("source", pa.string()), ("index", pa.int64()), ("key", pa.string()),
    ("value", pa.binary()),  # what matching compares: pHash (8 bytes) or MinHash; empty for exact
])
_SHARDS = "twvlm_shards"  # a partition file's schema metadata: the shard of each record batch, in order


def duplicate(relation: int, score: float, ref: str) -> tuple[str, str]:
    """(reason, detail) of a sample dropped for matching the kept sample `ref` (source/key)."""
    if relation == EXACT:
        return "exact_duplicate", f"same as {ref}"
    if relation == IMAGE:
        return "near_duplicate_image", f"{score} bits from {ref}"
    return "near_duplicate_caption", f"Jaccard ~{score:.2f} with {ref}"


@dataclass(frozen=True)
class Banding:
    """Which relations are on and how their keys are cut; the dedup config, as partition sees it."""

    exact: bool
    image_hamming: int | None
    image_bands: int
    caption_jaccard: float | None
    num_perm: int

    @cached_property
    def caption_rows(self) -> int:
        return lsh_bands(self.caption_jaccard, self.num_perm)[1]

    @cached_property
    def caption_bands(self) -> int:
        return lsh_bands(self.caption_jaccard, self.num_perm)[0]

    def keys(self, cols: dict[str, list], i: int) -> Iterator[tuple[int, int, bytes, bytes]]:
        """(relation, band, bucket key, value) of sample `i` of a signature table."""
        if self.exact:
            yield EXACT, 0, cols["content_sha"][i].encode(), b""
        phash = cols["phash"][i]
        if self.image_hamming is not None and phash is not None:
            # Bands only route: two pHashes within image_hamming < image_bands bits share one, so meet in its shard.
            width = PHASH_BITS // self.image_bands
            value = phash.to_bytes(8, "big")
            for band in range(self.image_bands):
                key = (phash >> (band * width)) & ((1 << width) - 1)
                yield IMAGE, band, key.to_bytes((width + 7) // 8, "big"), value
        minhash = cols["minhash"][i]
        if self.caption_jaccard is not None and minhash is not None:
            r = self.caption_rows
            value = minhash.tobytes()
            for band in range(self.caption_bands):
                yield CAPTION, band, minhash[band * r:(band + 1) * r].tobytes(), value


def write_partition(work_dir: str | Path, num_shards: int, banding: Banding, cols: dict[str, list], source: str,
                    part: int) -> None:
    """One part's band keys in one Arrow IPC file, sorted by shard: one record batch per shard they
    reach, the shards named in order in the schema's metadata. One file per part, as in Spark's
    sort-based shuffle: a file per (part, shard) was parts x shards files, 3.1 million at 5*10^7
    samples on 64 shards, more than a shared filesystem's metadata server wants. IPC, not parquet:
    read once, of hashes that do not compress, and its footer lets a shard memory-map its own batch
    alone. Every run partitions every part again, so the file needs no fsync, and it replaces the
    whole of an earlier run's."""
    rows: dict[str, list] = {name: [] for name in PARTITION_SCHEMA.names}
    shard_of: list[int] = []
    for i, index in enumerate(cols["index"]):
        for relation, band, bucket, value in banding.keys(cols, i):
            shard_of.append(zlib.crc32(bytes((relation, band)) + bucket) % num_shards)
            for name, v in zip(PARTITION_SCHEMA.names, (relation, band, bucket, source, index, cols["key"][i], value)):
                rows[name].append(v)
    shard_ids = np.array(shard_of, np.int64)
    order = np.argsort(shard_ids, kind="stable")  # stable: a shard's rows stay in input order
    table = pa.Table.from_pydict(rows, schema=PARTITION_SCHEMA).take(order).combine_chunks()
    bounds = np.searchsorted(shard_ids[order], np.arange(num_shards + 1))
    reached = [shard for shard in range(num_shards) if bounds[shard] < bounds[shard + 1]]
    schema = PARTITION_SCHEMA.with_metadata({_SHARDS: json.dumps(reached)})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, schema) as writer:
        for shard in reached:
            writer.write_batch(table.slice(bounds[shard], bounds[shard + 1] - bounds[shard]).to_batches()[0])
    atomic_write(dedup_partition(work_dir, num_shards, source, part), sink.getvalue(), durable=False)


def read_shard(work_dir: str | Path, num_shards: int, shard: int, parts: Iterable[tuple[str, int, int]]) -> dict[str, list]:
    """Shard `shard`'s rows: its record batch in each of these (source, part, num_parts)'s files (a part
    whose keys miss this shard has none). Memory-mapped, so the other shards' batches are never read."""
    batches = []
    for source, part, _ in parts:
        path = dedup_partition(work_dir, num_shards, source, part)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: part {part} of {source!r} was not partitioned for {num_shards} shards "
                                    "(dedup_partition runs on every part before any shard)")
        reader = pa.ipc.open_file(pa.memory_map(str(path)))
        reached = json.loads(reader.schema.metadata[_SHARDS.encode()])
        if shard in reached:
            batches.append(reader.get_batch(reached.index(shard)).replace_schema_metadata(None))
    if not batches:
        return {name: [] for name in PARTITION_SCHEMA.names}
    return pa.Table.from_batches(batches, schema=PARTITION_SCHEMA).to_pydict()


@dataclass
class Candidates:
    """One shard's findings: groups of samples with equal values (found in band 0 only, so each
    group comes from exactly one shard), matching pairs of values (between their groups' first
    members) with an end that is not dense, the dense groups' values (by relation, then first
    member), and the refs (source/key) of every sample named."""

    groups: list[tuple[int, list[Order]]] = field(default_factory=list)
    edges: set[tuple[int, Order, Order, float]] = field(default_factory=set)
    dense: dict[int, dict[Order, bytes]] = field(default_factory=lambda: {IMAGE: {}, CAPTION: {}})
    refs: dict[Order, str] = field(default_factory=dict)


# Buckets of more distinct pHashes than this are searched with MultiHashIndex (linear) instead of all
# pairs in numpy (quadratic, ~1 ns a pair): measured on clustered codes (BENCHMARKS.md 5c), 94,861 values
# took 8.1 s all-pairs vs 26.8 s indexed, 4.6M matching pairs either way; an index decision's ~230 us
# equals half a bucket of ~1 ns pairs near 4.6*10^5 values. A 5*10^7-sample input's 8-bit band buckets
# hold ~2*10^5.
INDEX_ABOVE = 400_000
# A value with this many matches in a shard goes to the merge's index instead of into edges: an edge
# costs ~200 B in a Python set and a dense lookup one index query (~230 us image, ~40 us caption), so
# past a few dozen matches the query is the cheaper way to carry them.
DENSE_DEGREE = 32

Matches = Iterator[tuple[int, np.ndarray, np.ndarray]]  # (b, the earlier values a < b it matches, their scores)


def find_candidates(rows: dict[str, list], *, image_hamming: int | None, caption_jaccard: float | None,
                    index_above: int = INDEX_ABOVE, dense_degree: int | None = None) -> Candidates:
    dense_degree = DENSE_DEGREE if dense_degree is None else dense_degree
    buckets: dict[tuple[int, int, bytes], list[int]] = defaultdict(list)
    for r, key in enumerate(zip(rows["relation"], rows["band"], rows["bucket"])):
        buckets[key].append(r)
    found = Candidates()
    searches: list[_BucketSearch] = []
    for (relation, band, _), members in buckets.items():
        if len(members) < 2:
            continue
        by_value: dict[bytes, list[Order]] = defaultdict(list)
        for r in members:
            by_value[rows["value"][r]].append((rows["source"][r], rows["index"][r]))
        if band == 0:
            found.groups += [(relation, sorted(m)) for m in by_value.values() if len(m) > 1]
        if relation != EXACT and len(by_value) > 1:
            searches.append(_BucketSearch(relation, list(by_value), [min(m) for m in by_value.values()],
                                          image_hamming if relation == IMAGE else caption_jaccard, index_above))
    _edges_and_dense(found, searches, dense_degree)
    named = {m for _, group in found.groups for m in group} | {o for e in found.edges for o in e[1:3]}
    named |= found.dense[IMAGE].keys() | found.dense[CAPTION].keys()
    for source, index, key in zip(rows["source"], rows["index"], rows["key"]):
        if (source, index) in named:
            found.refs[(source, index)] = f"{source}/{key}"
    return found


@dataclass
class _BucketSearch:
    """One bucket's distinct values (and their groups' first members) to compare."""

    relation: int
    values: list[bytes]
    reps: list[Order]
    threshold: float  # image_hamming or caption_jaccard
    index_above: int

    def matches(self) -> Matches:
        if self.relation == IMAGE:
            return _near_images(self.values, int(self.threshold), self.index_above)
        return _near_captions(self.values, self.threshold)


def _edges_and_dense(found: Candidates, searches: list[_BucketSearch], dense_degree: int) -> None:
    """The shard's matches as edges and dense values. A first pass counts each value's matches over
    all of the shard's buckets (and keeps them while they average under dense_degree per value, so a
    shard without dense values searches once); a second emits the edges with an end below dense_degree."""
    degree: dict[tuple[int, Order], int] = defaultdict(int)
    kept: list[list[tuple[int, np.ndarray, np.ndarray]]] | None = []
    pairs, cap = 0, dense_degree * sum(len(search.values) for search in searches) // 2
    for search in searches:
        counts = np.zeros(len(search.values), np.int64)
        results = []
        for b, a, scores in search.matches():
            counts[b] += a.size
            counts[a] += 1  # `a` holds distinct values
            pairs += a.size
            if kept is not None:
                results.append((b, a, scores))
        for rep, count in zip(search.reps, counts.tolist()):
            degree[(search.relation, rep)] += count
        if kept is not None:
            kept.append(results)
            if pairs > cap:
                kept = None  # dense values are coming: search again in the second pass instead of holding k^2 pairs
    for i, search in enumerate(searches):
        dense = np.array([degree[(search.relation, rep)] >= dense_degree for rep in search.reps])
        for v in np.flatnonzero(dense).tolist():
            found.dense[search.relation][search.reps[v]] = search.values[v]
        for b, a, scores in (kept[i] if kept is not None else search.matches()):
            if dense[b]:
                a, scores = a[~dense[a]], scores[~dense[a]]
            for v, score in zip(a.tolist(), scores.tolist()):
                found.edges.add((search.relation, *sorted((search.reps[v], search.reps[b])), score))


def _near_images(values: list[bytes], image_hamming: int, index_above: int) -> Matches:
    """For each of a bucket's distinct pHashes b, the earlier ones within image_hamming bits and their
    distances: the pairs sharing this band, all of them found exactly whichever search runs (so
    decisions do not change)."""
    hashes = [int.from_bytes(v, "big") for v in values]
    if len(values) <= index_above:
        codes = np.array(hashes, np.uint64)
        for b in range(1, len(values)):
            bits = np.bitwise_count(codes[:b] ^ codes[b])
            a = np.flatnonzero(bits <= image_hamming)
            if a.size:
                yield b, a, bits[a].astype(np.int64)
        return
    index = MultiHashIndex(image_hamming, threads=1)  # the shard tasks are the parallelism here
    for slot, h in enumerate(hashes):
        index.add(slot, h)
    block = 4096  # bounds the lookahead's results held at once
    for start in range(0, len(hashes), block):
        index.lookahead(hashes[start:start + block])
        for b in range(start, min(start + block, len(hashes))):
            earlier = []
            for a, bits in index.query_all(hashes[b]):  # earliest slot first, b itself among them
                if a >= b:
                    break
                earlier.append((a, bits))
            if earlier:
                a, bits = np.array(earlier, np.int64).T
                yield b, a, bits


def _near_captions(values: list[bytes], caption_jaccard: float) -> Matches:
    """For each of a bucket's distinct MinHashes b, the earlier ones agreeing on caption_jaccard of
    their values, and that share, as MinHashIndex compares them."""
    signatures = np.stack([np.frombuffer(v, np.uint32) for v in values])
    for b in range(1, len(values)):
        agree = np.mean(signatures[:b] == signatures[b], axis=1)
        a = np.flatnonzero(agree >= caption_jaccard)
        if a.size:
            yield b, a, agree[a]


class Merge:
    """The sequential walk over candidates only: see the module docstring."""

    def __init__(self, shards: Iterable[Candidates], banding: Banding):
        self.group_of: dict[int, dict[Order, Order]] = {r: {} for r in (EXACT, IMAGE, CAPTION)}
        self.neighbours: dict[int, dict[Order, list[tuple[Order, float]]]] = {
            r: defaultdict(list) for r in (EXACT, IMAGE, CAPTION)}
        self.dense: dict[int, dict[Order, bytes]] = {EXACT: {}, IMAGE: {}, CAPTION: {}}
        self.refs: dict[Order, str] = {}
        edges: set[tuple[int, Order, Order, float]] = set()
        for found in shards:
            self.refs.update(found.refs)
            edges |= found.edges
            for relation, members in found.groups:
                for m in members:
                    self.group_of[relation][m] = members[0]
            for relation, values in found.dense.items():
                self.dense[relation].update(values)
        for relation, a, b, score in edges:
            self.neighbours[relation][a].append((b, score))
            self.neighbours[relation][b].append((a, score))
        self.first_kept: dict[int, dict[Order, Order]] = {r: {} for r in (EXACT, IMAGE, CAPTION)}
        # The kept dense groups' first members, searched as the single-process stage searches them.
        self.dense_index = {IMAGE: MultiHashIndex(banding.image_hamming) if self.dense[IMAGE] else None,
                            CAPTION: (MinHashIndex(banding.caption_jaccard, banding.num_perm)
                                      if self.dense[CAPTION] else None)}

    def candidates(self) -> list[Order]:
        """Every sample some relation connects to another; any other sample is kept (budget aside)."""
        named = set()
        for relation in (EXACT, IMAGE, CAPTION):
            named |= self.group_of[relation].keys() | self.neighbours[relation].keys() | self.dense[relation].keys()
        return sorted(named)

    def verdict(self, sample: Order) -> tuple[str, str] | None:
        """Exact first, then image, then caption, as `DedupStage` checks them."""
        for relation in (EXACT, IMAGE, CAPTION):
            group = self.group_of[relation].get(sample, sample)
            kept = self.first_kept[relation]
            hits = [(kept[group], 0 if relation != CAPTION else 1.0)] if group in kept else []
            hits += [(kept[other], score) for other, score in self.neighbours[relation].get(group, ()) if other in kept]
            value = self.dense[relation].get(group)
            if value is not None:
                hit = self.dense_index[relation].query(_signature(relation, value))
                hits += [hit] if hit is not None else []
            if hits:
                first, score = min(hits)
                return duplicate(relation, score, self.refs[first])
        return None

    def keep(self, sample: Order) -> None:
        for relation in (EXACT, IMAGE, CAPTION):
            group = self.group_of[relation].get(sample, sample)
            value = self.dense[relation].get(group)
            if sample in self.group_of[relation] or group in self.neighbours[relation] or value is not None:
                if self.first_kept[relation].setdefault(group, sample) == sample and value is not None:
                    self.dense_index[relation].add(sample, _signature(relation, value))


def _signature(relation: int, value: bytes) -> int | np.ndarray:
    """A partition row's value as the single-process indexes take it: pHash int, MinHash array."""
    return int.from_bytes(value, "big") if relation == IMAGE else np.frombuffer(value, np.uint32)


class TokenBudget:
    """Tokens of kept samples, in input order; a sample that would pass the budget is dropped."""

    def __init__(self, budget: int | None):
        self.budget = budget
        self.used = 0

    def spend(self, tokens: int) -> tuple[str, str] | None:
        if self.budget is None:
            return None
        if self.used + tokens > self.budget:
            return "over_token_budget", f"{self.used} + {tokens} > {self.budget}"
        self.used += tokens
        return None
