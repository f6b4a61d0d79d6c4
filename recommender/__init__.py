"""The recommender: from measured profiles to predictions of throughput and power."""
