# OpenBao server configuration for docker-compose.yml: one file for the three raft nodes
# (openbao-1, -2, -3). What differs per node comes from each service's environment:
# BAO_RAFT_NODE_ID, BAO_API_ADDR and BAO_CLUSTER_ADDR (OpenBao 2.7's names for the documented
# node_id, api_addr and cluster_addr overrides).
#
# Mounted read-only at /openbao/config/openbao.hcl. Holds no secret: the TLS key and the static
# seal key are Docker secrets (/run/secrets/...), the root token and recovery keys come from
# `bao operator init` and are kept by people, never on this host (deploy/README.md).
# tests/test_compose.py checks this file with `bao operator diagnose`.

# Integrated storage, replicated by raft. https://openbao.org/docs/configuration/storage/raft
storage "raft" {
  path = "/openbao/data"

  # Every node tries every peer until one answers as the leader (its own entry is skipped).
  # Over TLS: the peer's certificate must be signed by this CA and name the peer's host.
  retry_join {
    leader_api_addr     = "https://openbao-1:8200"
    leader_ca_cert_file = "/run/secrets/openbao_ca"
  }
  retry_join {
    leader_api_addr     = "https://openbao-2:8200"
    leader_ca_cert_file = "/run/secrets/openbao_ca"
  }
  retry_join {
    leader_api_addr     = "https://openbao-3:8200"
    leader_ca_cert_file = "/run/secrets/openbao_ca"
  }
}

listener "tcp" {
  address         = "0.0.0.0:8200"
  cluster_address = "0.0.0.0:8201"

  # TLS always: Vault tokens, and during a reveal the decrypted credentials, cross this
  # listener. One certificate for the three nodes, its SANs naming openbao-1, openbao-2 and
  # openbao-3 (deploy/README.md makes one with openssl). The app and every vault-service command
  # trust the CA through VAULT_SERVICE_VAULT_CA_CERT (never REQUESTS_CA_BUNDLE or VAULT_CACERT,
  # which the app ignores on purpose); the bao CLI through BAO_CACERT.
  tls_cert_file   = "/run/secrets/openbao_tls_cert"
  tls_key_file    = "/run/secrets/openbao_tls_key"
  tls_min_version = "tls12"
}

# Auto-unseal from a key file: https://openbao.org/docs/configuration/seal/static
# 32 random bytes (AES-256-GCM-96), the same on every node, given as the Docker secret
# `openbao_unseal_key`. A restarted node unseals itself; `bao operator init` then returns
# recovery keys (for a new root token), not unseal keys. Whoever holds this key and a copy of the
# raft data (a volume, a snapshot) can read everything Vault holds: keep it off the data's
# backups. The alternative, Shamir (an operator types key shares after every restart), is in
# deploy/README.md; to use it, delete this block.
seal "static" {
  current_key_id = "vault-service-1"
  current_key    = "file:///run/secrets/openbao_unseal_key"
}

# vault_service needs read-after-write consistency (it creates a key, then configures it; it
# deletes, then verifies the deletion). Standbys serving reads locally are only eventually
# consistent; with this they forward every request to the active node. Keep it on every node.
disable_standby_reads = true

# OpenBao 2.7 refuses to enable audit devices through the API: they exist only here, so no token,
# however privileged, can switch auditing off. `vault-service bootstrap-vault` refuses to run
# when none is present. If the device cannot write (full disk), OpenBao refuses requests: it
# fails closed. Rotate with logrotate and SIGHUP (deploy/README.md). Identical on every node (a
# standby refuses to become active with different audit devices); each node writes its own
# volume. The log holds HMACs of request and response values (never plaintext), clear request
# paths (opaque UUIDs only) and timings: keep it as long as the audit trail, no longer.
audit "file" "file" {
  description = "vault_service audit log"
  options {
    file_path = "/openbao/audit/audit.log"
  }
}

# No mlock setting: OpenBao 2.7 dropped mlock support (it warns on `disable_mlock`), so its
# memory (the unsealed keyring, transit keys, briefly decrypted values) can be swapped out. Disable
# swap on the host, or encrypt it (deploy/README.md).

ui        = false
log_level = "info"
