"""The detector service on the real broker: exactly-once audit, crash recovery, poison input, scale-out."""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Callable, Collection
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from confluent_kafka import KafkaError, Message, Producer

from detector.engine.records import Label, Transaction
from detector.service.checkpoints import write_checkpoint
from devkit.process import ServiceProcess
from devkit.publishing import publish
from devkit.reading import CommittedReader
from devkit.streams import simulated_stream
from producers.config import preset
from producers.labels import DelayDistribution
from tests.integration.service_harness import ServiceTopics, audit_decisions, wait_until

pytestmark = pytest.mark.kafka
HOUR = 3600.0


def simulated(transactions: int, seed: int = 5) -> list[Transaction | Label]:
    """A short stream whose labels come within hours, so the model learns during the test."""
    labels = replace(
        preset("default").labels, fraud_delay=DelayDistribution(6 * HOUR), legit_delay=DelayDistribution(HOUR)
    )
    return simulated_stream(transactions, cards=1_500, seed=seed, terminals=200, labels=labels)


def _checkpoints_past_the_start(service: ServiceProcess) -> int:
    return sum(event["offsets"]["transactions"] > 0 for event in service.log_events("checkpoint_written"))


def decided(reader: CommittedReader, foreign: Collection[tuple[int, int]] = ()) -> int:
    reader.drain(0.5)
    return sum(audit_decisions(reader, foreign).values())


def test_every_transaction_gets_exactly_one_chained_decision(kafka_bootstrap: str, tmp_path: Path) -> None:
    topics = ServiceTopics()
    topics.create_inputs(kafka_bootstrap, partitions=3)
    items = simulated(10_000)
    n_transactions = sum(isinstance(item, Transaction) for item in items)
    publish(topics.settings(kafka_bootstrap), items)

    started = time.monotonic()
    service = ServiceProcess(topics.env(kafka_bootstrap), tmp_path / "service.log")
    assert _wait_for_topic(service, topics)
    audit = CommittedReader(kafka_bootstrap, topics.audit)
    wait_until(lambda: decided(audit) >= n_transactions, 180, "all decisions")
    elapsed = time.monotonic() - started
    assert service.stop() == 0

    audit.drain_to_end()
    decisions = audit_decisions(audit)
    assert len(decisions) == n_transactions == 10_000
    assert set(decisions.values()) == {1}
    replies = CommittedReader(kafka_bootstrap, topics.decisions)
    replies.drain_to_end()
    assert replies.count() == n_transactions
    print(
        f"\n{n_transactions:,} transactions and {len(items) - n_transactions:,} labels"
        f" decided in {elapsed:.1f} s (including start-up): {n_transactions / elapsed:,.0f} tx/s"
    )


