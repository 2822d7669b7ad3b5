"""delivery fencing: a claim generation (fencing token) and the claiming worker on the delivery ledger

Revision ID: 0009_delivery_fencing
Revises: 0008_revocable_tokens
Create Date: 2026-12-05

A row claimed for sending ('sending') could outlive its lease while its claimer was still working through a batch;
the next sweep took it again and both sent it. Every claim now increments `claim_generation` and records
`claimed_by`; the claimer renews its lease just before the send and writes the outcome only while the generation is
still its own. Existing rows start at generation 0 with no claimer.

Migrations must not import application code (backend.*): the models change later, a migration never does.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0009_delivery_fencing"
down_revision: str | Sequence[str] | None = "0008_revocable_tokens"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notification_deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claim_generation", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=120), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notification_deliveries", schema=None) as batch_op:
        batch_op.drop_column("claimed_by")
        batch_op.drop_column("claim_generation")
