"""The latest checkpoint is found from the end of its partition, however many came before it and
however many chunks it has."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Producer

from detector.service import checkpoints
from detector.service.checkpoints import load_checkpoint, write_checkpoint
from detector.service.reading import reader_config

pytestmark = pytest.mark.kafka


def test_the_latest_of_many_checkpoints_is_loaded_even_when_it_reaches_past_the_first_span(
    kafka_bootstrap: str, make_topic: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = make_topic("checkpoints", partitions=1, config={"cleanup.policy": "compact"})
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    monkeypatch.setattr(checkpoints, "CHUNK_BYTES", 10)
    for n in range(30):  # older checkpoints of 1 and of 200 chunks
        write_checkpoint(producer, topic, 0, b"old %d" % n * (1 if n % 2 else 400), {"transactions": n})
    latest = bytes(range(256)) * 6  # 154 chunks: more records than the first span read from the end
    latest_id = write_checkpoint(producer, topic, 0, latest, {"transactions": 99})
    assert producer.flush(30) == 0
    reader = Consumer(reader_config({"bootstrap.servers": kafka_bootstrap}, f"test-{uuid.uuid4().hex[:8]}"))
    try:
        loaded = load_checkpoint(reader, topic, 0)
    finally:
        reader.close()
    assert loaded is not None
    assert (loaded.checkpoint_id, loaded.snapshot, loaded.offsets) == (
        latest_id,
        latest,
        {"transactions": 99},
    )
    assert loaded.written_at is not None
