"""The Kafka service around the detection engine: exactly-once loop, checkpoints, topics."""