def test_sigkill_at_random_points_loses_and_duplicates_nothing(kafka_bootstrap: str, tmp_path: Path) -> None:
    topics = ServiceTopics()
    topics.create_inputs(kafka_bootstrap, partitions=3)
    items = simulated(8_000, seed=6)
    n_transactions = sum(isinstance(item, Transaction) for item in items)
    # The input goes out a fifth at a time, the next after each kill, so that a service running
    # ahead of the test's polling cannot reach the end before the four kills.
    fifth = len(items) // 5
    slices = [items[i * fifth : (i + 1) * fifth] for i in range(4)] + [items[4 * fifth :]]

    def publish_next_slice() -> int:
        part = slices.pop(0)
        publish(topics.settings(kafka_bootstrap), part)
        return sum(isinstance(item, Transaction) for item in part)

    published = publish_next_slice()
    env = topics.env(kafka_bootstrap, FRAUD_CHECKPOINT_INTERVAL_S="1", FRAUD_BATCH_SIZE="200")
    log = tmp_path / "service.log"
    rng = random.Random(7)
    service = ServiceProcess(env, log)
    written = 0  # checkpoints past offset 0 in the log, which every restart appends to
    assert _wait_for_topic(service, topics)
    audit = CommittedReader(kafka_bootstrap, topics.audit)
    while slices:
        target = min(decided(audit) + rng.randrange(300, 1500), published)

        def progressed(target: int = target) -> bool:
            return decided(audit) >= target

        def checkpointed(service: ServiceProcess = service, written: int = written) -> bool:
            return _checkpoints_past_the_start(service) > written

        wait_until(progressed, 120, "progress")
        # And a checkpoint of this process's own: one that runs a slice in under the checkpoint
        # interval would otherwise be killed before any, and every restart would start cold.
        wait_until(checkpointed, 60, "a checkpoint")
        written = _checkpoints_past_the_start(service)
        service.kill()
        published += publish_next_slice()
        service = ServiceProcess(env, log)
    wait_until(lambda: decided(audit) >= n_transactions, 180, "all decisions after the kills")
    assert service.stop() == 0

    audit.drain_to_end()
    decisions = audit_decisions(audit)
    assert len(decisions) == n_transactions and set(decisions.values()) == {1}
    recoveries = [event for event in service.log_events("partition_recovered") if event["checkpoint_id"]]
    assert recoveries, "restarts must resume from a checkpoint"
    learned: dict[int, list[int]] = {}
    for event in recoveries:
        learned.setdefault(event["partition"], []).append(event["labels_learned"])
    # Warm restarts: a partition's restored model never falls back below what an earlier restore had.
    assert all(counts == sorted(counts) for counts in learned.values()), learned
    assert max(max(counts) for counts in learned.values()) > 0, "no restore brought back a trained model"
    print(
        f"\n4 SIGKILLs; {len(decisions):,} decisions, each once;"
        f" labels learned by the restored model at each restart, per partition: {learned}"
    )


def test_poison_input_is_dead_lettered_with_its_reason(kafka_bootstrap: str, tmp_path: Path) -> None:
    topics = ServiceTopics()
    topics.create_inputs(kafka_bootstrap, partitions=3)
    items: list = simulated(2_000, seed=8)
    valid = [item for item in items if isinstance(item, Transaction)]
    poison = [
        (b"k1", b"{not json"),
        (b"k2", orjson.dumps({"transaction_id": "p-missing", "customer_id": "c"})),
        (
            b"k3",
            b'{"transaction_id": "p-nan", "timestamp": "2026-01-01T00:00:00Z", "customer_id": "c",'
            b' "terminal_id": "m", "amount": NaN}',
        ),
        (b"k4", b'{"pad": "' + b"x" * 200_000 + b'"}'),
        (valid[10].customer_id.encode(), valid[10].to_json()),  # a duplicate transaction id
        (None, None),
    ]
    expected_reasons = {
        "bad_json",
        "missing_field",
        "oversized_payload",
        "duplicate_transaction",
        "empty_payload",
    }
    mixed = items[:1000] + poison + items[1000:]
    publish(topics.settings(kafka_bootstrap), mixed)

    service = ServiceProcess(topics.env(kafka_bootstrap), tmp_path / "service.log")
    assert _wait_for_topic(service, topics)
    audit = CommittedReader(kafka_bootstrap, topics.audit)
    wait_until(lambda: decided(audit) >= len(valid), 120, "decisions for every valid transaction")
    dead = CommittedReader(kafka_bootstrap, topics.dead_letter)

    def dead_lettered() -> bool:
        dead.drain(0.5)
        return dead.count() >= len(poison)

    wait_until(dead_lettered, 60, "dead letters")
    assert service.alive()
    assert service.stop() == 0
    dead.drain_to_end()
    audit.drain_to_end()

    reasons = [
        dict(headers)["dlq.reason"].decode() for records in dead.records.values() for _, _, headers in records
    ]
    assert len(reasons) == len(poison)
    assert set(reasons) == expected_reasons
    assert sorted(reasons).count("bad_json") == 2  # the broken text and the NaN literal
    originals = {value for records in dead.records.values() for _, value, _ in records}
    assert b"{not json" in originals  # the original bytes, untouched
    assert set(audit_decisions(audit)) == {tx.transaction_id for tx in valid}


