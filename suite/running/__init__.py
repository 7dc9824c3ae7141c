"""Running jobs: job identity and variants, training runs (shared or not), the mmengine config, the
scheduler and its backends, the worker process, resumption, costs and trackers."""
