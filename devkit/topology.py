"""A deployment whose partitions share one model: scorer instances and the one learner, as child processes.

Each process is a :class:`~devkit.process.ServiceProcess`, so a caller failing before :meth:`stop`
still leaves nothing running. Scorer ``k`` has instance id ``s<k>`` and its own log; a scorer or
the learner started again (after a kill) appends to the log of its predecessor, while a second
learner started beside a live one writes a log of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from devkit.process import ServiceProcess


class SharedTopology:
    """``instances`` scorers (``fraud-detector run``) and one learner (``fraud-detector learn``),
    the learner with ``learner_env`` over ``env`` (by default without a metrics server, whose port
    the scorers' settings would give it too)."""

    def __init__(
        self,
        env: Mapping[str, str],
        log_dir: Path,
        instances: int,
        learner_env: Mapping[str, str] | None = None,
    ) -> None:
        self.env = {**env, "FRAUD_SHARING": "learner"}
        self.learner_env = {**self.env, **(learner_env or {"FRAUD_METRICS_PORT": "0"})}
        self.log_dir = log_dir
        self.learner = self._learner()
        self.scorers = [self._scorer(k) for k in range(instances)]

    def __enter__(self) -> SharedTopology:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _learner(self, log_name: str = "learner.log") -> ServiceProcess:
        return ServiceProcess(self.learner_env, self.log_dir / log_name, command="learn")

    def _scorer(self, k: int) -> ServiceProcess:
        return ServiceProcess({**self.env, "FRAUD_INSTANCE_ID": f"s{k}"}, self.log_dir / f"scorer-{k}.log")

    def restart_learner(self) -> None:
        """SIGKILL the learner and start another."""
        self.learner.kill()
        self.learner = self._learner()

    def start_second_learner(self) -> ServiceProcess:
        """Start another learner, with the same identity, while the first runs (a duplicate
        deployment, or a replacement of a zombie): it becomes the topology's learner, and the first
        is returned, for its exit to be waited for."""
        first, self.learner = self.learner, self._learner("learner-second.log")
        return first

    def rescale(self, instances: int) -> None:
        """SIGKILL every scorer and start ``instances`` of them."""
        for scorer in self.scorers:
            scorer.kill()
        self.scorers = [self._scorer(k) for k in range(instances)]

    def restart_scorer(self, k: int) -> None:
        """SIGKILL scorer ``k`` and start it again."""
        self.scorers[k].kill()
        self.scorers[k] = self._scorer(k)

    def pids(self) -> dict[str, int]:
        return {"learner": self.learner.pid, **{f"scorer {k + 1}": s.pid for k, s in enumerate(self.scorers)}}

    def ready_partitions(self) -> set[int]:
        """Input partitions owned and recovered by some scorer."""
        return set().union(*(scorer.ready_partitions() for scorer in self.scorers))

    def stop(self) -> list[int]:
        """SIGTERM the scorers, then the learner (the scorers' last updates are applied); exit codes."""
        codes = [scorer.stop() for scorer in self.scorers]
        return [*codes, self.learner.stop()]