def test_two_instances_split_the_partitions_and_decide_each_transaction_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topics = ServiceTopics()
    topics.create_inputs(kafka_bootstrap, partitions=4)
    items = simulated(6_000, seed=9)
    n_transactions = sum(isinstance(item, Transaction) for item in items)
    first = ServiceProcess(topics.env(kafka_bootstrap, "a"), tmp_path / "a.log")
    second = ServiceProcess(topics.env(kafka_bootstrap, "b"), tmp_path / "b.log")
    assert _wait_for_topic(first, topics)
    wait_until(
        lambda: bool(_owned(first) and _owned(second)) and len(_owned(first) | _owned(second)) == 4,
        90,
        "a 2-way split",
    )
    publish(topics.settings(kafka_bootstrap), items)
    audit = CommittedReader(kafka_bootstrap, topics.audit)
    wait_until(lambda: decided(audit) >= n_transactions, 180, "all decisions")
    owned = (_owned(first), _owned(second))
    assert first.stop() == 0 and second.stop() == 0

    audit.drain_to_end()
    decisions = audit_decisions(audit)
    assert len(decisions) == n_transactions and set(decisions.values()) == {1}
    writers = {
        orjson.loads(value)["instance_id"] for records in audit.records.values() for _, value, _ in records
    }
    assert writers == {"a", "b"}
    assert not owned[0] & owned[1]
    print(
        f"\npartitions owned: a={sorted(owned[0])} b={sorted(owned[1])};"
        f" {n_transactions:,} decisions, each once"
    )


def _owned(service: ServiceProcess) -> set[int]:
    """The partitions a service holds according to its latest assignment log line."""
    assigned = service.log_events("partitions_assigned")
    return set(assigned[-1]["partitions"]) if assigned else set()


def _wait_for_topic(service: ServiceProcess, topics: ServiceTopics) -> bool:
    """The service creates its output topics at start; wait for that before reading them."""
    wait_until(lambda: bool(service.log_events("topics_ready")) or not service.alive(), 60, "topics")
    return service.alive()


