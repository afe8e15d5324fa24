"""Issue 11 moves (order values into the domain, the simulated venue into a package, the local stack
into scripts/localstack/, one Firestore REST codec): the old import paths keep naming the very same
objects, the broker port holds protocols only, and the shared codec round-trips what it encodes."""
import ast
import importlib.util
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import backend.adapters.sim as sim
import backend.adapters.sim_venue as sim_venue
import backend.domain.orders as orders
import backend.ports.broker as port
from tests.support import firestore_rest, rules_client

ROOT = Path(__file__).resolve().parents[2]


def test_the_broker_port_module_defines_protocols_only():
    tree = ast.parse((ROOT / "backend/ports/broker.py").read_text())
    classes = [node for node in tree.body if isinstance(node, ast.ClassDef)]
    assert [c.name for c in classes] == ["BrokerPort"]
    assert all(any(getattr(base, "id", None) == "Protocol" for base in c.bases) for c in classes)


@pytest.mark.parametrize("name", sorted(set(port.__all__) - {"BrokerPort"}))
def test_order_values_keep_their_old_import_path(name):
    assert getattr(port, name) is getattr(orders, name)


def test_domain_modules_import_only_the_domain():
    for path in sorted((ROOT / "backend/domain").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("backend."):
                assert node.module.startswith("backend.domain"), f"{path.name} imports {node.module}"


@pytest.mark.parametrize("name", sim.__all__)
def test_the_sim_venue_path_names_the_sim_package_objects(name):
    assert getattr(sim_venue, name) is getattr(sim, name)


@pytest.mark.parametrize("path", ["backend/adapters/sim", "scripts/localstack"])
def test_the_split_packages_keep_modules_under_600_lines(path):
    sizes = {p.name: len(p.read_text().splitlines()) for p in (ROOT / path).glob("*.py")}
    assert sizes and max(sizes.values()) <= 600, sizes


def _load_localstack_clients():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    spec = importlib.util.find_spec("scripts.localstack.clients")
    assert spec is not None
    return importlib.import_module("scripts.localstack.clients")


def test_the_rules_client_and_the_local_stack_share_one_firestore_codec():
    clients = _load_localstack_clients()
    assert clients.encode_fields is firestore_rest.encode_fields
    assert clients.decode_fields is firestore_rest.decode_fields
    assert rules_client.encode_value is firestore_rest.encode_value
    assert rules_client.Timestamp is firestore_rest.Timestamp


json_like = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(min_size=1), inner, max_size=4),
    max_leaves=12,
)


@given(json_like)
def test_the_codec_decodes_what_it_encodes(value):
    assert firestore_rest.decode_value(firestore_rest.encode_value(value)) == value


def test_the_codec_reads_empty_maps_and_arrays_as_the_emulator_sends_them():
    assert firestore_rest.decode_value({"mapValue": {}}) == {}
    assert firestore_rest.decode_value({"arrayValue": {}}) == []
    assert firestore_rest.decode_fields(None) == {}


def test_the_codec_leaves_server_timestamps_to_transforms():
    data = {"a": 1, "created_at": firestore_rest.SERVER_TIMESTAMP, "m": {"t": firestore_rest.SERVER_TIMESTAMP}}
    assert firestore_rest.encode_fields(data) == {"a": {"integerValue": "1"}, "m": {"mapValue": {"fields": {}}}}
    assert firestore_rest.server_timestamp_paths(data) == ["created_at", "m.t"]
