"""the EHR's version apart from the central service's

Revision ID: 0006
Revises: 0005

``remote_version`` held whichever source wrote last; a record from the EHR that went round the
central service then compared the service's version with the EHR's. From here ``remote_version``
is the service's version and ``ehr_version`` the EHR's.
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

RECORD_TABLES = (
    'appointments', 'assignments', 'care_transitions', 'checkins', 'coverages', 'credentials', 'encounters',
    'followup_plans', 'locations', 'lots', 'organizations', 'patients', 'preauthorizations',
    'purchase_order_lines', 'purchase_orders', 'referral_events', 'referrals', 'schedules', 'shifts', 'slots',
    'staff', 'stock', 'supply_items', 'units', 'vendors',
)


def upgrade() -> None:
    for table in RECORD_TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('ehr_version', sa.String(length=64), nullable=True))
        op.execute(f"UPDATE {table} SET ehr_version = remote_version, remote_version = NULL WHERE source = 'ehr'")


def downgrade() -> None:
    for table in RECORD_TABLES:
        op.execute(f"UPDATE {table} SET remote_version = ehr_version WHERE source = 'ehr'")
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('ehr_version')
