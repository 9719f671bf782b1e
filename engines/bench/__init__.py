"""The benchmark, `python -m engines.bench`: every method against its peers and its pass floor."""
