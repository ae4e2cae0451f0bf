"""image_members (sharing an image with other projects) and image_tasks (interoperable import), as Glance's

Revision ID: ima0b0000105
Revises: f4a0b0000104
Create Date: 2026-12-07 03:45:00.000000

"""
import sqlalchemy as sa
from alembic import op


revision = 'ima0b0000105'
down_revision = 'ida0b0000105'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'image_members',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('image_id', sa.String(length=36), nullable=False),
        sa.Column('member', sa.String(length=255), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['image_id'], ['images.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('image_id', 'member', name='uq_image_members_image_member'),
    )
    op.create_index('ix_image_members_image_id', 'image_members', ['image_id'])
    op.create_index('ix_image_members_member', 'image_members', ['member'])
    op.create_table(
        'image_tasks',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('type', sa.String(length=30), nullable=False),
        sa.Column('status', sa.String(length=30), nullable=False),
        sa.Column('owner', sa.String(length=255), nullable=True),
        sa.Column('image_id', sa.String(length=36), nullable=True),
        sa.Column('user_id', sa.String(length=64), nullable=True),
        sa.Column('request_id', sa.String(length=64), nullable=True),
        sa.Column('input', sa.JSON(), nullable=True),
        sa.Column('result', sa.JSON(), nullable=True),
        sa.Column('message', sa.Text(), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_image_tasks_owner', 'image_tasks', ['owner'])
    op.create_index('ix_image_tasks_image_id', 'image_tasks', ['image_id'])


def downgrade():
    op.drop_index('ix_image_tasks_image_id', table_name='image_tasks')
    op.drop_index('ix_image_tasks_owner', table_name='image_tasks')
    op.drop_table('image_tasks')
    op.drop_index('ix_image_members_member', table_name='image_members')
    op.drop_index('ix_image_members_image_id', table_name='image_members')
    op.drop_table('image_members')
