"""The compute canvas an instance action sent, for resuming a step whose message a broker lost

Revision ID: rsm0a0000108
Revises: neu0a0000107
Create Date: 2026-12-07 14:00:00.000000

"""
import sqlalchemy as sa
from alembic import op


revision = 'rsm0a0000108'
down_revision = 'neu0a0000107'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('instance_actions') as batch_op:
        batch_op.add_column(sa.Column('canvas', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('instance_actions') as batch_op:
        batch_op.drop_column('canvas')
