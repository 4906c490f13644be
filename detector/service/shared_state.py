"""The shared learning's durable state in Kafka: the learner's checkpoint, its view snapshot, its versions.

* The learner's checkpoint (its whole state and the update offsets it matches) goes to partition 0
  of the checkpoint topic under the name ``learner``, in the transaction that commits those offsets.
* The view snapshot (terminal table, champion, version) goes to the compacted shared-snapshots
  topic under the name ``view``, with the offset of the versions topic to read on from: that of
  the snapshot's own version record when it is known, else the end of what had been delivered
  (every later version is beyond it). A starting scorer restores it and applies the versions after.
* Versions are one record per epoch in the single partition of the versions topic; the offsets of
  those delivered are noted, so a snapshot can say where to resume.

Both snapshots are written with :mod:`detector.service.checkpoints`, chunked and checksummed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import structlog
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from detector.engine.config import EngineConfig
from detector.engine.engine import check_state_shaping
from detector.engine.expiring import IN_MEMORY
from detector.engine.learner import SharedLearner
from detector.engine.shared import epoch_of
from detector.engine.snapshots import pickled, unpickled
from detector.engine.view import SharedView
from detector.engine.wire import decode_version
from detector.service.checkpoints import StateChanges, load_checkpoint, write_checkpoint
from detector.service.reading import read_to_end
from detector.service.settings import ServiceSettings
from detector.service.state_files import restored_with_state
from detector.state.database import StateDatabase

log = structlog.get_logger("detector.shared")
LEARNER, VIEW = "learner", "view"
_RESUME = "versions"
_LEARNER_MAGIC = b"fraud-learner/1\n"  # the view snapshot's offsets: where to read the versions topic from


@dataclass(frozen=True)
class RestoredLearner:
    learner: SharedLearner
    offsets: dict[int, int]  # updates partition -> next offset to read
    checkpoint_id: str


@dataclass
class LearnerCheckpoints:
    """Writes and reads the learner's checkpoint and view snapshot, and tracks its versions' offsets."""

    settings: ServiceSettings
    reader: Consumer
    _delivering: dict[int, int] = field(default_factory=dict)  # epoch -> offset, delivered this transaction
    _last_delivered: tuple[int, int] | None = None  # (epoch, offset) of the latest version delivered
    _end: int = 0  # an offset at or below the next version record

    def load_learner(
        self, engine_config: EngineConfig, state: StateDatabase | None
    ) -> RestoredLearner | None:
        """The learner of the latest checkpoint, its pending scores in ``state`` if given; None
        (logged when unreadable) to start afresh."""
        try:
            checkpoint = load_checkpoint(self.reader, self.settings.checkpoint_topic, 0, LEARNER)
            if checkpoint is None:
                return None
            learner = restored_with_state(
                checkpoint,
                state,
                self.reader,
                topic=self.settings.checkpoint_topic,
                partition=0,
                restore=lambda stores: unpickled(checkpoint.snapshot, _LEARNER_MAGIC, SharedLearner, stores),
                name=LEARNER,
            )
            check_state_shaping(learner.config, engine_config)
            learner.config = engine_config
        except ValueError as error:
            log.warning("checkpoint_unreadable", name=LEARNER, error=str(error))
            return None
        offsets = {int(key): offset for key, offset in checkpoint.offsets.items() if key.isdigit()}
        self._end = checkpoint.offsets.get(_RESUME, 0)
        return RestoredLearner(learner, offsets, checkpoint.checkpoint_id)

    def produce_version(self, producer: Producer, topic: str, epoch: int, value: bytes) -> None:
        def delivered(error: KafkaError | None, message: Message) -> None:
            if error is None:
                offset = message.offset()
                assert offset is not None, "a delivered record has its offset"
                self._delivering[epoch] = offset

        while True:
            try:
                producer.produce(topic, value, key=str(epoch).encode(), partition=0, on_delivery=delivered)
                return
            except BufferError:
                producer.poll(0.05)

    def delivered(self) -> None:
        """After a commit: the versions it held are where later snapshots may resume from."""
        if self._delivering:
            epoch = max(self._delivering)
            self._last_delivered = (epoch, self._delivering[epoch])
            self._end = max(self._end, max(self._delivering.values()) + 1)
        self._delivering = {}

    def write(
        self,
        producer: Producer,
        learner: SharedLearner,
        positions: dict[int, int],
        database: StateDatabase | None,
    ) -> None:
        """The learner's checkpoint (with what changed of its pending scores on disk) and its
        view snapshot, into the open transaction."""
        last = self._last_delivered
        resume = last[1] if last is not None and last[0] == learner.version else self._end
        offsets = {**{str(p): offset for p, offset in positions.items()}, _RESUME: self._end}
        changes = None
        if database is not None:
            assert database.lineage is not None
            changes = StateChanges(database.lineage, database.drain())
        state = pickled(learner, _LEARNER_MAGIC, database or IN_MEMORY)
        checkpoint_id = write_checkpoint(
            producer, self.settings.checkpoint_topic, 0, state, offsets, name=LEARNER, state=changes
        )
        if database is not None and changes is not None:  # before the commit, as the scorers do
            database.write(changes.changes, changes.lineage, checkpoint_id)
        view = learner.export_view().snapshot()
        write_checkpoint(
            producer, self.settings.shared_snapshots_topic, 0, view, {_RESUME: resume}, name=VIEW
        )
        log.info(
            "checkpoint_written",
            name=LEARNER,
            checkpoint_id=checkpoint_id,
            bytes=len(state),
            view_bytes=len(view),
            version=learner.version,
            offsets={str(p): offset for p, offset in positions.items()},
        )


def load_view(settings: ServiceSettings, reader: Consumer, engine_config: EngineConfig) -> ViewHistory:
    """The view of the latest snapshot, brought up to the latest committed version."""
    epoch_s = engine_config.sharing.epoch
    try:
        snapshot = load_checkpoint(reader, settings.shared_snapshots_topic, 0, VIEW)
    except ValueError as error:
        log.warning("checkpoint_unreadable", name=VIEW, error=str(error))
        snapshot = None
    if snapshot is None:
        history = ViewHistory(SharedView(engine_config.features, engine_config.model), 0, epoch_s)
    else:
        history = ViewHistory(SharedView.restore(snapshot.snapshot), snapshot.offsets[_RESUME], epoch_s)
    history.catch_up(settings.shared_versions_topic, reader)
    log.info("shared_view_loaded", version=history.view.version, from_snapshot=snapshot is not None)
    return history


@dataclass
class ViewHistory:
    """An instance's view and where it has read the versions topic to; it also keeps the engine
    events of recent versions, for the scorer of partition 0 to audit once."""

    view: SharedView
    next_offset: int
    epoch_s: float  # the sharing epoch, in event-time seconds
    events: dict[int, list] = field(default_factory=dict)  # epoch -> its drift and model events, if any

    def catch_up(self, topic: str, reader: Consumer, timeout_s: float = 30.0) -> None:
        """Apply every committed version not applied yet, then follow the topic with ``reader``."""
        for message in read_to_end(reader, topic, 0, self.next_offset, timeout_s):
            self._take(message)
        reader.assign([TopicPartition(topic, 0, max(self.next_offset, OFFSET_BEGINNING))])

    def poll(self, reader: Consumer) -> None:
        """Apply the versions committed since the last call, without waiting (after :meth:`catch_up`)."""
        for message in reader.consume(1000, 0):
            self._receive(message)

    def wait(self, reader: Consumer, timeout_s: float) -> None:
        """Apply the next version to come within ``timeout_s``, and any committed with it."""
        deadline = time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            message = reader.poll(remaining)
            if message is None:
                return
            if self._receive(message):
                self.poll(reader)
                return

    def _receive(self, message: Message) -> bool:
        """Take a version record; False for the end-of-partition event."""
        error = message.error()
        if error is None:
            self._take(message)
            return True
        if error.code() != KafkaError._PARTITION_EOF:
            raise KafkaException(error)
        return False

    def _take(self, message: Message) -> None:
        """Apply a version, or what of it the view lacks: a restarted learner publishes again the
        epochs after its checkpoint, possibly grouped otherwise (several epochs in one version), so
        the changes and events of epochs the view holds already are left out."""
        offset, value = message.offset(), message.value()
        assert offset is not None and value is not None, "a consumed record, written by the learner"
        self.next_offset = offset + 1
        version = decode_version(value)
        held = self.view.version
        if version.epoch <= held:
            return
        if version.terminal_changes and version.terminal_changes[0].epoch <= held:
            changes = tuple(change for change in version.terminal_changes if change.epoch > held)
            events = tuple(e for e in version.events if epoch_of(e.event_time, self.epoch_s) > held)
            version = replace(version, terminal_changes=changes, events=events)
        if version.events:
            self.events[version.epoch] = list(version.events)
        self.view.apply(version)

    def events_between(self, after: int, upto: int) -> list:
        """The events of versions ``after < epoch <= upto``, in epoch order (kept: events are rare,
        and partition 0 may come back here from an older checkpoint)."""
        epochs = sorted(epoch for epoch in self.events if after < epoch <= upto)
        return [event for epoch in epochs for event in self.events[epoch]]
