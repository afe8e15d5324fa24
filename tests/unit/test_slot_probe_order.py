"""The order a claim probes daily slots in (store_rules.slot_probe_order): from the count read up to
the limit, then the slots below it — computed per position, never materialised (issue 17)."""
import pytest

from backend.execution.store_rules import slot_probe_order


@pytest.mark.parametrize("seen,limit", [(0, 5), (3, 5), (5, 5), (9, 5), (0, 0), (2, 3), (0, 1), (99_999, 100_000)])
def test_the_probe_order_is_the_count_up_to_the_limit_then_the_slots_below(seen, limit):
    start = max(0, min(seen, limit))
    order = slot_probe_order(seen, limit)

    assert len(order) == limit
    if limit <= 1000:
        assert list(order) == list(range(start, limit)) + list(range(0, start))
    else:
        assert (order[0], order[1], order[limit - 1]) == (start, (start + 1) % limit, (start - 1) % limit)
    with pytest.raises(IndexError):
        order[limit]
