"""What feeds the detector: a payment simulator and a replay of transaction files."""
