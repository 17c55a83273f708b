"""The distillers study's tables and figure
(projects/funmatch_paper/distillers_study.py) on rows written by hand: mean
+- sample std over seeds, per-seed values, per-seed margins."""
import math

from projects.funmatch_paper.distillers_study import plot, tables

NAN = math.nan


def _row(seed, run, top1, heads=(NAN, NAN, NAN), agreement=NAN, kl=NAN):
    return dict(seed=seed, run=run, val_top1=top1, agreement=agreement,
                teacher_kl=kl, head1=heads[0], head2=heads[1],
                head3=heads[2], epochs=80, wall_s=NAN)


ROWS = [
    _row(0, 'kl', 96.0, agreement=95.0, kl=0.10),
    _row(1, 'kl', 98.0, agreement=97.0, kl=0.20),
    _row(0, 'kl_srd', 97.0, agreement=96.0, kl=0.05),
    _row(1, 'kl_srd', 97.0, agreement=96.0, kl=0.15),
    _row(0, 'label', 90.0),
    _row(1, 'label', 92.0),
    _row(0, 'byot', 93.0, heads=(80.0, 85.0, 90.0)),
    _row(1, 'byot', 94.0, heads=(82.0, 87.0, 92.0)),
    _row(0, 'byot_labels_only', 91.0, heads=(78.0, 84.0, 88.0)),
    _row(1, 'byot_labels_only', 91.0, heads=(80.0, 84.0, 90.0)),
]


def test_tables_by_hand(tmp_path):
    text = tables(ROWS)
    # kl: mean 97, sample std sqrt(2) = 1.4; srd - kl per seed: +1, -1.
    assert ('| FunMatch student, KL alone | 97.0 +- 1.4 | 96.0, 98.0 | '
            '96.0 +- 1.4 | 95.0, 97.0 | 0.150 +- 0.071 |') in text
    assert '| KL + SRD minus KL (points) | 0.0 +- 1.4 | 1.0, -1.0 |' in text
    assert ('| BYOT (labels + KL + L2 to the deepest head) | 81.0 +- 1.4 | '
            '86.0 +- 1.4 | 91.0 +- 1.4 | 93.5 +- 0.7 | 93.0, 94.0 |') in text
    # byot - label per seed: 3, 2; byot - labels-only per seed: head 1
    # (2, 2), head 2 (1, 3), head 3 (2, 2), final (2, 3).
    assert ('| BYOT minus labels alone (points) | - | - | - | 2.5 +- 0.7 | '
            '3.0, 2.0 |') in text
    assert ('| BYOT minus the heads from labels alone (points) | 2.0 +- 0.0 '
            '| 2.0 +- 1.4 | 2.0 +- 0.0 | 2.5 +- 0.7 | 2.0, 3.0 |') in text
    plot(ROWS, str(tmp_path / 'f.png'))
    assert (tmp_path / 'f.png').stat().st_size > 0
