# vault-service: the application's own least-privilege policy.
#
# What it deliberately cannot do: read a credential (no "read" on KV data), decrypt with a
# per-ticket key, export or back up any key, or touch any path outside its own mounts.
# Reveals go through short-lived per-ticket tokens it mints from the ticket's lease token.

# Store each credential exactly once. "create" without "read" or "update": the KV mount has
# cas_required=true and the app writes with cas=0, so Vault itself refuses a second write.
path "vault-service-kv/data/*" {
  capabilities = ["create"]
}

# Deployment marker: which database owns this deployment id (a random id, no secret). The app
# reads it and creates it once (cas=0, by the path above); it can never overwrite it, so one
# database cannot take another's deployment id over.
path "vault-service-kv/data/_deployments/*" {
  capabilities = ["read", "create"]
}

# Purge and orphan sweeps: list, inspect and destroy metadata (every version). Metadata holds
# no credential data, only version bookkeeping.
path "vault-service-kv/metadata/*" {
  capabilities = ["list", "read", "delete"]
}

# Create, configure (deletion_allowed), inspect and destroy per-ticket transit keys. The glob
# also reaches keys/ticket-*/rotate and /trim, which only harm ticket data the app may destroy.
path "vault-service-transit/keys/ticket-*" {
  capabilities = ["create", "update", "read", "delete"]
}

# Sweeps: find per-ticket keys the database does not know.
path "vault-service-transit/keys" {
  capabilities = ["list"]
}

# Encrypt a submission with its ticket's key. No decrypt: plaintext needs a ticket token.
path "vault-service-transit/encrypt/ticket-*" {
  capabilities = ["update"]
}

# The app key wraps the lease and grant tokens the database keeps, so a stolen database
# yields no usable Vault token.
path "vault-service-transit/encrypt/vault-service-app" {
  capabilities = ["update"]
}
path "vault-service-transit/decrypt/vault-service-app" {
  capabilities = ["update"]
}

# Mint a ticket's lease token: an orphan whose TTL is the maximum retention, carrying the two
# static ticket policies and an entity alias named by the lease UUID. The role allows exactly
# those two policies. Deliberately absent: any sys/policies path. The app cannot write a policy.
path "auth/token/create/vault-service-ticket-lease" {
  capabilities = ["update"]
}

# Purge: delete the lease's identity entity (created with its lease token) and confirm it gone.
path "identity/entity/id/*" {
  capabilities = ["read", "delete"]
}

# Purge: revoke a lease (and with it every grant) by accessor, then confirm it is gone.
path "auth/token/revoke-accessor" {
  capabilities = ["update"]
}
path "auth/token/lookup-accessor" {
  capabilities = ["update"]
}

# Readiness: see whether its own token is still valid.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
path "auth/token/renew-self" {
  capabilities = ["update"]
}

# `vault-service doctor`: confirm the KV mount still has max_versions=1 and cas_required.
path "vault-service-kv/config" {
  capabilities = ["read"]
}

# `vault-service doctor`: confirm the app key is neither exportable nor backed up in plaintext.
path "vault-service-transit/keys/vault-service-app" {
  capabilities = ["read"]
}

# Deletion receipts: ask Vault to sign a receipt with the ed25519 receipt key, and read the
# key's public halves (for /.well-known/jwks.json and `doctor`). Exactly these two paths: no
# export/, backup/, keys/vault-service-receipts/config or /rotate, so the private key never
# leaves Vault and the app can neither make it exportable nor rotate or delete it.
path "vault-service-transit/sign/vault-service-receipts" {
  capabilities = ["update"]
}
path "vault-service-transit/keys/vault-service-receipts" {
  capabilities = ["read"]
}
