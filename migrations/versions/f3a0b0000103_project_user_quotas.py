"""per-user quotas: project_user_quotas (limits) and quota_user_usages (counters, backfilled from live rows)

Revision ID: f3a0b0000103
Revises: e8f0a0000008
Create Date: 2026-11-26 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op


revision = 'f3a0b0000103'
down_revision = 'f2a0b0000102'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('project_user_quotas',
    sa.Column('project_id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('resource', sa.String(length=64), nullable=False),
    sa.Column('hard_limit', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('project_id', 'user_id', 'resource')
    )
    op.create_table('quota_user_usages',
    sa.Column('project_id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('instances', sa.Integer(), nullable=False, server_default='0'),
    sa.Column('cores', sa.Integer(), nullable=False, server_default='0'),
    sa.Column('ram', sa.Integer(), nullable=False, server_default='0'),
    sa.Column('server_groups', sa.Integer(), nullable=False, server_default='0'),
    sa.PrimaryKeyConstraint('project_id', 'user_id')
    )
    # The counters of existing users: their live instances and their server groups.
    op.execute(
        "INSERT INTO quota_user_usages (project_id, user_id, instances, cores, ram, server_groups) "
        "SELECT project_id, user_id, SUM(n), SUM(c), SUM(r), SUM(g) FROM ("
        " SELECT project_id, user_id, COUNT(*) AS n, SUM(vcpus) AS c, SUM(memory_mb) AS r, 0 AS g"
        " FROM instances WHERE deleted = 0 GROUP BY project_id, user_id"
        " UNION ALL"
        " SELECT project_id, user_id, 0, 0, 0, COUNT(*) FROM instance_groups GROUP BY project_id, user_id"
        ") AS counted GROUP BY project_id, user_id")


def downgrade():
    op.drop_table('quota_user_usages')
    op.drop_table('project_user_quotas')
