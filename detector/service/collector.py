"""Keep Python's cyclic garbage collector out of the decisions' latency.

The engine's state is hundreds of thousands of long-lived objects (card and terminal state,
pending scores, the model). CPython's automatic full collection walks all of them, and it runs whenever
the heap has grown by a quarter: 40-270 ms pauses, every few seconds while the state grows,
measured by ``bench/latency_bench.py``. The engine creates no reference cycles (measured: a full
collection after 60,000 events found nothing to free), so its state need not be walked at all.

After each committed batch, ``collect_after_batch`` collects the young generations
(only what the batch allocated: cheap) and freezes the survivors, so automatic collections only
ever see objects allocated since the last batch. Frozen objects are still freed by reference
counting when they are dropped; only a cycle among them would outlive its use, so a full
collection of everything (``collect_everything``) runs with each checkpoint, which pauses
the loop anyway.

>>> collect_after_batch()
>>> gc.get_freeze_count() > 0
True
>>> collect_everything()
"""

from __future__ import annotations

import gc


def collect_after_batch() -> None:
    """Collect what the batch left behind and freeze the rest, so no automatic pass walks it again."""
    gc.collect(1)
    gc.freeze()


def collect_everything() -> None:
    """A full collection, frozen objects included: frees any cycle that formed after a freeze."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
