# OpenBao server configuration for docker-compose.yml (single node, integrated raft storage).
#
# Mounted read-only at /openbao/config/openbao.hcl. Holds no secret: unseal keys and the root
# token come from `bao operator init` and are kept by people, never on this host (deploy/README.md).

# Integrated storage. One node here; for HA run 3 or 5 nodes, each with its own node_id and a
# retry_join block per peer (which needs TLS on the listener below).
storage "raft" {
  path    = "/openbao/data"
  node_id = "openbao-1"
}

listener "tcp" {
  address         = "0.0.0.0:8200"
  cluster_address = "0.0.0.0:8201"

  # TLS MUST be enabled in production. Without it, Vault tokens, and during a reveal the
  # decrypted credentials, cross the network in clear between the app and OpenBao. Plain HTTP is
  # tolerable only while OpenBao and the app share one host and the compose-internal `backend`
  # network, and port 8200 is never published.
  #
  # To enable: put a certificate whose SANs include "openbao" (and each node's name) and its key
  # in deploy/openbao/tls/ (git-ignored; mount it at /openbao/tls in docker-compose.yml, key
  # readable by the openbao user only), replace tls_disable with the three lines below, change
  # api_addr to https://, set VAULT_ADDR=https://openbao:8200 for the app and worker, and, for a
  # private CA, mount the CA file and point VAULT_SERVICE_VAULT_CA_CERT at it (the app, the worker
  # and every vault-service command, bootstrap-vault and doctor included; the app ignores
  # REQUESTS_CA_BUNDLE and VAULT_CACERT on purpose) and BAO_CACERT (the bao CLI). A client
  # certificate, if the listener requires one: VAULT_SERVICE_VAULT_CLIENT_CERT and _KEY.
  tls_disable = true
  # tls_cert_file   = "/openbao/tls/tls.crt"
  # tls_key_file    = "/openbao/tls/tls.key"
  # tls_min_version = "tls12"
}

# Where clients and peers reach this node. The cluster port always speaks TLS (OpenBao's own
# certificates), hence https even while the API listener is plain.
# vault_service needs read-after-write consistency (it creates a key, then configures it; it
# deletes, then verifies the deletion). Standbys serving reads locally are only eventually
# consistent; with this they forward every request to the active node. Keep it on every node.
disable_standby_reads = true

api_addr     = "http://openbao:8200"
cluster_addr = "https://openbao:8201"

# OpenBao 2.7 refuses to enable audit devices through the API: they exist only here, so no token,
# however privileged, can switch auditing off. `vault-service bootstrap-vault` refuses to run
# when none is present. If the device cannot write (full disk), OpenBao refuses requests: it
# fails closed. Rotate with logrotate and SIGHUP (deploy/README.md).
# The log holds HMACs of request and response values (never plaintext), clear request paths (opaque
# UUIDs only) and timings: keep it as long as the audit trail, no longer.
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
