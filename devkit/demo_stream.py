"""The demo's stream: the drift preset compressed into minutes, published on event time in a thread.

Fewer cards, labels within hours rather than weeks, more fraud, and event time played at
``DAYS_PER_SECOND``, a pace a small machine decides in real time, so that the day-30 change of fraud
pattern, and the detector's reaction, fall within the run.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from functools import partial

from detector.audit.quality import DAY_S
from detector.engine.records import Label, Transaction
from detector.service.settings import ServiceSettings
from producers.config import SimulationConfig, preset
from producers.labels import DelayDistribution
from producers.pacing import EventTimePacer
from producers.publishing import Progress, publish
from producers.simulator import SimulatedTransaction, Simulator
from producers.sinks import DeliveryReport, KafkaSink

DAYS_PER_SECOND = 0.5  # about 1,100 events a second: a 90-second run plays 45 days, past the drift
DRIFT_DAY = 30.0  # when the drift preset changes the fraud pattern
HOUR = 3600.0


def demo_config(seed: int) -> SimulationConfig:
    """The drift preset at a scale this machine decides in real time, with labels soon enough to learn."""
    base = preset("drift")
    return replace(
        base,
        seed=seed,
        fraud_rate=0.01,
        population=replace(base.population, cards=500, terminals=100),
        labels=replace(
            base.labels,
            fraud_delay=DelayDistribution(median=12 * HOUR, sigma=0.5, low=HOUR, high=3 * 24 * HOUR),
            legit_delay=DelayDistribution(median=4 * HOUR),
        ),
    )


class StreamThread(threading.Thread):
    """Publishes the simulated stream, paced on event time, until it ends or :meth:`stop` is called.

    It keeps the ground truth of every transaction it sent, for scoring the decisions afterwards.
    """

    def __init__(
        self, config: SimulationConfig, client: dict[str, str], settings: ServiceSettings, speed: float
    ):
        super().__init__(name="simulator", daemon=True)
        self.config = config
        self.labels_topic = settings.labels_topic
        self.start_time = config.start_time
        self.truth: dict[str, bool] = {}
        self.day = 0.0  # event-time days published so far
        self.report: DeliveryReport | None = None
        self.error: BaseException | None = None
        self._stopping = threading.Event()
        self._new_sink = partial(KafkaSink, client, settings.transactions_topic, settings.labels_topic)
        self._speed = speed

    def stop(self) -> None:
        self._stopping.set()

    def day_of(self, moment: float) -> float:
        """Event-time days since the stream began."""
        return (moment - self.start_time) / DAY_S

    def run(self) -> None:
        """Publish; the producer lives only as long as this, so none is left when the broker stops."""
        sink = self._new_sink()
        try:
            publish(self._events(), sink, EventTimePacer(self._speed), Progress(enabled=False))
        except BaseException as error:  # handed to the main thread, which reports it
            self.error = error
        finally:
            self.report = sink.close()

    def _events(self) -> Iterator[Transaction | Label]:
        for event in Simulator(self.config):
            if self._stopping.is_set():
                return
            if isinstance(event, SimulatedTransaction):
                self.truth[event.transaction.transaction_id] = event.is_fraud
                self.day = self.day_of(event.event_time)
                yield event.transaction
            else:
                yield event
