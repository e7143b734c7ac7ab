"""The metrics' batch histogram (`_Histogram.add`) buckets exactly as one `observe` per value."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from chancy.metrics import BUCKETS, _Histogram


def test_add_matches_observe_on_bounds_negatives_and_overflow() -> None:
    rng = random.Random(7)
    seconds = [*BUCKETS, -1.0, 0.0, 1e-6, 4000.0, 3600.000001]
    seconds += [rng.uniform(-0.01, 5000) for _ in range(500)]
    seconds += [bound + d for bound in BUCKETS for d in (-1e-6, 1e-6)]
    one, many = _Histogram(), _Histogram()
    for value in seconds:
        one.observe(value)
    spans = [timedelta(seconds=value) for value in seconds]
    rng.shuffle(spans)
    many.add(spans[:100])
    many.add(spans[100:])
    many.add([])
    assert many.counts == one.counts
    assert sum(many.counts) == len(seconds)
    assert many.total == pytest.approx(one.total, rel=1e-9)
