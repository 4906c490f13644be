"""Where the Kafka jars are cached and how they are fetched from Maven Central.

The jars are fetched with Maven from ``pom.xml`` beside this module into ``<root>/.cache/kafka/lib``.
A stamp file holding the pom's digest makes later calls free, and a changed pom (a new Kafka
version) fetches again.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from devbroker.errors import DevbrokerError

POM = Path(__file__).with_name("pom.xml")
STAMP_NAME = ".pom-sha256"


def project_root() -> Path:
    """The folder whose ``.cache/`` holds the jars and the CLI broker.

    ``DEVBROKER_HOME`` wins, so an installed (non-editable) package can still share a checkout's cache;
    then the checkout this package lives in; then the git top of the current directory.
    """
    override = os.environ.get("DEVBROKER_HOME")
    if override:
        return Path(override).expanduser().resolve()
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file():
        return checkout
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        top = None
    if top is not None and top.returncode == 0 and top.stdout.strip():
        return Path(top.stdout.strip())
    raise DevbrokerError("cannot tell where the project root is: set DEVBROKER_HOME to it")


def cache_dir(root: Path | None = None) -> Path:
    """``<root>/.cache/kafka``: jars, the CLI broker's data and its state file."""
    return (root or project_root()) / ".cache" / "kafka"


def pom_digest(pom_bytes: bytes) -> str:
    """The stamp value: the jars in a folder are current only for the exact pom they came from."""
    return hashlib.sha256(pom_bytes).hexdigest()


def jars_current(lib_dir: Path, pom_bytes: bytes) -> bool:
    """True when ``lib_dir`` was filled, completely, from this very pom."""
    stamp = lib_dir / STAMP_NAME
    return stamp.is_file() and stamp.read_text().strip() == pom_digest(pom_bytes)


def kafka_version(lib_dir: Path) -> str | None:
    """The Kafka version of the cached jars, read from the kafka_2.13 jar's name."""
    for jar in lib_dir.glob("kafka_2.13-*.jar"):
        return jar.name.removeprefix("kafka_2.13-").removesuffix(".jar")
    return None


def ensure_jars(lib_dir: Path, pom: Path = POM) -> bool:
    """Fetch the jars unless ``lib_dir`` is already current; returns whether it fetched.

    A file lock keeps two concurrent callers (say ``make jars`` and a test run) from fetching at once,
    and the jars land in a side folder that replaces ``lib_dir`` only once Maven succeeded, so an
    interrupted fetch never leaves a half-filled ``lib_dir`` behind a valid stamp.
    """
    pom_bytes = pom.read_bytes()
    if jars_current(lib_dir, pom_bytes):
        return False
    lib_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(lib_dir.parent / ".fetch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if jars_current(lib_dir, pom_bytes):
            return False
        partial = lib_dir.with_name(lib_dir.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        _copy_dependencies(pom, partial)
        (partial / STAMP_NAME).write_text(pom_digest(pom_bytes) + "\n")
        shutil.rmtree(lib_dir, ignore_errors=True)
        partial.rename(lib_dir)
    return True


def _copy_dependencies(pom: Path, out_dir: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise DevbrokerError(
            "Maven (mvn) is needed to fetch the Kafka jars from Maven Central; install it "
            "(e.g. apt-get install maven) or put mvn on PATH"
        )
    cmd = [
        mvn,
        "-q",
        "-B",
        "-Dstyle.color=never",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={out_dir}",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    if done.returncode != 0 or not any(out_dir.glob("kafka_2.13-*.jar")):
        output = (done.stdout + done.stderr).strip()[-4000:]
        raise DevbrokerError(
            f"fetching the Kafka jars failed (exit {done.returncode}): {' '.join(cmd)}\n{output}"
        )
