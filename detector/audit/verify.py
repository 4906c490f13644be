"""Check the audit hash chains: each record intact, in sequence, none missing, written by the detector.

Each audit partition is one chain (see :mod:`detector.audit.chain`). Records are checked in offset
order; offsets themselves may jump (transaction markers take offsets), only ``chain.seq`` counts.
The first problem in each partition is reported at its exact position, as one of:

* ``altered``: the hash does not match the content (a field was changed);
* ``missing``: the sequence jumps ahead and the skipped records are nowhere later in the partition;
* ``reordered``: a record is out of sequence (the expected one comes later, or the links disagree);
* ``foreign``: not an audit record of this partition (no chain, chained for another partition, not
  JSON, or, with an HMAC key, sealed with a plain SHA-256 instead of the key).

Records after the first problem of a partition are counted but not verified: one break makes every
later link meaningless. An auditor who wants the full list asks for every break (``verify --all``):
checking then goes on after a break from the broken record's own place in the chain when it has one
(altered in place, the first after a gap, a wrong link), else from the last good record (a foreign
record, or one from earlier in the chain), so that each problem is reported once, not again at every
record after it.

What a pass proves: every record read is byte for byte what was sealed (the detector writes the
canonical encoding, :func:`~detector.audit.chain.encode`, and no other bytes pass, so a copy that
another JSON parser would read differently, e.g. with a key repeated, is ``altered``), in the
order sealed, with none removed between the first and the last one read; with an HMAC key, also
that each record was sealed by a holder of the key. What it cannot prove on its own: that nothing
was cut off the end (a chain with its last records removed is still a valid, shorter chain), nor,
without a key, that the whole chain was not rewritten by someone who recomputed every hash. Both
need an anchor kept outside the topic: save the heads (last ``seq`` and ``hash`` of each
partition) after a run and give them to whoever checks later; a later run with those heads fails
if any partition ends before its saved head or holds a different record there.

>>> from detector.audit.chain import ChainState
>>> chain = ChainState(partition=0)
>>> values = [chain.seal_encoded({"record_type": "decision", "n": n}) for n in range(3)]
>>> verify_messages([(0, 10, values[0]), (0, 12, values[2])]).breaks[0].describe()
'partition 0, offset 12, seq 1: missing: seq 1 is not in the partition (found seq 2 here)'
>>> verify_messages([(0, 10, values[0]), (0, 12, values[1]), (0, 14, values[2])]).ok
True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from detector.audit.chain import GENESIS, canonical, digest, encode, verify_record
from detector.audit.records import chain_fields, decode_record

ALTERED, MISSING, REORDERED, FOREIGN = "altered", "missing", "reordered", "foreign"
TRUNCATED, REWRITTEN = "truncated", "rewritten"  # only against saved heads


@dataclass(frozen=True)
class Head:
    """The last record of a partition's chain: what a later verification must still find."""

    seq: int
    hash: str


@dataclass(frozen=True)
class Break:
    """A problem in a partition: where (``offset`` None: past the last record) and what."""

    partition: int
    offset: int | None
    seq: int  # the position in the chain: the sequence number expected there
    problem: str
    detail: str

    def describe(self) -> str:
        where = "after the last record" if self.offset is None else f"offset {self.offset}"
        return f"partition {self.partition}, {where}, seq {self.seq}: {self.problem}: {self.detail}"


@dataclass
class PartitionChain:
    """Progress through one partition's chain."""

    partition: int
    records: int = 0  # read, including any after the first break
    verified: int = 0  # in sequence and intact (before the first break, unless every break is wanted)
    head: Head | None = None
    breaks: list[Break] = field(default_factory=list)
    # After a jump ahead, until found later: the first seq skipped -> (its break's index, seq found).
    skipped: dict[int, tuple[int, int]] = field(default_factory=dict)

    def next_seq(self) -> int:
        return 0 if self.head is None else self.head.seq + 1


@dataclass(frozen=True)
class Verification:
    """The outcome for every partition seen or expected."""

    chains: dict[int, PartitionChain]
    every_break: bool = False

    @property
    def breaks(self) -> list[Break]:
        return [b for _, c in sorted(self.chains.items()) for b in c.breaks]

    @property
    def ok(self) -> bool:
        return not self.breaks

    @property
    def verified(self) -> int:
        return sum(c.verified for c in self.chains.values())

    def heads(self) -> dict[int, Head]:
        return {p: c.head for p, c in self.chains.items() if c.head is not None}

    def summary_lines(self) -> list[str]:
        lines = []
        for partition, chain in sorted(self.chains.items()):
            head = f", head seq {chain.head.seq} {chain.head.hash}" if chain.head else ""
            unverified = chain.records - chain.verified
            not_verified = "not verified" if self.every_break else "from the break on not verified"
            after = f", {unverified} {not_verified}" if unverified else ""
            lines.append(f"partition {partition}: {chain.verified} records verified{after}{head}")
        lines.append(f"total: {self.verified} records verified in {len(self.chains)} partitions")
        lines.extend(f"BROKEN {b.describe()}" for b in self.breaks)
        return lines


