"""instances.requested_host: the host a boot asked for (2.74 host / forced zone:host), kept so the conductor can
send a stalled boot through the scheduler again with the same request (Nova keeps it in the RequestSpec)

Revision ID: f4a0b0000104
Revises: f3a0b0000103
Create Date: 2026-12-02 09:00:00.000000

"""
import sqlalchemy as sa
from alembic import op


revision = 'f4a0b0000104'
down_revision = 'f3a0b0000103'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('instances') as batch_op:
        batch_op.add_column(sa.Column('requested_host', sa.String(length=255), nullable=True))


def downgrade():
    with op.batch_alter_table('instances') as batch_op:
        batch_op.drop_column('requested_host')
