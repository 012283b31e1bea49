"""Everything that talks to Vault (OpenBao), and the only package that imports hvac.

Its modules, one job each: `layout` (what things are called in Vault), `errors` (our exception
per failure mode), `transport` (the HTTP session and cluster failover), `gateway` (the runtime
`Vault` the app uses), `bootstrap` (the operator's set-up with an admin token) and `posture`
(what `doctor` reads). The rest of the app imports from here.
"""

from .bootstrap import (
    bootstrap_vault,
    issue_app_token,
    issue_wrapped_secret_id,
    rotate_receipt_key,
    unwrap_secret_id,
)
from .errors import (
    DeploymentConflict,
    RootTokenRefused,
    VaultError,
    VaultForbidden,
    VaultNotFound,
    VaultRequestFailed,
    VaultTLSError,
    VaultUnavailable,
)
from .gateway import IssuedToken, ReceiptSignature, Vault
from .layout import (
    APP_KEY,
    APP_POLICY,
    APPROLE_ROLE,
    DEFAULT_DEPLOYMENT_ID,
    DEPLOYMENTS_PREFIX,
    KV_MOUNT,
    LEASE_POLICY,
    LEASE_TOKEN_ROLE,
    POLICY_FILES,
    RECEIPT_KEY,
    RECEIPT_KEY_TYPE,
    REVEAL_POLICY,
    TRANSIT_KEY_TYPE,
    TRANSIT_MOUNT,
    LeaseNames,
    deployment_marker_path,
    is_deployment_id,
    kv_item_path,
    lease_id_of_key,
    lease_key_name,
    lease_names,
    legacy_lease_names,
    policy_dir,
)
from .posture import AdminPosture, Posture, read_admin_posture, read_posture
from .transport import TLSOptions

__all__ = [
    "APPROLE_ROLE",
    "APP_KEY",
    "APP_POLICY",
    "DEFAULT_DEPLOYMENT_ID",
    "DEPLOYMENTS_PREFIX",
    "DeploymentConflict",
    "LeaseNames",
    "deployment_marker_path",
    "is_deployment_id",
    "kv_item_path",
    "lease_names",
    "legacy_lease_names",
    "KV_MOUNT",
    "LEASE_POLICY",
    "LEASE_TOKEN_ROLE",
    "POLICY_FILES",
    "RECEIPT_KEY",
    "RECEIPT_KEY_TYPE",
    "REVEAL_POLICY",
    "TRANSIT_KEY_TYPE",
    "TRANSIT_MOUNT",
    "AdminPosture",
    "IssuedToken",
    "Posture",
    "ReceiptSignature",
    "RootTokenRefused",
    "Vault",
    "VaultError",
    "VaultForbidden",
    "VaultNotFound",
    "TLSOptions",
    "VaultRequestFailed",
    "VaultTLSError",
    "VaultUnavailable",
    "bootstrap_vault",
    "issue_app_token",
    "issue_wrapped_secret_id",
    "unwrap_secret_id",
    "lease_id_of_key",
    "lease_key_name",
    "policy_dir",
    "read_admin_posture",
    "read_posture",
    "rotate_receipt_key",
]
