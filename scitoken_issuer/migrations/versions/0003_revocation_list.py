"""revocation list instead of a row per issued access token

Access tokens are self-contained JWTs; the issuer now keeps only what was revoked
(docs/revocation.md). Revoked, unexpired token records are carried over as ``jti`` entries, so
every revocation made before the upgrade still holds. Access tokens issued before the upgrade
carry no ``sid`` claim: revoking their refresh family afterwards does not reach them (they expire
within ACCESS_TOKEN_LIFETIME); revoking them one by one, their client or their user does.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 14:00:00.000000

"""
import time

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('revocations',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('value', sa.String(length=255), nullable=False),
    sa.Column('revoked_at', sa.Integer(), nullable=False),
    sa.Column('expires_at', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_revocations'))
    )
    with op.batch_alter_table('revocations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_revocations_expires_at'), ['expires_at'], unique=False)

    op.execute(sa.text(
        "INSERT INTO revocations (kind, value, revoked_at, expires_at) "
        "SELECT 'jti', jti, revoked_at, expires_at FROM issued_tokens "
        "WHERE revoked_at IS NOT NULL AND expires_at > :now").bindparams(now=int(time.time())))

    with op.batch_alter_table('issued_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_issued_tokens_family_id'))
        batch_op.drop_index(batch_op.f('ix_issued_tokens_expires_at'))
        batch_op.drop_index(batch_op.f('ix_issued_tokens_client_id'))
    op.drop_table('issued_tokens')


def downgrade():
    op.create_table('issued_tokens',
    sa.Column('jti', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.String(length=128), nullable=False),
    sa.Column('subject', sa.String(length=255), nullable=False),
    sa.Column('scope', sa.Text(), nullable=False),
    sa.Column('grant_type', sa.String(length=64), nullable=False),
    sa.Column('issued_at', sa.Integer(), nullable=False),
    sa.Column('expires_at', sa.Integer(), nullable=False),
    sa.Column('revoked_at', sa.Integer(), nullable=True),
    sa.Column('family_id', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('jti', name=op.f('pk_issued_tokens'))
    )
    with op.batch_alter_table('issued_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_issued_tokens_client_id'), ['client_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_issued_tokens_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_issued_tokens_family_id'), ['family_id'], unique=False)

    with op.batch_alter_table('revocations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_revocations_expires_at'))
    op.drop_table('revocations')
