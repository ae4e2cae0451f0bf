"""services.binary speaks Nova's names: the compute service is ``nova-compute`` (it was ``stratus-compute``);
the conductor and the scheduler register ``nova-conductor`` and ``nova-scheduler`` rows of their own (issue 28)

Revision ID: ca0a28000001
Revises: f4a0b0000104
Create Date: 2026-12-07 04:00:00.000000

"""
import sqlalchemy as sa
from alembic import op


revision = 'ca0a28000001'
down_revision = 'ima0b0000105'
branch_labels = None
depends_on = None


# "binary" is a reserved word on MariaDB: the dialect quotes the column.
_services = sa.table("services", sa.column("binary", sa.String))


def _rename(old: str, new: str) -> None:
    op.execute(_services.update().where(_services.c.binary == old).values(binary=new))


def upgrade():
    _rename("stratus-compute", "nova-compute")


def downgrade():
    op.execute(_services.delete().where(_services.c.binary.in_(["nova-conductor", "nova-scheduler"])))
    _rename("nova-compute", "stratus-compute")
