"""referral workflow: the referral timeline, triage suggestion and urgency decision

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

# New nullable columns only: SQLite adds them in place (no table copy of referrals).
_REFERRAL_COLUMNS = (
    ('urgency_source', sa.String(length=16)),
    ('urgency_decided_by', sa.String(length=64)),
    ('urgency_decided_at', sa.DateTime()),
    ('triage_urgency', sa.String(length=16)),
    ('triage_confidence', sa.Float()),
    ('triage_queue', sa.String(length=8)),
    ('triage_model', sa.String(length=64)),
    ('triage_reasons', sa.JSON()),
    ('triage_at', sa.DateTime()),
)


def upgrade() -> None:
    op.create_table(
        'referral_events',
        sa.Column('referral_id', sa.String(length=64), nullable=False),
        sa.Column('at', sa.DateTime(), nullable=False),
        sa.Column('user', sa.String(length=64), nullable=False),
        sa.Column('kind', sa.String(length=24), nullable=False),
        sa.Column('text', sa.Text(), nullable=True),
        sa.Column('data', sa.JSON(), nullable=False),
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('source', sa.String(length=16), nullable=False),
        sa.Column('remote_version', sa.String(length=64), nullable=True),
        sa.Column('dirty', sa.Boolean(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['referral_id'], ['referrals.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_referral_events_referral_at', 'referral_events', ['referral_id', 'at'], unique=False)
    for name, type_ in _REFERRAL_COLUMNS:
        op.add_column('referrals', sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('referrals', schema=None) as batch_op:
        for name, _ in reversed(_REFERRAL_COLUMNS):
            batch_op.drop_column(name)
    op.drop_index('ix_referral_events_referral_at', table_name='referral_events')
    op.drop_table('referral_events')
