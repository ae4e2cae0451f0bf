"""Placement API: compute nodes' reserved capacity and provider generation; hand-added providers, their
inventories, consumers and allocations; custom resource classes and traits; provider traits and aggregates

Revision ID: pla0a0000105
Revises: ida0b0000105
Create Date: 2026-12-07 04:00:00.000000

"""
import sqlalchemy as sa
from alembic import op


revision = 'pla0a0000105'
down_revision = 'ca0a28000001'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('compute_nodes') as batch_op:
        for name in ('vcpus_reserved', 'memory_mb_reserved', 'local_gb_reserved', 'generation'):
            batch_op.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('driver_traits', sa.JSON(), nullable=True))
    op.create_table(
        'placement_providers',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('uuid', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('generation', sa.Integer(), nullable=False),
        sa.Column('parent_provider_uuid', sa.String(length=36), nullable=True),
        sa.Column('root_provider_uuid', sa.String(length=36), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'), sa.UniqueConstraint('uuid'), sa.UniqueConstraint('name'))
    op.create_index('ix_placement_providers_parent_provider_uuid', 'placement_providers', ['parent_provider_uuid'])
    op.create_index('ix_placement_providers_root_provider_uuid', 'placement_providers', ['root_provider_uuid'])
    op.create_table(
        'placement_inventories',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('provider_id', sa.Integer(), nullable=False),
        sa.Column('resource_class', sa.String(length=255), nullable=False),
        sa.Column('total', sa.Integer(), nullable=False),
        sa.Column('reserved', sa.Integer(), nullable=False),
        sa.Column('min_unit', sa.Integer(), nullable=False),
        sa.Column('max_unit', sa.Integer(), nullable=False),
        sa.Column('step_size', sa.Integer(), nullable=False),
        sa.Column('allocation_ratio', sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(['provider_id'], ['placement_providers.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('provider_id', 'resource_class', name='uq_placement_inventories_class'))
    op.create_index('ix_placement_inventories_provider_id', 'placement_inventories', ['provider_id'])
    op.create_table(
        'placement_allocations',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('consumer_uuid', sa.String(length=36), nullable=False),
        sa.Column('provider_id', sa.Integer(), nullable=False),
        sa.Column('resource_class', sa.String(length=255), nullable=False),
        sa.Column('used', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['provider_id'], ['placement_providers.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_placement_allocations_consumer_uuid', 'placement_allocations', ['consumer_uuid'])
    op.create_index('ix_placement_allocations_provider_id', 'placement_allocations', ['provider_id'])
    op.create_table(
        'placement_consumers',
        sa.Column('uuid', sa.String(length=36), nullable=False),
        sa.Column('project_id', sa.String(length=255), nullable=False),
        sa.Column('user_id', sa.String(length=255), nullable=False),
        sa.Column('consumer_type', sa.String(length=255), nullable=False),
        sa.Column('generation', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('uuid'))
    for table in ('placement_resource_classes', 'placement_traits'):
        op.create_table(
            table,
            sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
            sa.Column('name', sa.String(length=255), nullable=False),
            sa.PrimaryKeyConstraint('id'), sa.UniqueConstraint('name'))
    op.create_table(
        'placement_provider_traits',
        sa.Column('provider_uuid', sa.String(length=36), nullable=False),
        sa.Column('trait', sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint('provider_uuid', 'trait'))
    op.create_table(
        'placement_provider_aggregates',
        sa.Column('provider_uuid', sa.String(length=36), nullable=False),
        sa.Column('aggregate_uuid', sa.String(length=36), nullable=False),
        sa.PrimaryKeyConstraint('provider_uuid', 'aggregate_uuid'))
    op.create_index('ix_placement_provider_aggregates_aggregate_uuid', 'placement_provider_aggregates',
                    ['aggregate_uuid'])


def downgrade():
    for table in ('placement_provider_aggregates', 'placement_provider_traits', 'placement_traits',
                  'placement_resource_classes', 'placement_consumers', 'placement_allocations',
                  'placement_inventories', 'placement_providers'):
        op.drop_table(table)
    with op.batch_alter_table('compute_nodes') as batch_op:
        for name in ('driver_traits', 'generation', 'local_gb_reserved', 'memory_mb_reserved', 'vcpus_reserved'):
            batch_op.drop_column(name)
