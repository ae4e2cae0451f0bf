"""Device tags (2.32/2.42) and who locked an instance (unlock_override)

fixed_ips.tag: the ``tag`` of the ``networks`` entry the NIC was made for (Nova's virtual_interfaces.tag);
instances.root_device_tag: the ``tag`` of the image block device mapping (Nova's block_device_mapping.tag);
instances.device_metadata: the tagged devices as the driver placed them (Nova's instance_extra.device_metadata);
instances.locked_by: 'owner' or 'admin' (Nova's instances.locked_by).

Revision ID: f2a0b0000102
Revises: e8f0a0000008
Create Date: 2026-11-26 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op


revision = 'f2a0b0000102'
down_revision = 'e8f0a0000008'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('fixed_ips', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tag', sa.String(length=60), nullable=True))
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.add_column(sa.Column('root_device_tag', sa.String(length=60), nullable=True))
        batch_op.add_column(sa.Column('locked_by', sa.String(length=5), nullable=True))
        batch_op.add_column(sa.Column('device_metadata', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.drop_column('device_metadata')
        batch_op.drop_column('locked_by')
        batch_op.drop_column('root_device_tag')
    with op.batch_alter_table('fixed_ips', schema=None) as batch_op:
        batch_op.drop_column('tag')
