"""Demo data for the single-machine suite, from public sources (see data/ATTRIBUTION.md)."""
