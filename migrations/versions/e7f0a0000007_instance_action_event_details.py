"""instance action event details (issue 7, microversion 2.84)

Revision ID: e7f0a0000007
Revises: e4f0a0000004
Create Date: 2026-11-25 16:55:00.000000

"""
from alembic import op
import sqlalchemy as sa


revision = 'e7f0a0000007'
down_revision = 'e4f0a0000004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('instance_action_events') as batch_op:
        batch_op.add_column(sa.Column('details', sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table('instance_action_events') as batch_op:
        batch_op.drop_column('details')
