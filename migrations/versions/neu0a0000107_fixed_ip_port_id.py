"""The Networking API's port id of a fixed IP (a port is its fixed IP row, not a second copy)

Revision ID: neu0a0000107
Revises: nd1a0b000106
Create Date: 2026-12-07 10:00:00.000000

"""
import uuid

import sqlalchemy as sa
from alembic import op


revision = 'neu0a0000107'
down_revision = 'nd1a0b000106'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('fixed_ips') as batch_op:
        batch_op.add_column(sa.Column('port_id', sa.String(length=36), nullable=True))
    fixed_ips = sa.table('fixed_ips', sa.column('id', sa.Integer), sa.column('port_id', sa.String))
    conn = op.get_bind()
    for (row_id,) in conn.execute(sa.select(fixed_ips.c.id)).all():
        conn.execute(fixed_ips.update().where(fixed_ips.c.id == row_id).values(port_id=str(uuid.uuid4())))
    with op.batch_alter_table('fixed_ips') as batch_op:
        batch_op.alter_column('port_id', existing_type=sa.String(length=36), nullable=False)
        batch_op.create_unique_constraint('uq_fixed_ips_port_id', ['port_id'])


def downgrade():
    with op.batch_alter_table('fixed_ips') as batch_op:
        batch_op.drop_constraint('uq_fixed_ips_port_id', type_='unique')
        batch_op.drop_column('port_id')
