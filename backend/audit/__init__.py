"""The audit trail."""

import backend.audit.chain  # noqa: F401 - every writer of audit rows gets the chain's flush hook
