"""The Vault layout's names: a lease key's name and the lease and deployment it belongs to."""

from __future__ import annotations

import pytest

from vault_service.vault import (
    APP_KEY,
    RECEIPT_KEY,
    deployment_marker_path,
    is_deployment_id,
    kv_item_path,
    lease_id_of_key,
    lease_key_name,
    legacy_lease_names,
)

LEASE = "0b8f5c1e-2d3a-4f6b-9c7d-1e2f3a4b5c6d"


def test_lease_id_of_key_inverts_lease_key_name():
    assert lease_id_of_key(lease_key_name(LEASE, deployment="prod"), deployment="prod") == LEASE


def test_a_key_belongs_to_exactly_one_deployment():
    # "prod" must not take "prod-eu"'s keys (nor the reverse): a prefix match would.
    for owner, other in (("prod", "prod-eu"), ("prod-eu", "prod"), ("a", "a-b")):
        assert lease_id_of_key(lease_key_name(LEASE, deployment=owner), deployment=other) is None


def test_keys_that_are_no_lease_key_of_this_deployment_are_never_attributed():
    for name in (APP_KEY, RECEIPT_KEY, legacy_lease_names(LEASE).key_name, "ticket-.prod"):
        assert lease_id_of_key(name, deployment="prod") is None


def test_items_live_under_the_deployment_folder():
    assert kv_item_path(LEASE, "item", deployment="prod") == f"prod/{LEASE}/item"
    assert legacy_lease_names(LEASE).item_path("item") == f"{LEASE}/item"
    assert deployment_marker_path("prod") == "_deployments/prod"


@pytest.mark.parametrize(
    "value", ["", "Prod", "-prod", "_deployments", "a" * 33, "prod.eu", "prod/eu", LEASE]
)
def test_a_deployment_id_is_a_short_slug_that_no_lease_or_marker_can_be(value):
    assert not is_deployment_id(value)
    with pytest.raises(ValueError, match="not a deployment id"):
        lease_key_name(LEASE, deployment=value)
