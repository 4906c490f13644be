"""Chain verification in memory: an untouched chain passes; each kind of tampering is caught at its
exact position (partition, offset, seq) and named for what it is.

The tampering helpers are shared with the Kafka test, which applies them to a copy of a real topic.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.audit.chain import ChainState, verify_record
from detector.audit.cli import register
from detector.audit.verify import (
    ALTERED,
    FOREIGN,
    MISSING,
    REORDERED,
    REWRITTEN,
    TRUNCATED,
    Break,
    Head,
    load_heads,
    save_heads,
    verify_messages,
)

KEY = b"audit-chain-key"
AT = 5  # where each tampering happens: position 5 of the partition, so seq 5 is expected there
# How to tamper -> what verify must call it.
TAMPERINGS = {
    "altered": ALTERED,
    "repeated_key": ALTERED,
    "deleted": MISSING,
    "swapped": REORDERED,
    "unchained": FOREIGN,
    "unkeyed": FOREIGN,
}


def chain_values(partition: int, count: int, key: bytes | None = None) -> list[bytes]:
    """``count`` sealed decision-like records of one partition, serialised as the detector does."""
    chain = ChainState(partition=partition, key=key)
    return [
        chain.seal_encoded(
            {
                "record_type": "decision",
                "transaction_id": f"t{partition}-{n}",
                "decision": "approve",
                "score": 0.01 * n,
            }
        )
        for n in range(count)
    ]


def tampered(values: list[bytes], how: str, at: int, key: bytes | None) -> list[bytes]:
    """A copy of one partition's ``values`` with one tampering at position ``at``."""
    copy = list(values)
    if how == "altered":
        record = orjson.loads(copy[at])
        record["score"] = 0.0 if record["score"] else 0.5
        copy[at] = orjson.dumps(record)
    elif how == "repeated_key":
        # The sealed bytes with "decision" given twice: orjson reads the sealed value, the last one,
        # but a parser that keeps the first reads "block".
        copy[at] = b'{"decision":"block",' + copy[at][1:]
    elif how == "deleted":
        del copy[at]
    elif how == "swapped":
        copy[at], copy[at + 1] = copy[at + 1], copy[at]
    elif how == "unchained":
        copy.insert(
            at, orjson.dumps({"record_type": "decision", "transaction_id": "forged", "decision": "approve"})
        )
    elif how == "unkeyed":
        # A careful forger: right seq and prev_hash, but without the key only a plain SHA-256.
        previous = orjson.loads(copy[at - 1])["chain"]
        forger = ChainState(previous["partition"], next_seq=at, last_hash=previous["hash"], key=None)
        forged = {"record_type": "decision", "transaction_id": "forged", "decision": "approve"}
        copy.insert(at, forger.seal_encoded(forged))
    else:
        raise ValueError(how)
    return copy


def with_offsets(partition: int, values: list[bytes]) -> list[tuple[int, int, bytes]]:
    """As read from a topic whose transaction markers take every other offset."""
    return [(partition, 2 * i + 1, value) for i, value in enumerate(values)]


def three_partitions(key: bytes | None, count: int = 12) -> dict[int, list[bytes]]:
    return {p: chain_values(p, count, key) for p in range(3)}


def messages_of(partitions: dict[int, list[bytes]]) -> list[tuple[int, int, bytes]]:
    """Partitions interleaved, as a consumer of all partitions delivers them."""
    streams = [with_offsets(p, values) for p, values in partitions.items()]
    longest = max(len(s) for s in streams)
    return [s[i] for i in range(longest) for s in streams if i < len(s)]


@pytest.mark.parametrize("key", [None, KEY])
def test_untouched_chains_pass_with_counts_per_partition_and_total(key: bytes | None) -> None:
    partitions = three_partitions(key)
    partitions[1] = partitions[1][:7]
    result = verify_messages(messages_of(partitions), key=key, partitions=[0, 1, 2, 3])
    assert result.ok, result.summary_lines()
    assert {p: c.verified for p, c in result.chains.items()} == {0: 12, 1: 7, 2: 12, 3: 0}
    assert result.verified == 31
    assert result.summary_lines()[-1] == "total: 31 records verified in 4 partitions"
    assert result.heads()[1] == Head(6, orjson.loads(partitions[1][6])["chain"]["hash"])


