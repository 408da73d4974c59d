"""device codes: the decision the verification page accepted

The page records the user's approval or denial with the device code before it hands the work to
a worker, so a task lost with its worker or with Redis's data is sent again (docs/flows.md,
flow 2). Rows written before the upgrade have no request (their tasks are sent as before).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 05:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('device_codes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('requested', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('requested_at', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('device_codes', schema=None) as batch_op:
        batch_op.drop_column('requested_at')
        batch_op.drop_column('requested')
