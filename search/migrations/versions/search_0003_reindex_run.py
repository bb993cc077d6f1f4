"""reindex run

Revision ID: search_0003
Revises: search_0002
Create Date: 2026-11-27 09:00:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

import services.db


# revision identifiers, used by Alembic.
revision: str = 'search_0003'
down_revision: Union[str, Sequence[str], None] = 'search_0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('reindex_run',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('alias', sa.String(length=64), nullable=False),
    sa.Column('building_slot', sa.String(length=64), nullable=True),
    sa.Column('index_name', sa.String(length=200), nullable=True),
    sa.Column('previous_index', sa.String(length=200), nullable=True),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('progress', sa.JSON(), nullable=False),
    sa.Column('pruned', sa.JSON(), nullable=False),
    sa.Column('error', sa.String(length=500), nullable=True),
    sa.Column('started_by', sa.String(length=100), nullable=False),
    sa.Column('started_at', services.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('heartbeat_at', services.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', services.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reindex_run')),
    sa.UniqueConstraint('building_slot', name=op.f('uq_reindex_run_building_slot'))
    )
    with op.batch_alter_table('reindex_run', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reindex_run_state'), ['state'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('reindex_run', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reindex_run_state'))

    op.drop_table('reindex_run')
