"""networks, fixed IPs, metadata passwords (issue 5; the lead may fold this into a regenerated migration)

Revision ID: d1e2f3a4b5c6
Revises: c0a50e7e6a11
Create Date: 2026-11-25 16:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


revision = 'd1e2f3a4b5c6'
down_revision = 'c0a50e7e6a11'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('networks',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('cidr', sa.String(length=64), nullable=False),
    sa.Column('gateway', sa.String(length=64), nullable=False),
    sa.Column('bridge', sa.String(length=15), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('fixed_ips',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('network_id', sa.String(length=36), nullable=False),
    sa.Column('address', sa.String(length=64), nullable=False),
    sa.Column('mac', sa.String(length=32), nullable=False),
    sa.Column('instance_uuid', sa.String(length=36), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['network_id'], ['networks.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('mac'),
    sa.UniqueConstraint('network_id', 'address', name='uq_fixed_ips_network_address')
    )
    with op.batch_alter_table('fixed_ips', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_fixed_ips_instance_uuid'), ['instance_uuid'], unique=False)
    op.create_table('instance_passwords',
    sa.Column('instance_uuid', sa.String(length=36), nullable=False),
    sa.Column('password', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('instance_uuid')
    )


def downgrade():
    op.drop_table('instance_passwords')
    with op.batch_alter_table('fixed_ips', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fixed_ips_instance_uuid'))
    op.drop_table('fixed_ips')
    op.drop_table('networks')
