"""Compute nodes: the public X25519 key a compute host reports, for the secrets the conductor seals for it

Revision ID: nd1a0b000106
Revises: au1a0b000106
Create Date: 2026-12-07 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op


revision = 'nd1a0b000106'
down_revision = 'au1a0b000106'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('compute_nodes') as batch_op:
        batch_op.add_column(sa.Column('sealing_key', sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table('compute_nodes') as batch_op:
        batch_op.drop_column('sealing_key')