class ChainVerifier:
    """Feed records in offset order per partition with :meth:`add`; read :meth:`result` at the end."""

    def __init__(
        self,
        key: bytes | None = None,
        partitions: Iterable[int] = (),
        expected_heads: Mapping[int, Head] | None = None,
        every_break: bool = False,
    ) -> None:
        self.key = key or None
        self.expected_heads = dict(expected_heads or {})
        self.every_break = every_break
        self._chains = {p: PartitionChain(p) for p in (*partitions, *self.expected_heads)}

    def add(self, partition: int, offset: int, value: bytes | None) -> None:
        chain = self._chains.setdefault(partition, PartitionChain(partition))
        chain.records += 1
        record = decode_record(value)
        if _found_skipped(chain, offset, record) or (chain.breaks and not self.every_break):
            return
        expected_seq = chain.next_seq()
        problem = self._problem(chain, record, value)
        if problem is not None:
            kind, _, detail = problem.partition(": ")
            if kind == MISSING:
                assert record is not None, "a record that does not decode is foreign, not missing"
                found = record["chain"]["seq"]
                detail = f"seq {_span(expected_seq, found - 1)} not in the partition (found seq {found} here)"
                chain.skipped[expected_seq] = (len(chain.breaks), found)
            chain.breaks.append(Break(partition, offset, expected_seq, kind, detail))
            if self.every_break:
                chain.head = _resumed(kind, expected_seq, record) or chain.head
            return
        assert record is not None, "a record that does not decode is a problem"
        chain.head = Head(expected_seq, record["chain"]["hash"])
        chain.verified += 1
        anchor = self.expected_heads.get(partition)
        if anchor is not None and anchor.seq == expected_seq and anchor.hash != chain.head.hash:
            detail = f"the saved head has hash {anchor.hash}, this record {chain.head.hash}"
            chain.breaks.append(Break(partition, offset, expected_seq, REWRITTEN, detail))

    def result(self) -> Verification:
        for partition, anchor in self.expected_heads.items():
            chain = self._chains[partition]
            reached = chain.head.seq if chain.head else -1
            if (self.every_break or not chain.breaks) and reached < anchor.seq:
                detail = f"the chain ends at seq {reached}; the saved head is seq {anchor.seq}"
                chain.breaks.append(Break(partition, None, reached + 1, TRUNCATED, detail))
        return Verification(dict(self._chains), self.every_break)

    def _problem(self, chain: PartitionChain, record: Any, value: bytes | None) -> str | None:
        if record is None:
            return f"{FOREIGN}: not a JSON object"
        expected_prev = chain.head.hash if chain.head else GENESIS
        problem = verify_record(record, chain.next_seq(), expected_prev, self.key, chain.partition)
        if problem is None and value != encode(record):
            return f"{ALTERED}: the content matches its hash, but not as written by the detector"
        if problem is None or not problem.startswith(ALTERED):
            return problem
        if self.key and record["chain"]["hash"] == digest(canonical(record)):
            return f"{FOREIGN}: sealed with a plain SHA-256, not the audit HMAC key"
        if not self.key and chain.head is None:
            return f"{problem} (or the chain uses an HMAC key: give verify the detector's key)"
        return problem


def verify_messages(
    messages: Iterable[tuple[int, int, bytes | None]],
    key: bytes | None = None,
    partitions: Iterable[int] = (),
    expected_heads: Mapping[int, Head] | None = None,
    every_break: bool = False,
) -> Verification:
    """Verify ``(partition, offset, value)`` triples, e.g. a topic read back or a copy held in memory."""
    verifier = ChainVerifier(key, partitions, expected_heads, every_break)
    for partition, offset, value in messages:
        verifier.add(partition, offset, value)
    return verifier.result()


def save_heads(path: Path, topic: str, verification: Verification) -> None:
    """Write the heads as JSON, to be kept where the audit topic's writers cannot change it."""
    heads = {str(p): {"seq": h.seq, "hash": h.hash} for p, h in sorted(verification.heads().items())}
    path.write_bytes(orjson.dumps({"topic": topic, "heads": heads}, option=orjson.OPT_INDENT_2))


def load_heads(path: Path) -> dict[int, Head]:
    """The heads written by :func:`save_heads`; ValueError if the file is not such a file."""
    try:
        body = orjson.loads(path.read_bytes())
        return {int(p): Head(int(h["seq"]), str(h["hash"])) for p, h in body["heads"].items()}
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise ValueError(f"{path} is not a heads file written by verify --save-head ({error!r})") from None


def _found_skipped(chain: PartitionChain, offset: int, record: Any) -> bool:
    """Whether ``record`` is one a jump ahead skipped: then the partition is out of order, not
    incomplete, and that break says so."""
    fields = chain_fields(record)
    seq = None if fields is None else fields["seq"]
    for first, (index, found) in chain.skipped.items():
        if seq == first:
            detail = f"seq {first} comes later, at offset {offset} (found seq {found} here)"
            chain.breaks[index] = replace(chain.breaks[index], problem=REORDERED, detail=detail)
            del chain.skipped[first]
            return True
    return False


def _resumed(kind: str, expected_seq: int, record: dict[str, Any] | None) -> Head | None:
    """Where checking goes on after a break at ``expected_seq``: the broken record's place when it
    has one in this chain, else None (from the last good record)."""
    if kind == FOREIGN:
        return None
    assert record is not None, "a record that does not decode is foreign"
    chain = record["chain"]
    if kind == MISSING:
        return Head(chain["seq"], chain["hash"])  # intact, past a gap
    if kind == ALTERED or chain["seq"] == expected_seq:
        return Head(expected_seq, str(chain["hash"]))  # in its place: the next record links to it
    return None  # from earlier in the chain


def _span(first: int, last: int) -> str:
    return f"{first} is" if first == last else f"{first} to {last} are"
