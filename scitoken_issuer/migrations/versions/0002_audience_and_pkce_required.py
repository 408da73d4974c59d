"""refresh family audience, device audience, client pkce_required

The audience a client narrowed is kept by its refresh family and its device authorization;
``pkce_required`` is the administrator's per-client PKCE flag (docs/tokens.md). Existing clients
keep PKCE required.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 13:31:27.614779

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pkce_required', sa.Boolean(), server_default=sa.true(), nullable=False))

    with op.batch_alter_table('device_codes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('audience', sa.Text(), nullable=True))

    with op.batch_alter_table('refresh_families', schema=None) as batch_op:
        batch_op.add_column(sa.Column('audience', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('refreshed_at', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('refresh_families', schema=None) as batch_op:
        batch_op.drop_column('refreshed_at')
        batch_op.drop_column('audience')

    with op.batch_alter_table('device_codes', schema=None) as batch_op:
        batch_op.drop_column('audience')

    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.drop_column('pkce_required')
