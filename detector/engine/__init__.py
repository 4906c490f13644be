"""The detection engine: plain Python, no Kafka, deterministic for a given order of inputs."""
