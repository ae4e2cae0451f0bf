"""indexes for the scheduler's incremental host-state refresh: compute_nodes.updated_at, services.updated_at,
compute_nodes.service_id (the join from changed services)

Revision ID: e6f0a0000006
Revises: e2f0a0000002
Create Date: 2026-11-25 15:40:00.000000

"""
from alembic import op


revision = 'e6f0a0000006'
down_revision = 'e2f0a0000002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index(op.f('ix_compute_nodes_updated_at'), 'compute_nodes', ['updated_at'], unique=False)
    op.create_index(op.f('ix_services_updated_at'), 'services', ['updated_at'], unique=False)
    op.create_index(op.f('ix_compute_nodes_service_id'), 'compute_nodes', ['service_id'], unique=False)


def downgrade():
    op.drop_index(op.f('ix_compute_nodes_service_id'), table_name='compute_nodes')
    op.drop_index(op.f('ix_services_updated_at'), table_name='services')
    op.drop_index(op.f('ix_compute_nodes_updated_at'), table_name='compute_nodes')
