"""A per-partition hash chain over audit records, so that any alteration, gap or reordering shows.

Each record carries ``chain = {partition, seq, prev_hash, hash}``. ``hash`` is SHA-256 over the
canonical encoding of the record without ``chain.hash`` (keys sorted, compact JSON via orjson),
so it also covers the sequence number and the previous hash. With a secret key configured the
digest is HMAC-SHA256: then a record that was not written by the detector cannot carry a valid
hash even if its author recomputes the chain.

>>> chain = ChainState(partition=0)
>>> first = chain.seal({"record_type": "decision", "transaction_id": "t1"})
>>> second = chain.seal({"record_type": "decision", "transaction_id": "t2"})
>>> first["chain"]["seq"], second["chain"]["prev_hash"] == first["chain"]["hash"]
(0, True)
>>> verify_record(second, expected_seq=1, expected_prev=first["chain"]["hash"]) is None
True
>>> written = chain.seal_encoded({"record_type": "decision", "transaction_id": "t3"})
>>> verify_record(orjson.loads(written), expected_seq=2, expected_prev=second["chain"]["hash"]) is None
True
>>> second["transaction_id"] = "t3"
>>> verify_record(second, expected_seq=1, expected_prev=first["chain"]["hash"])
'altered: the hash does not match the content'
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import orjson

from detector.audit.records import chain_fields

GENESIS = "0" * 64


def canonical(record: dict[str, Any]) -> bytes:
    """The bytes that are hashed: the record with its own hash left out, keys sorted."""
    chain = record.get("chain")
    body = dict(record)
    if isinstance(chain, dict):
        body["chain"] = {k: v for k, v in chain.items() if k != "hash"}
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def encode(record: dict[str, Any]) -> bytes:
    """A sealed record as written: compact JSON, keys sorted, its hash included. The verifier
    accepts these bytes only, so no copy can read differently to another JSON parser."""
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def digest(data: bytes, key: bytes | None = None) -> str:
    if key:
        return hmac.new(key, data, hashlib.sha256).hexdigest()
    return hashlib.sha256(data).hexdigest()


@dataclass
class ChainState:
    """The head of one partition's chain: the next sequence number and the last hash."""

    partition: int
    next_seq: int = 0
    last_hash: str = GENESIS
    key: bytes | None = None

    def seal(self, record: dict[str, Any]) -> dict[str, Any]:
        """Link ``record`` to the chain (in place) and advance the head."""
        self.seal_encoded(record)
        return record

    def seal_encoded(self, record: dict[str, Any]) -> bytes:
        """:meth:`seal`, returning the record's bytes as written (:func:`encode`), encoded once."""
        chain = {"partition": self.partition, "prev_hash": self.last_hash, "seq": self.next_seq}
        record["chain"] = chain
        # The canonical form without copying: ``record`` has no hash yet.
        written = self._sealed(orjson.dumps(record, option=orjson.OPT_SORT_KEYS), self._linked())
        chain["hash"] = self.last_hash
        return written

    def seal_sorted(self, record: dict[str, Any]) -> bytes:
        """:meth:`seal_encoded` for a record whose keys are already in sorted order at every level,
        ``chain`` among them (its value is replaced): encoded as it is, as sorting it again is a
        good part of the cost of a decision's record. ``record["chain"]`` is left as its encoded
        form without the hash (an ``orjson.Fragment``)."""
        linked = self._linked()
        record["chain"] = orjson.Fragment(linked)
        return self._sealed(orjson.dumps(record), linked)

    def _linked(self) -> bytes:
        """The next record's chain object without its hash, as orjson writes it: unique in the
        record, as it holds the previous hash."""
        return b'{"partition":%d,"prev_hash":"%s","seq":%d}' % (
            self.partition,
            self.last_hash.encode(),
            self.next_seq,
        )

    def _sealed(self, hashed: bytes, linked: bytes) -> bytes:
        """Hash the canonical form ``hashed``, whose chain object is ``linked``, and advance the head.

        The written form is the hashed form with the hash spliced in as the chain's first field (its
        place in sorted order), so it is still canonical JSON with sorted keys.
        """
        self.last_hash = digest(hashed, self.key)
        self.next_seq += 1
        at = hashed.index(linked) + 1
        return b"".join((hashed[:at], b'"hash":"', self.last_hash.encode(), b'",', hashed[at:]))

    @classmethod
    def after(cls, record: dict[str, Any], key: bytes | None = None) -> ChainState:
        """The head that continues the chain after ``record`` (the last one committed)."""
        chain = record["chain"]
        return cls(partition=chain["partition"], next_seq=chain["seq"] + 1, last_hash=chain["hash"], key=key)


def verify_record(
    record: Any, expected_seq: int, expected_prev: str, key: bytes | None = None, partition: int | None = None
) -> str | None:
    """What is wrong with ``record`` at this point of the chain, or None if it fits."""
    chain = chain_fields(record)
    if chain is None:
        return "foreign: no chain fields"
    if partition is not None and chain["partition"] != partition:
        return f"foreign: chained for partition {chain['partition']}, found in partition {partition}"
    if not hmac.compare_digest(str(chain["hash"]), digest(canonical(record), key)):
        return "altered: the hash does not match the content"
    if chain["seq"] != expected_seq:
        if isinstance(chain["seq"], int) and chain["seq"] > expected_seq:
            return f"missing: expected seq {expected_seq}, found {chain['seq']}"
        return f"reordered: expected seq {expected_seq}, found {chain['seq']}"
    if chain["prev_hash"] != expected_prev:
        return "reordered: prev_hash does not match the previous record"
    return None
