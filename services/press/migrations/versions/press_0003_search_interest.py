"""search interest: the search query log as a hot-topic input

Revision ID: press_0003
Revises: press_0002
Create Date: 2026-11-27 02:10:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

import services.db


# revision identifiers, used by Alembic.
revision: str = 'press_0003'
down_revision: Union[str, Sequence[str], None] = 'press_0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('press_search_query',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('query', sa.String(length=200), nullable=False),
    sa.Column('keywords', sa.JSON(), nullable=False),
    sa.Column('current', sa.Integer(), nullable=False),
    sa.Column('previous', sa.Integer(), nullable=False),
    sa.Column('window_hours', sa.Integer(), nullable=False),
    sa.Column('window_end', services.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('pulled_at', services.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_press_search_query')),
    sa.UniqueConstraint('query', name=op.f('uq_press_search_query_query'))
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('press_search_query')
