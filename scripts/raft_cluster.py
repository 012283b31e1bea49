#!/usr/bin/env python3
"""Start a three-node OpenBao raft cluster on loopback, for trying HA by hand.

DEVELOPMENT ONLY: one unseal key, kept with the root token in var/raft/node1/init.json.
Usage: .venv/bin/python scripts/raft_cluster.py   (Ctrl-C stops all three nodes)
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from vault_service.devtools.embedded_openbao import RaftCluster
from vault_service.vault import bootstrap_vault, issue_app_token

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    directory = Path(os.environ.get("VAULT_SERVICE_VAR_DIR", ROOT / "var")) / "raft"
    cluster = RaftCluster(directory)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    try:
        secrets = cluster.start()
        leader = cluster.leader()
        for line in bootstrap_vault(leader.addr, secrets.root_token):
            print(f"bootstrap: {line}")
        token = issue_app_token(leader.addr, secrets.root_token, ttl_seconds=24 * 3600)
        print(f"\nleader: {leader.addr}")
        print(f"VAULT_ADDR={','.join(cluster.addresses)}")
        print(f"app token (policy vault-service only): {token.token}")
        print("Kill the leader (kill -9 <pid>) to watch a standby take over; Ctrl-C stops all.")
        for node in cluster.nodes:
            print(f"  {node.addr}  pid {node.process.pid}")
        signal.sigwait({signal.SIGINT, signal.SIGTERM}) if not stop else None
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
