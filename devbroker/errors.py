"""The one exception devbroker raises, so callers and the CLI can tell its failures from bugs."""


class DevbrokerError(RuntimeError):
    """Fetching the jars or running the broker failed; the message says what to look at."""
