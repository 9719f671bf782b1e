"""Judging maps: deletion, insertion and allegiance curves, localisation, randomisation, sufficiency."""
