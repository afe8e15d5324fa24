"""GET /groups (issue 19 item 8): a trader's own groups, a tenant admin's view of the tenant's;
filters (status, strategy_id, uid, from/to), cursor paging, access, the indexes behind every query."""
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from backend.api import groups_list
from backend.api.history import Cursor
from backend.domain.errors import RejectCode, Rejection
from backend.execution import groups as g
from tests.support.api_stack import make_stack

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
LEGS = [{"leg_id": "leg_001", "symbol": "EURUSD", "direction": 1, "units": 1000, "asset_class": "FX"},
        {"leg_id": "leg_002", "symbol": "GBPUSD", "direction": -1, "units": 500, "asset_class": "FX"}]


@pytest.fixture
def stack(quiet_logs):
    stack = make_stack()
    stack.verifier.add("tok-globex-admin", uid="gus", tenant_id="globex", role="tenant_admin")
    return stack


def put_group(stack, group_id, uid, *, hours=0, strategy="s1", rejected=False, tenant="acme"):
    now = T0 + timedelta(hours=hours)
    group = g.ExecutionGroup.create(group_id=group_id, strategy_id=strategy, tenant_id=tenant, uid=uid,
                                    legs=LEGS, now=now)
    if rejected:
        group = g.fail_validation(g.start_validation(group, now), Rejection(RejectCode.POSITION_LIMIT, "x"), now)
    stack.store.set_doc(f"tenants/{tenant}/execution_groups/{group_id}",
                        {**group.to_dict(), "_final": group.status.is_final, "_kind": "multi_leg"})


@pytest.fixture
def groups(stack):
    put_group(stack, "ga1", "alice", hours=0)
    put_group(stack, "gb1", "bob", hours=1, strategy="s2")
    put_group(stack, "ga2", "alice", hours=25, rejected=True)
    put_group(stack, "gb2", "bob", hours=26, rejected=True, strategy="s2")
    put_group(stack, "ga3", "alice", hours=49, strategy="s2")
    put_group(stack, "gz1", "zed", hours=2, tenant="globex")


def ids(response):
    assert response.status == 200, response.json()
    return [item["group_id"] for item in response.json()["items"]]


def get(stack, token, **query):
    return stack.get("/groups", token=token, query=query)


def test_a_trader_sees_only_their_own_groups_newest_first(stack, groups):
    assert ids(get(stack, "tok-alice")) == ["ga3", "ga2", "ga1"]
    assert ids(get(stack, "tok-bob")) == ["gb2", "gb1"]
    assert ids(get(stack, "tok-zed")) == ["gz1"]


def test_an_item_has_the_group_response_fields_plus_owner_lifecycle_and_creation(stack, groups):
    [item] = get(stack, "tok-alice", status="REJECTED").json()["items"]
    assert item["group_id"] == "ga2" and item["uid"] == "alice" and item["lifecycle_status"] == "REJECTED"
    assert item["status"] == "REJECTED" and item["rejection"]["code"] == RejectCode.POSITION_LIMIT.value
    assert item["created_timestamp"].startswith("2026-01-06T10:00:00")


def test_a_tenant_admin_sees_every_group_of_the_tenant_and_can_pick_one_user(stack, groups):
    assert ids(get(stack, "tok-admin")) == ["ga3", "gb2", "ga2", "gb1", "ga1"]
    assert ids(get(stack, "tok-admin", uid="bob")) == ["gb2", "gb1"]
    assert ids(get(stack, "tok-admin", tenant_id="acme", uid="bob", status="REJECTED", strategy_id="s2")) == ["gb2"]


def test_another_tenants_admin_and_a_trader_naming_another_user_get_403(stack, groups):
    assert get(stack, "tok-globex-admin", tenant_id="acme").status == 403
    assert ids(get(stack, "tok-globex-admin")) == ["gz1"]  # their own tenant only
    response = get(stack, "tok-alice", uid="bob")
    assert response.status == 403 and response.json()["error"]["field"] == "uid"


@pytest.mark.parametrize("query, expected", [
    ({"status": "REJECTED"}, ["gb2", "ga2"]),
    ({"status": "PENDING", "strategy_id": "s2"}, ["ga3", "gb1"]),
    ({"strategy_id": "s1"}, ["ga2", "ga1"]),
    ({"from": "2026-01-06"}, ["ga3", "gb2", "ga2"]),
    ({"to": "2026-01-05"}, ["gb1", "ga1"]),
    ({"from": "2026-01-06", "to": "2026-01-06", "status": "REJECTED"}, ["gb2", "ga2"]),
])
def test_filters_narrow_the_tenant_view(stack, groups, query, expected):
    assert ids(get(stack, "tok-admin", **query)) == expected


def test_a_cursor_walks_every_group_once_in_order(stack, groups):
    seen, cursor = [], None
    while True:
        body = get(stack, "tok-admin", limit="2", **({"cursor": cursor} if cursor else {})).json()
        seen += [item["group_id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ["ga3", "gb2", "ga2", "gb1", "ga1"]


@pytest.mark.parametrize("cursor", ["not-a-cursor!!", Cursor("2026-01-05T00:00:00+00:00", "__x__").encode(),
                                    Cursor("2026-01-05T00:00:00+00:00", "a/b").encode(),
                                    Cursor("2026-01-05T00:00:00+00:00", "..").encode()])
def test_a_bad_cursor_or_one_with_a_reserved_name_is_a_400_naming_cursor(stack, groups, cursor):
    response = get(stack, "tok-admin", cursor=cursor)
    assert response.status == 400 and response.json()["error"]["field"] == "cursor"


@pytest.mark.parametrize("query, field", [
    ({"status": "filled"}, "status"), ({"limit": "0"}, "limit"), ({"limit": "201"}, "limit"),
    ({"from": "2026-02-30"}, "from"), ({"from": "2026-01-07", "to": "2026-01-06"}, "to"),
    ({"symbol": "AAPL"}, "symbol"), ({"strategy_id": "__x__"}, "strategy_id"),
])
def test_bad_parameters_are_a_400_naming_the_field(stack, groups, query, field):
    response = get(stack, "tok-admin", **query)
    assert response.status == 400 and response.json()["error"]["field"] == field, response.json()


def test_every_query_shape_the_list_issues_has_a_composite_index():
    indexes = json.loads((ROOT / "firestore.indexes.json").read_text())["indexes"]
    served = {frozenset(f["fieldPath"] for f in ix["fields"][:-1]) for ix in indexes
              if ix["collectionGroup"] == "execution_groups" and ix["queryScope"] == "COLLECTION"
              and ix["fields"][-1] == {"fieldPath": groups_list.ORDER_FIELD, "order": "DESCENDING"}
              and all(f["order"] == "ASCENDING" for f in ix["fields"][:-1])}
    needed = {combo for combo in groups_list.INDEXED_FILTERS if combo}  # none: the single-field index
    assert needed <= served and len(needed) == 7
