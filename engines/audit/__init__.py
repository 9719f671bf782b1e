"""The folder audit, `python -m engines.audit`: explain and score every image of a folder."""