def test_a_labels_backlog_is_held_back_not_refused(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Labels read before their transactions wait (the partition pauses) instead of overflowing.

    The transactions are published only once the labels have paused: read together, the two
    topics interleave by fetch timing, and the queue may never fill.
    """
    topics = ServiceTopics()
    topics.create_inputs(kafka_bootstrap, partitions=1)
    items = simulated(3_000, seed=10)
    labels = [item for item in items if isinstance(item, Label)]
    transactions = [item for item in items if isinstance(item, Transaction)]
    limit = 400
    assert len(labels) > limit, "the backlog must exceed the queue for the test to mean anything"
    publish(topics.settings(kafka_bootstrap), labels)
    engine_config = tmp_path / "engine.json"
    engine_config.write_bytes(orjson.dumps({"max_queued_labels": limit}))
    env = topics.env(kafka_bootstrap, FRAUD_ENGINE_CONFIG=str(engine_config), FRAUD_BATCH_SIZE="100")
    service = ServiceProcess(env, tmp_path / "service.log")
    assert _wait_for_topic(service, topics)
    wait_until(lambda: bool(service.log_events("labels_paused")) or not service.alive(), 60, "labels paused")
    paused = service.log_events("labels_paused")
    assert paused and limit // 2 <= paused[0]["queued"] < limit
    publish(topics.settings(kafka_bootstrap), transactions)
    audit = CommittedReader(kafka_bootstrap, topics.audit)
    wait_until(lambda: decided(audit) >= len(transactions), 120, "all decisions")
    assert service.stop() == 0
    dead = CommittedReader(kafka_bootstrap, topics.dead_letter)
    dead.drain_to_end()
    assert dead.count() == 0, "no label may be refused for a full queue"
    assert service.log_events("labels_resumed")
    print(f"\n{len(labels):,} labels ahead of {len(transactions):,} transactions: held back, none refused")


def _restarted_half_way(
    kafka_bootstrap: str,
    tmp_path: Path,
    between: Callable[[dict[str, str]], dict[str, str]],
    foreign: Collection[tuple[int, int]] = (),
    first: Callable[[dict[str, str]], dict[str, str]] = dict,
) -> tuple[ServiceProcess, list[dict]]:
    """Half the input with the environment ``first(env)``, a stop, ``between(env)`` (which gives the
    environment of the restart), the rest.

    Returns the restarted service and every decision record; asserts one decision per transaction
    and an intact chain but for the ``foreign`` records (see :func:`audit_decisions`).
    """
    topics = ServiceTopics()
    topics.create_inputs(kafka_bootstrap, partitions=1)
    items = simulated(3_000, seed=8)
    half = len(items) // 2
    n_transactions = sum(isinstance(item, Transaction) for item in items)
    publish(topics.settings(kafka_bootstrap), items[:half])
    env = topics.env(kafka_bootstrap)
    log = tmp_path / "service.log"
    service = ServiceProcess(first(env), log)
    assert _wait_for_topic(service, topics)
    audit = CommittedReader(kafka_bootstrap, topics.audit)
    first_half = sum(isinstance(item, Transaction) for item in items[:half])
    wait_until(lambda: decided(audit) >= first_half, 120, "the first half's decisions")
    assert service.stop() == 0  # writes a final checkpoint

    restart_env = between(env)
    publish(topics.settings(kafka_bootstrap), items[half:])
    service = ServiceProcess(restart_env, log)
    wait_until(lambda: decided(audit, foreign) >= n_transactions, 120, "every decision after the restart")
    assert service.stop() == 0
    audit.drain_to_end()
    decisions = audit_decisions(audit, foreign)
    assert len(decisions) == n_transactions and set(decisions.values()) == {1}
    records = [orjson.loads(value) for _, value, _ in audit.records[0]]
    return service, [record for record in records if record["record_type"] == "decision"]


def test_an_unreadable_checkpoint_is_rebuilt_from_the_input(kafka_bootstrap: str, tmp_path: Path) -> None:
    """A checkpoint this version cannot restore (e.g. an older format) must not stop the service:
    the partition is rebuilt from the retained input, and outputs stay exactly once."""

    def replace_the_checkpoint(env: dict[str, str]) -> dict[str, str]:
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        foreign = b"fraud-engine/1\n..."
        write_checkpoint(producer, env["FRAUD_CHECKPOINT_TOPIC"], 0, foreign, {"transactions": 5})
        assert producer.flush(30) == 0
        return env

    service, _ = _restarted_half_way(kafka_bootstrap, tmp_path, replace_the_checkpoint)
    (unreadable,) = service.log_events("checkpoint_unreadable")
    assert "incompatible version" in unreadable["error"]
    recovered = service.log_events("partition_recovered")[-1]
    assert recovered["checkpoint_id"] is None and recovered["start_offsets"]["transactions"] == 0


def test_records_written_by_hand_into_its_topics_do_not_stop_the_service(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A damaged checkpoint manifest and a foreign record at the end of the audit chain (say both
    produced by hand) are logged and passed over: the state is rebuilt from the input, and the chain
    goes on from the detector's last record, so verification reports the foreign one where it is."""
    foreign: list[tuple[int, int]] = []

    def delivered(_: KafkaError | None, message: Message) -> None:
        partition, offset = message.partition(), message.offset()
        assert partition is not None and offset is not None
        foreign.append((partition, offset))

    def write_by_hand(env: dict[str, str]) -> dict[str, str]:
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        producer.produce(env["FRAUD_CHECKPOINT_TOPIC"], b"{not json", key=b"0/manifest", partition=0)
        producer.produce(
            env["FRAUD_AUDIT_TOPIC"],
            b'{"record_type":"note","text":"checked by hand"}',
            partition=0,
            on_delivery=delivered,
        )
        assert producer.flush(30) == 0
        return env

    service, _ = _restarted_half_way(kafka_bootstrap, tmp_path, write_by_hand, foreign)
    (unreadable,) = service.log_events("checkpoint_unreadable")
    assert unreadable["error"] == "checkpoint manifest of partition 0 is malformed: not JSON"
    assert service.log_events("partition_recovered")[-1]["checkpoint_id"] is None
    assert foreign and {(0, event["offset"]) for event in service.log_events("audit_record_foreign")} == set(
        foreign
    )


def test_a_restart_with_another_model_relearns_from_the_input(kafka_bootstrap: str, tmp_path: Path) -> None:
    other = "hoeffding_adaptive_tree"
    service, decisions = _restarted_half_way(
        kafka_bootstrap, tmp_path, lambda env: {**env, "FRAUD_MODEL": other}
    )
    (changed,) = service.log_events("checkpoint_config_changed")
    assert "another model" in changed["error"]
    recovered = service.log_events("partition_recovered")[-1]
    assert recovered["checkpoint_id"] is None and recovered["start_offsets"]["transactions"] == 0
    kinds = [record["model"]["kind"] for record in decisions]
    assert kinds[0] == "logistic_regression" and kinds[-1] == other


def test_a_restart_with_new_thresholds_keeps_the_model_and_applies_them(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    def stricter(env: dict[str, str]) -> dict[str, str]:
        config = tmp_path / "engine.json"
        config.write_bytes(orjson.dumps({"policy": {"review_threshold": 0.2, "block_threshold": 0.6}}))
        return {**env, "FRAUD_ENGINE_CONFIG": str(config)}

    service, decisions = _restarted_half_way(kafka_bootstrap, tmp_path, stricter)
    assert not service.log_events("checkpoint_config_changed")
    assert service.log_events("partition_recovered")[-1]["checkpoint_id"] is not None
    thresholds = [record["thresholds"] for record in decisions]
    assert thresholds[0] == {"review": 0.5, "block": 0.9} and thresholds[-1] == {"review": 0.2, "block": 0.6}


def _warm(service: ServiceProcess) -> dict:
    """The restart's recovery, asserted warm: from a checkpoint, with the model's labels."""
    recovered = service.log_events("partition_recovered")[-1]
    assert recovered["checkpoint_id"] is not None and recovered["labels_learned"] > 0
    return recovered


def test_a_restart_uses_the_state_on_local_disk(kafka_bootstrap: str, tmp_path: Path) -> None:
    service, _ = _restarted_half_way(kafka_bootstrap, tmp_path, dict)
    written = service.log_events("checkpoint_written")
    assert written[0]["state_changes"] > 0  # the first run's checkpoints wrote what changed
    assert service.log_events("state_local") and not service.log_events("state_rebuilt")
    _warm(service)


def test_a_lost_state_directory_is_rebuilt_from_the_checkpoint_topic(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A new disk (or machine) costs a rebuild from Kafka, never data: the restart is as warm."""

    def lose_the_disk(env: dict[str, str]) -> dict[str, str]:
        shutil.rmtree(env["FRAUD_STATE_DIR"])
        return env

    service, _ = _restarted_half_way(kafka_bootstrap, tmp_path, lose_the_disk)
    (rebuilt,) = service.log_events("state_rebuilt")
    assert rebuilt["changes"] > 1_000  # cards, scored ids, pending scores of ~1,500 transactions
    _warm(service)


def test_an_upgrade_from_whole_snapshots_carries_on_warm_and_exactly_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Checkpoints of the in-memory layout (what the service wrote before its state moved to disk,
    and still writes with FRAUD_STATE_STORE=memory) are restored as they are, their state moved onto
    disk; decisions stay one per transaction with an intact chain (asserted by the helper)."""
    service, _ = _restarted_half_way(
        kafka_bootstrap, tmp_path, dict, first=lambda env: {**env, "FRAUD_STATE_STORE": "memory"}
    )
    first_run, *_ = service.log_events("checkpoint_written")
    assert first_run["state_changes"] is None  # a whole snapshot, no state on disk
    (moved,) = service.log_events("state_moved_to_disk")
    assert moved["entries"] > 1_000
    _warm(service)
    later = [event for event in service.log_events("checkpoint_written") if event["state_changes"]]
    assert later and later[0]["state_changes"] >= moved["entries"]  # the moved state, written once
