"""Identity: the service catalog (regions, catalog_services, endpoints), application credentials and their roles
(tokens.app_cred_id), groups with their members and role assignments (issues 32 and 29.3)

Revision ID: ida0b0000105
Revises: f4a0b0000104
Create Date: 2026-12-07 03:40:00.000000

"""
import sqlalchemy as sa
from alembic import op


revision = 'ida0b0000105'
down_revision = 'f4a0b0000104'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('regions',
    sa.Column('id', sa.String(length=255), nullable=False),
    sa.Column('description', sa.String(length=255), nullable=False),
    sa.Column('parent_region_id', sa.String(length=255), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('catalog_services',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('type', sa.String(length=255), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('endpoints',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('service_id', sa.String(length=64), nullable=False),
    sa.Column('interface', sa.String(length=8), nullable=False),
    sa.Column('region_id', sa.String(length=255), nullable=True),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['region_id'], ['regions.id'], ),
    sa.ForeignKeyConstraint(['service_id'], ['catalog_services.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('endpoints', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_endpoints_service_id'), ['service_id'], unique=False)

    op.create_table('identity_groups',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('domain_id', sa.String(length=64), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('domain_id', 'name', name='uq_identity_groups_domain_name')
    )
    op.create_table('group_memberships',
    sa.Column('group_id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['identity_groups.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('group_id', 'user_id')
    )
    with op.batch_alter_table('group_memberships', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_group_memberships_user_id'), ['user_id'], unique=False)
    op.create_table('group_role_assignments',
    sa.Column('group_id', sa.String(length=64), nullable=False),
    sa.Column('project_id', sa.String(length=64), nullable=False),
    sa.Column('role_id', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['identity_groups.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['role_id'], ['roles.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('group_id', 'project_id', 'role_id')
    )

    op.create_table('application_credentials',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('project_id', sa.String(length=64), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('secret_hash', sa.String(length=255), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=True),
    sa.Column('unrestricted', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('user_id', 'name', name='uq_application_credentials_user_name')
    )
    op.create_table('application_credential_roles',
    sa.Column('app_cred_id', sa.String(length=64), nullable=False),
    sa.Column('role_id', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['app_cred_id'], ['application_credentials.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['role_id'], ['roles.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('app_cred_id', 'role_id')
    )
    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('app_cred_id', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_tokens_app_cred_id'), ['app_cred_id'], unique=False)
        batch_op.create_foreign_key('fk_tokens_app_cred_id', 'application_credentials', ['app_cred_id'], ['id'],
                                    ondelete='CASCADE')


def downgrade():
    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.drop_constraint('fk_tokens_app_cred_id', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_tokens_app_cred_id'))
        batch_op.drop_column('app_cred_id')
    op.drop_table('application_credential_roles')
    op.drop_table('application_credentials')
    op.drop_table('group_role_assignments')
    with op.batch_alter_table('group_memberships', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_group_memberships_user_id'))
    op.drop_table('group_memberships')
    op.drop_table('identity_groups')
    with op.batch_alter_table('endpoints', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_endpoints_service_id'))
    op.drop_table('endpoints')
    op.drop_table('catalog_services')
    op.drop_table('regions')
