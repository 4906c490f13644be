"""Streaming payment-fraud detection: a pure detection engine and the Kafka service around it."""
