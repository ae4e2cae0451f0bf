"""quota classes and the server_groups usage counter (issue 7, quotas)

Revision ID: e1f0a0000001
Revises: d1e2f3a4b5c6
Create Date: 2026-11-25 15:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


revision = 'e1f0a0000001'
down_revision = 'd1e2f3a4b5c6'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('quota_classes',
    sa.Column('class_name', sa.String(length=255), nullable=False),
    sa.Column('resource', sa.String(length=64), nullable=False),
    sa.Column('hard_limit', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('class_name', 'resource')
    )
    with op.batch_alter_table('quota_usages') as batch_op:
        batch_op.add_column(sa.Column('server_groups', sa.Integer(), server_default='0', nullable=False))


def downgrade():
    with op.batch_alter_table('quota_usages') as batch_op:
        batch_op.drop_column('server_groups')
    op.drop_table('quota_classes')