@pytest.mark.parametrize("how", sorted(TAMPERINGS))
def test_each_tampering_is_caught_at_its_exact_position(how: str) -> None:
    partitions = three_partitions(KEY)
    partitions[1] = tampered(partitions[1], how, AT, KEY)
    result = verify_messages(messages_of(partitions), key=KEY)
    assert [b.partition for b in result.breaks] == [1]  # the other partitions are unaffected
    broken = result.breaks[0]
    assert (broken.offset, broken.seq, broken.problem) == (2 * AT + 1, AT, TAMPERINGS[how])
    assert result.chains[1].verified == AT
    assert result.chains[0].verified == result.chains[2].verified == 12
    assert not result.ok


def test_the_messages_name_what_was_found() -> None:
    values = chain_values(0, 10, KEY)
    details = {
        how: verify_messages(with_offsets(0, tampered(values, how, AT, KEY)), key=KEY).breaks[0].detail
        for how in TAMPERINGS
    }
    assert details["deleted"] == "seq 5 is not in the partition (found seq 6 here)"
    assert details["swapped"] == "seq 5 comes later, at offset 13 (found seq 6 here)"
    assert details["unchained"] == "no chain fields"
    assert details["repeated_key"] == "the content matches its hash, but not as written by the detector"
    assert details["unkeyed"] == "sealed with a plain SHA-256, not the audit HMAC key"


def test_several_missing_records_are_named_as_a_range() -> None:
    values = chain_values(2, 10)
    broken = verify_messages(with_offsets(2, values[:3] + values[6:])).breaks[0]
    assert broken == Break(2, 7, 3, MISSING, "seq 3 to 5 are not in the partition (found seq 6 here)")


def test_a_record_moved_to_another_partition_is_foreign() -> None:
    moved = chain_values(0, 4)[2]
    messages = with_offsets(1, [*chain_values(1, 2), moved])
    broken = verify_messages(messages).breaks[0]
    assert (broken.partition, broken.seq, broken.problem) == (1, 2, FOREIGN)
    assert "chained for partition 0" in broken.detail


def test_bytes_that_are_not_a_json_object_are_foreign() -> None:
    values = chain_values(0, 3)
    values.insert(1, b"[1, 2]")
    broken = verify_messages(with_offsets(0, values)).breaks[0]
    assert (broken.offset, broken.seq, broken.problem, broken.detail) == (3, 1, FOREIGN, "not a JSON object")


def test_the_wrong_key_fails_at_the_first_record_with_a_hint() -> None:
    keyed = with_offsets(0, chain_values(0, 3, KEY))
    without_key = verify_messages(keyed).breaks[0]
    assert (without_key.seq, without_key.problem) == (0, ALTERED)
    assert "HMAC key" in without_key.detail
    unkeyed = with_offsets(0, chain_values(0, 3))
    assert verify_messages(unkeyed, key=KEY).breaks[0].problem == FOREIGN


def test_a_truncated_tail_passes_alone_but_not_against_saved_heads(tmp_path: Path) -> None:
    values = chain_values(0, 10)
    full = verify_messages(with_offsets(0, values))
    head_file = tmp_path / "heads.json"
    save_heads(head_file, "fraud.audit", full)
    heads = load_heads(head_file)
    assert heads == {0: Head(9, orjson.loads(values[9])["chain"]["hash"])}

    truncated = with_offsets(0, values[:8])
    assert verify_messages(truncated).ok  # undetectable without an anchor
    broken = verify_messages(truncated, expected_heads=heads).breaks[0]
    assert broken == Break(0, None, 8, TRUNCATED, "the chain ends at seq 7; the saved head is seq 9")
    assert broken.describe().startswith("partition 0, after the last record, seq 8: truncated")
    assert verify_messages(with_offsets(0, values), expected_heads=heads).ok


def test_a_chain_recomputed_after_an_edit_passes_alone_but_not_against_saved_heads() -> None:
    """Without a key anyone can re-seal an edited chain; the saved head is what exposes it."""
    values = chain_values(0, 6)
    heads = verify_messages(with_offsets(0, values)).heads()
    rewritten_chain = ChainState(partition=0)
    rewritten = []
    for value in values:
        record = orjson.loads(value)
        del record["chain"]
        record["decision"] = "block" if record["transaction_id"] == "t0-2" else record["decision"]
        rewritten.append(rewritten_chain.seal_encoded(record))
    assert verify_messages(with_offsets(0, rewritten)).ok
    broken = verify_messages(with_offsets(0, rewritten), expected_heads=heads).breaks[0]
    assert (broken.offset, broken.seq, broken.problem) == (11, 5, REWRITTEN)


