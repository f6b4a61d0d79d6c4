"""berth's profiler: NVML sampling, the DCGM-compatible exporter, `berth profile`, the
Prometheus collector and the retraining loop that feeds measured jobs back to the recommender."""
