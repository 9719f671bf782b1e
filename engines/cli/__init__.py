"""Smaller command lines: training the shapes CNN, its test set, the signed-paper table, `--set` parsing."""
