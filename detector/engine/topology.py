"""A scaled-out topology in memory: N partition scorers, one learner, one view, the epoch barrier.

This is what the service runs with N input partitions (docs/shared-learning.md), without Kafka:
events are routed to their partition's scorer by customer (as the producers' partitioner does),
and before a transaction of epoch ``e`` is scored every partition's updates of epochs before ``e``
are applied. A partition whose next transaction needs a version the others have not closed yet
waits (its inputs queue up), as a paused partition of the service does; so the decisions do not
depend on how the partitions' streams interleave, and with one partition they are exactly those
of :class:`~detector.engine.engine.DetectionEngine`. The scorers read the learner's own state, as
in the engine; with ``replica=True`` they read a :class:`SharedView` built from the versions through
their wire encoding instead, as the service's scorers do (slower: for tests of that path).

>>> from detector.engine.records import Transaction
>>> topology = ScaledTopology(partitions=3)
>>> topology.feed(Transaction("t1", 1.7e9, "c1", "m1", 5.0))  # the other partitions closed nothing yet
[]
>>> [outcome.decision.outcome for outcome in topology.finish()]
['approve']
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass

from detector.backtest.routing import partition_for
from detector.engine.config import EngineConfig
from detector.engine.learner import SharedLearner
from detector.engine.outputs import Decision, EngineEvent
from detector.engine.records import InvalidInput, Label, Transaction
from detector.engine.scorer import Scorer
from detector.engine.view import ReadView, SharedView
from detector.engine.wire import decode_version, encode_version


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one input: its decision (None for a label), or why it was refused."""

    token: object  # what the caller fed with the input
    partition: int
    event: Transaction | Label
    decision: Decision | None
    error: InvalidInput | None


class ScaledTopology:
    """N scorers sharing one learner through one view, fed one event at a time in any interleaving."""

    def __init__(
        self, config: EngineConfig | None = None, partitions: int = 1, *, replica: bool = False
    ) -> None:
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        self.config = config = config or EngineConfig()
        self.scorers = [Scorer(config, partition) for partition in range(partitions)]
        self.learner = SharedLearner(config, partitions)
        self.view: ReadView = self.learner
        self.replica = SharedView(config.features, config.model) if replica else None
        if self.replica is not None:
            self.view = self.replica
        self._inputs: list[deque[tuple[Transaction | Label, object]]] = [deque() for _ in range(partitions)]
        self._events: list[EngineEvent] = []

    @property
    def stats(self) -> Counter[str]:
        """Every scorer's counts and the learner's, together."""
        return sum((scorer.stats for scorer in self.scorers), Counter()) + self.learner.stats

    def feed(
        self, event: Transaction | Label, token: object = None, partition: int | None = None
    ) -> list[Outcome]:
        """Take one input (to its customer's partition unless ``partition`` is given); the outcomes
        of every input that could be processed since, in the order they were."""
        if partition is None:
            partition = partition_for(event.customer_id, len(self.scorers))
        self._inputs[partition].append((event, token))
        return self._pump()

    def finish(self) -> list[Outcome]:
        """End of the streams: partitions with no input left stop holding the others back, then
        every queued label is applied, as :meth:`DetectionEngine.flush` does."""
        outcomes = self._pump()
        while any(self._inputs):
            needed = min(
                self.scorers[partition].required_version(queue[0][0])  # type: ignore[arg-type]
                for partition, queue in enumerate(self._inputs)
                if queue
            )
            for partition, queue in enumerate(self._inputs):
                if not queue:
                    self.scorers[partition].close_through(needed)
                    self._exchange(self.scorers[partition])
            outcomes.extend(self._pump())
        for scorer in self.scorers:
            scorer.flush()
        last = max(scorer.closed for scorer in self.scorers)
        for scorer in self.scorers:
            scorer.close_through(last)
            self._exchange(scorer)
        return outcomes

    def pop_events(self) -> list[EngineEvent]:
        """Drift and model events of the versions applied since the last call, each once."""
        events, self._events = self._events, []
        return events

    def _pump(self) -> list[Outcome]:
        """Process every partition as far as the versions allow."""
        outcomes: list[Outcome] = []
        progress = True
        while progress:
            progress = False
            for partition, queue in enumerate(self._inputs):
                scorer = self.scorers[partition]
                while queue:
                    event, token = queue[0]
                    if type(event) is Transaction:
                        required = scorer.required_version(event)
                        scorer.close_through(required)
                        self._exchange(scorer)
                        if self.view.version < required:
                            break  # waits for the other partitions to close the epochs before it
                    queue.popleft()
                    outcomes.append(self._process(partition, scorer, event, token))
                    progress = True
        return outcomes

    def _process(self, partition: int, scorer: Scorer, event: Transaction | Label, token: object) -> Outcome:
        decision, error = None, None
        try:
            if type(event) is Transaction:
                decision = scorer.process_transaction(event, self.view)
            else:
                scorer.process_label(event)
        except InvalidInput as refused:
            error = refused
        self.learner.submit(scorer.pop_updates())
        return Outcome(token, partition, event, decision, error)

    def _exchange(self, scorer: Scorer) -> None:
        """Hand ``scorer``'s updates to the learner; apply and publish what every partition closed."""
        self.learner.submit(scorer.pop_updates())
        version = self.learner.apply_ready()
        if version is not None:
            if self.replica is not None:
                self.replica.apply(decode_version(encode_version(version)))
            self._events.extend(version.events)
