"""reconcile run

Revision ID: search_0004
Revises: search_0003
Create Date: 2026-11-27 12:00:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

import services.db


# revision identifiers, used by Alembic.
revision: str = 'search_0004'
down_revision: Union[str, Sequence[str], None] = 'search_0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('reconcile_run',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('trigger', sa.String(length=20), nullable=False),
    sa.Column('requested_by', sa.String(length=100), nullable=True),
    sa.Column('repair', sa.Boolean(), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('alias', sa.String(length=64), nullable=False),
    sa.Column('report', sa.JSON(), nullable=False),
    sa.Column('error', sa.String(length=500), nullable=True),
    sa.Column('requested_at', services.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('started_at', services.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', services.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reconcile_run'))
    )
    with op.batch_alter_table('reconcile_run', schema=None) as batch_op:
        batch_op.create_index('ix_reconcile_run_requested_at', ['requested_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_reconcile_run_state'), ['state'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('reconcile_run', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reconcile_run_state'))
        batch_op.drop_index('ix_reconcile_run_requested_at')

    op.drop_table('reconcile_run')