def test_a_heads_file_of_another_shape_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "heads.json"
    path.write_text('{"partitions": []}')
    with pytest.raises(ValueError, match="not a heads file"):
        load_heads(path)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(records=st.lists(st.dictionaries(st.text(), json_values, max_size=6), min_size=1, max_size=3))
def test_the_written_bytes_are_the_canonical_encoding_and_verify(records: list[dict]) -> None:
    """The hash is spliced into the hashed bytes rather than encoding twice: whatever a record holds
    (nested objects, a "chain" key inside an earlier key's value, quotes and braces in strings), the
    written bytes must be exactly the sorted-key encoding of the sealed record, and must verify."""
    records = [{**record, "aaa": {"chain": {"partition": 0}}} for record in records]
    chain, previous = ChainState(partition=0, key=KEY), "0" * 64
    for seq, record in enumerate(records):
        written = chain.seal_encoded(record)
        assert written == orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
        assert verify_record(orjson.loads(written), seq, previous, KEY) is None
        previous = record["chain"]["hash"]


@pytest.mark.parametrize("how", sorted(TAMPERINGS))
def test_every_break_lists_each_separate_problem_once(how: str) -> None:
    """Any tampering at seq 5, and seq 9 deleted: with every break wanted both are listed, each
    where it is, and the records between and after them still verify."""
    values = chain_values(1, 12, KEY)
    copy = tampered(tampered(values, "deleted", 9, KEY), how, AT, KEY)
    at_gap = 2 * copy.index(values[10]) + 1  # seq 10, where seq 9 should be
    result = verify_messages(with_offsets(1, copy), key=KEY, every_break=True)
    assert [(b.offset, b.seq, b.problem) for b in result.breaks] == [
        (2 * AT + 1, AT, TAMPERINGS[how]),
        (at_gap, 9, MISSING),
    ]
    assert result.breaks[1].detail == "seq 9 is not in the partition (found seq 10 here)"
    assert result.heads()[1].seq == 11
    first_only = verify_messages(with_offsets(1, copy), key=KEY)
    assert first_only.breaks == result.breaks[:1]


def test_every_break_goes_on_past_an_altered_record_and_a_gap_with_counts() -> None:
    values = chain_values(0, 12)
    copy = tampered(tampered(values, "deleted", 8, None), "altered", 3, None)
    result = verify_messages(with_offsets(0, copy), every_break=True)
    assert result.breaks == [
        Break(0, 7, 3, ALTERED, "the hash does not match the content"),
        Break(0, 17, 8, MISSING, "seq 8 is not in the partition (found seq 9 here)"),
    ]
    chain = result.chains[0]
    assert (chain.records, chain.verified) == (11, 9)
    lines = result.summary_lines()
    assert lines[0].startswith("partition 0: 9 records verified, 2 not verified, head seq 11 ")
    assert lines[-2:] == [f"BROKEN {b.describe()}" for b in result.breaks]
    first_only = verify_messages(with_offsets(0, copy)).summary_lines()
    assert first_only[0].startswith("partition 0: 3 records verified, 8 from the break on not verified")
    assert len([line for line in first_only if line.startswith("BROKEN")]) == 1


def test_every_break_also_reports_a_truncated_tail_after_a_break() -> None:
    values = chain_values(0, 10)
    heads = verify_messages(with_offsets(0, values)).heads()
    copy = tampered(values[:8], "altered", 2, None)
    problems = [b.problem for b in verify_messages(with_offsets(0, copy), expected_heads=heads).breaks]
    assert problems == [ALTERED]
    every = verify_messages(with_offsets(0, copy), expected_heads=heads, every_break=True).breaks
    assert [(b.offset, b.seq, b.problem) for b in every] == [(5, 2, ALTERED), (None, 8, TRUNCATED)]


def test_verify_all_is_the_every_break_option() -> None:
    parser = argparse.ArgumentParser(prog="fraud-detector")
    register(parser.add_subparsers(dest="command", required=True))
    assert parser.parse_args(["audit", "verify", "--all"]).every_break is True
    assert parser.parse_args(["audit", "verify"]).every_break is False
