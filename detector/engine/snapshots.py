"""Engine state as snapshot bytes: a magic line, then a pickle.

Pickle is used because River models are pickled objects; a snapshot is trusted data and must only
be restored from the detector's own checkpoints. State kept on disk by ``stores`` is pickled as a
reference to its store, which ``stores`` resolves on restore.
"""

from __future__ import annotations

import copyreg
import io
import pickle
from typing import TypeVar

from detector.engine.expiring import IN_MEMORY, StateStores

T = TypeVar("T")


def pickled(state: object, magic: bytes, stores: StateStores = IN_MEMORY) -> bytes:
    """``state`` as snapshot bytes under ``magic``."""
    buffer = io.BytesIO()
    buffer.write(magic)
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    reducers = stores.reducers()
    if reducers:  # a table looked up by type in C: a hook called for every object cost 80 ms a snapshot
        pickler.dispatch_table = {**copyreg.dispatch_table, **reducers}
    pickler.dump(state)
    return buffer.getvalue()


def unpickled(snapshot: bytes, magic: bytes, kind: type[T], stores: StateStores = IN_MEMORY) -> T:
    """The ``kind`` that :func:`pickled` made with ``magic``; ValueError for anything else."""
    if not snapshot.startswith(magic):
        raise ValueError(f"not a {kind.__name__} snapshot (or one of an incompatible version)")
    try:
        with stores.loading():
            state = pickle.loads(snapshot[len(magic) :])
    except (pickle.UnpicklingError, AttributeError, ImportError, EOFError, TypeError, ValueError) as error:
        raise ValueError(f"unreadable {kind.__name__} snapshot: {error}") from None
    if not isinstance(state, kind):
        raise ValueError(f"the snapshot does not hold a {kind.__name__}")
    return state
