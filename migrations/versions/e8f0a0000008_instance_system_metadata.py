"""instances.system_metadata (Nova's instance_system_metadata: the shelve snapshot's image id and friends)

Revision ID: e8f0a0000008
Revises: e7f0a0000007
Create Date: 2026-11-25 16:50:00.000000

"""
import sqlalchemy as sa
from alembic import op


revision = 'e8f0a0000008'
down_revision = 'e7f0a0000007'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.add_column(sa.Column('system_metadata', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.drop_column('system_metadata')
