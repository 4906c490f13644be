"""Where each owned partition's state database lives on local disk, and opening it.

``FRAUD_STATE_DIR/<instance id>/<partition>``: one RocksDB per partition, owned by one process.
Another process of the same instance id (a zombie being fenced, or one taking over) may still
hold a partition's database locked; the newcomer then opens a fresh directory beside it and
rebuilds the state from the changelog, which is correct, only slower (``state_dir_locked``).
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import structlog

from detector.service.settings import ServiceSettings
from detector.state.database import StateDatabase

log = structlog.get_logger("detector.service")
_SPARE = ".spare-"  # a directory opened because the partition's own was locked


class StateFiles:
    """Opens the state database of a partition under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def open(self, partition: int) -> StateDatabase:
        path = self.root / str(partition)
        try:
            return StateDatabase(path)
        except Exception as error:  # rocksdict raises a bare Exception for a held lock
            if "lock" not in str(error).lower():
                raise
            spare = self.root / f"{partition}{_SPARE}{uuid.uuid4().hex[:8]}"
            log.warning("state_dir_locked", partition=partition, path=str(path), using=str(spare))
            return StateDatabase(spare)

    @staticmethod
    def close(database: StateDatabase) -> None:
        """Close ``database``; a spare directory is deleted, as nothing will open it again."""
        database.close()
        if _SPARE in database.path.name:
            shutil.rmtree(database.path, ignore_errors=True)


def state_files_for(settings: ServiceSettings) -> StateFiles | None:
    """The instance's state directory, or None to keep the state in memory (FRAUD_STATE_DIR empty)."""
    if not settings.state_dir:
        return None
    return StateFiles(Path(settings.state_dir) / settings.instance_id.replace("/", "_"))
