"""authorization code: what its exchange issued

A code used a second time revokes the tokens its first exchange gave (RFC 6749 §4.1.2): the
exchange records the access token's ``jti`` and expiry and the refresh family with the code.
Codes exchanged before the upgrade have none recorded (they expire within AUTH_CODE_LIFETIME).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 03:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('authorization_codes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('issued_jti', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('issued_expires_at', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('issued_family_id', sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table('authorization_codes', schema=None) as batch_op:
        batch_op.drop_column('issued_family_id')
        batch_op.drop_column('issued_expires_at')
        batch_op.drop_column('issued_jti')
