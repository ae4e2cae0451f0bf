"""Keystone's lockout: a user's failed password sign-ins in a row and the time of the last one

Revision ID: au1a0b000106
Revises: cl1a0b000105
Create Date: 2026-12-07 10:10:00.000000

"""
import sqlalchemy as sa
from alembic import op


revision = 'au1a0b000106'
down_revision = 'cl1a0b000105'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users') as batch_op:
        batch_op.add_column(sa.Column('failed_auth_count', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('failed_auth_at', sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table('users') as batch_op:
        batch_op.drop_column('failed_auth_at')
        batch_op.drop_column('failed_auth_count')
