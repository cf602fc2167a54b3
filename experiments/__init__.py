"""absl entry points, one per study: ``python -m experiments.NAME --workdir DIR``."""
