"""Faithfulness of every method and of its peers, scored by the same curves (`python -m engines.faithfulness`).

- `data`: the image sets: the shapes test set (with object masks) and views (crops, rescalings,
  flips) of every photo the project ships.
- `scoring`: one map's scores: deletion, insertion, ROAD (most and least relevant first),
  pointing game (strict and tolerant) and relevance mass where there is a mask.
- `run`: every method and each peer implementation of it (`method_info(m).peers`), per family:
  mean ± standard error and time per map; markdown tables and JSON.
- `defaults`: the measurement behind the defaults (occlusion fill, SmoothGrad variant, extremal
  settings, OISE budget against RISE).
"""
