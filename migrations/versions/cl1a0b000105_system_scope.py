"""System scope (Keystone's): system role assignments, and the scope of a system-scoped token

Revision ID: cl1a0b000105
Revises: ida0b0000105
Create Date: 2026-12-07 04:00:00.000000

"""
import sqlalchemy as sa
from alembic import op


revision = 'cl1a0b000105'
down_revision = 'pla0a0000105'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'system_role_assignments',
        sa.Column('user_id', sa.String(length=64), nullable=False),
        sa.Column('role_id', sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(['role_id'], ['roles.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('user_id', 'role_id'),
    )
    with op.batch_alter_table('tokens') as batch_op:
        batch_op.add_column(sa.Column('system_scope', sa.String(length=16), nullable=True))


def downgrade():
    with op.batch_alter_table('tokens') as batch_op:
        batch_op.drop_column('system_scope')
    op.drop_table('system_role_assignments')
