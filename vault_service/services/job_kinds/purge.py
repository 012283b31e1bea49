"""The purge: destroy a closed lease's Vault material, verify it gone, keep the receipt."""

from ...config import Settings
from .. import purge
from ..jobs import JobKind
from ..lifecycle import PURGE_JOB


def _max_backoff_seconds(settings: Settings) -> int:
    return settings.purge_backoff_max_seconds


KIND = JobKind(
    name=PURGE_JOB,
    run=purge.destroy_lease,
    finish=purge.record_purge,
    max_backoff_seconds=_max_backoff_seconds,
)
