"""``store_writes.changed_fields`` (issue 17): the finish's update names only the intent fields whose
stored value differs; sentinels are always written; "the same" means the same types all the way down."""
from __future__ import annotations

from datetime import datetime, timezone

from backend.execution.store_writes import changed_fields
from backend.execution.unit_of_work import SERVER_TIME, ArrayUnion, Inc

T = datetime(2026, 3, 2, 15, tzinfo=timezone.utc)


def test_equal_fields_are_left_out_and_changed_or_new_ones_kept():
    stored = {"intent": {"symbol": "AAPL", "qty": "10"}, "status": "reserved", "lease_until": T, "slot": 3}
    record = {"intent": {"symbol": "AAPL", "qty": "10"}, "status": "placed", "lease_until": None, "slot": 3,
              "result": {"status": "placed"}}

    assert changed_fields(record, stored) == {"status": "placed", "lease_until": None, "result": {"status": "placed"}}


def test_sentinels_are_always_written_even_when_the_stored_record_holds_the_same_sentinel():
    stored = {"updated_server_at": SERVER_TIME, "n": Inc(1), "tags": ArrayUnion(("a",)), "m": {"t": SERVER_TIME}}
    record = dict(stored)

    assert changed_fields(record, stored) == record


def test_same_means_same_types_all_the_way_down():
    stored = {"final": 1, "seq": [0, 1], "nested": {"x": 1.0}, "flag": False, "text": "1"}
    record = {"final": True, "seq": (0, 1), "nested": {"x": 1}, "flag": 0, "text": 1}

    assert changed_fields(record, stored) == {"final": True, "nested": {"x": 1}, "flag": 0, "text": 1}


def test_a_map_with_other_keys_or_a_list_of_another_length_is_changed():
    stored = {"m": {"a": 1}, "l": [1, 2]}
    assert changed_fields({"m": {"a": 1, "b": 2}, "l": [1, 2, 3]}, stored) == {"m": {"a": 1, "b": 2}, "l": [1, 2, 3]}
    assert changed_fields({"m": {}, "l": []}, stored) == {"m": {}, "l": []}
    assert changed_fields({"m": [1], "l": {"0": 1}}, stored) == {"m": [1], "l": {"0": 1}}
