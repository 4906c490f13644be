"""What a backtest writes for each configuration, under ``<out>/<configuration>/``:

* ``scores.jsonl``: one line per transaction: ``transaction_id``, ``event_time``, ``score``,
  ``decision``, ``reason_codes``, ``model_generation``, ``model_version`` (a refused transaction
  has ``decision`` ``rejected``, a null score and its reason);
* ``events.jsonl``: the engine's drift and model events, with the event time they happened at and
  the partition's engine they came from;
* ``audit.jsonl``: the audit trail the service would have written: the same record builders, each
  partition's records sealed into its own hash chain, so ``fraud-detector audit report
  --audit-file`` reads it as it reads an export of the audit topic;
* ``report/``: that report, from ``audit.jsonl`` and the run's ``<out>/labels.jsonl`` (every label
  read, as published), when matplotlib (the report extra) is installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import orjson

from detector.audit.chain import ChainState
from detector.audit.records import Provenance, decision_record, event_record, rejected_record
from detector.engine.outputs import Decision, EngineEvent
from detector.engine.records import InvalidInput, format_timestamp

SCORES, EVENTS, AUDIT, LABELS = "scores.jsonl", "events.jsonl", "audit.jsonl", "labels.jsonl"
REPORT = "report"
_BUFFER = 1 << 20


class VariantOutput:
    """The three files of one configuration, open for the length of the run."""

    def __init__(self, directory: Path, partitions: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._scores: BinaryIO = (directory / SCORES).open("wb", buffering=_BUFFER)
        self._events: BinaryIO = (directory / EVENTS).open("wb", buffering=_BUFFER)
        self._audit: BinaryIO = (directory / AUDIT).open("wb", buffering=_BUFFER)
        self._chains = [ChainState(partition=partition) for partition in range(partitions)]

    def decision(self, decision: Decision, provenance: Provenance, processing_ms: float) -> None:
        record = decision_record(decision, provenance, processing_ms)
        self._scores.write(
            orjson.dumps(
                {
                    "transaction_id": record["transaction_id"],
                    "event_time": record["event_time"],
                    "score": decision.score,
                    "decision": decision.outcome,
                    "reason_codes": record["reason_codes"],
                    "model_generation": decision.model_generation,
                    "model_version": decision.model_version,
                }
            )
            + b"\n"
        )
        self._seal(record, provenance.partition)

    def event(self, event: EngineEvent, model_kind: str, provenance: Provenance) -> None:
        self._events.write(
            orjson.dumps(
                {
                    "kind": event.kind,
                    "event_time": format_timestamp(event.event_time),
                    "partition": provenance.partition,
                    "model_generation": event.model_generation,
                    "detail": event.detail,
                }
            )
            + b"\n"
        )
        self._seal(event_record(event, model_kind, provenance), provenance.partition)

    def rejected(
        self, error: InvalidInput, transaction_id: str | None, customer_id: str, provenance: Provenance
    ) -> None:
        if transaction_id is not None:
            line = {"transaction_id": transaction_id, "score": None, "decision": "rejected"}
            self._scores.write(orjson.dumps({**line, "reason_codes": [error.reason]}) + b"\n")
        self._seal(rejected_record(error, customer_id.encode(), provenance), provenance.partition)

    def close(self) -> None:
        for file in (self._scores, self._events, self._audit):
            file.close()

    def _seal(self, record: dict, partition: int) -> None:
        self._audit.write(self._chains[partition].seal_encoded(record) + b"\n")


def write_reports(
    out: Path, names: list[str], since: float | None, until: float | None, k: int
) -> list[Path]:
    """The audit report of each configuration, from its audit file and the run's labels."""
    from detector.audit.offline import write_report_from_files  # matplotlib: the report extra

    return [
        write_report_from_files(
            out / name / AUDIT, out / LABELS, out / name / REPORT, since=since, until=until, k=k
        )
        for name in names
    ]
