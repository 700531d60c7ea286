"""ehr write-back queue

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'ehr_writes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=24), nullable=False),
        sa.Column('entity', sa.String(length=64), nullable=False),
        sa.Column('entity_id', sa.String(length=64), nullable=False),
        sa.Column('user', sa.String(length=64), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('detail', sa.String(length=400), nullable=True),
        sa.Column('remote_id', sa.String(length=128), nullable=True),
        sa.Column('remote_version', sa.String(length=64), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('ehr_writes', schema=None) as batch_op:
        batch_op.create_index('ix_ehr_writes_record', ['entity', 'entity_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ehr_writes_status'), ['status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('ehr_writes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ehr_writes_status'))
        batch_op.drop_index('ix_ehr_writes_record')
    op.drop_table('ehr_writes')
