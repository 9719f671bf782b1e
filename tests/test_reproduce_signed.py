"""The signed-paper reproduction command: its protocol and its table, on a few images."""

from __future__ import annotations

from engines.cli import reproduce_signed


def test_table_has_every_pairing_with_valid_aucs():
    result = reproduce_signed.allegiance_table(images=12, batch=5)
    rows = result["rows"]
    assert set(rows) == {f"{m}/{f}" for m, fills in reproduce_signed.PAIRINGS.items() for f in fills}
    for row in rows.values():
        assert 0.0 <= row["auc"] <= result["max_auc"] == 0.9
        assert 0.0 <= row["deleted_at_90"] <= 0.9
    assert rows["gradient/white"]["paired"] and not rows["active/white"]["paired"]
    assert result["accuracy"] > 0.8
    table = reproduce_signed.markdown(result).splitlines()
    assert len(table) == 2 + len(rows) and "(crossed)" in table[-1]
