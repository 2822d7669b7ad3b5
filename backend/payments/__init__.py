"""Payments: fee policies, cards on file, the payments ledger, charges through a gateway (Stripe or a fake)."""
