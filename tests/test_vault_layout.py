"""The Vault layout's names: a lease key's name and the lease it belongs to."""

from __future__ import annotations

import pytest

from vault_service.vault import APP_KEY, lease_id_of_key, lease_key_name


def test_lease_id_of_key_inverts_lease_key_name():
    lease_id = "0b8f5c1e-2d3a-4f6b-9c7d-1e2f3a4b5c6d"
    assert lease_id_of_key(lease_key_name(lease_id)) == lease_id


def test_lease_id_of_key_refuses_a_key_that_is_no_lease_key():
    with pytest.raises(ValueError, match="not a lease key"):
        lease_id_of_key(APP_KEY)
