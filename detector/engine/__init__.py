"""The detection engine: plain Python, no Kafka, deterministic for a given order of inputs."""

# Here rather than in model.py so that settings can name the kinds without importing River.
MODEL_KINDS = ("logistic_regression", "hoeffding_tree", "hoeffding_adaptive_tree", "adaptive_random_forest")
