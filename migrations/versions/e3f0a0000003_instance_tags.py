"""server tags (issue 7, server actions)

Revision ID: e3f0a0000003
Revises: e6f0a0000006
Create Date: 2026-11-25 15:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


revision = 'e3f0a0000003'
down_revision = 'e6f0a0000006'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('instance_tags',
    sa.Column('instance_uuid', sa.String(length=36), nullable=False),
    sa.Column('tag', sa.String(length=60), nullable=False),
    sa.PrimaryKeyConstraint('instance_uuid', 'tag')
    )


def downgrade():
    op.drop_table('instance_tags')
