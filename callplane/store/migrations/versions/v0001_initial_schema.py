"""Initial schema: tenants, extensions, trunks, DIDs, registrations and CDRs.

Revision ID: 0001
Revises:
Create Date: 2026-11-23 23:30:21.910812
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("domain", sa.String(length=255), nullable=True),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("extension_min_digits", sa.Integer(), nullable=False),
        sa.Column("extension_max_digits", sa.Integer(), nullable=False),
        sa.Column("allow_national", sa.Boolean(), nullable=False),
        sa.Column("allow_mobile", sa.Boolean(), nullable=False),
        sa.Column("allow_international", sa.Boolean(), nullable=False),
        sa.Column("allow_premium", sa.Boolean(), nullable=False),
        sa.Column("allow_emergency", sa.Boolean(), nullable=False),
        sa.Column("external_prefix", sa.String(length=8), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
        sa.UniqueConstraint("domain", name=op.f("uq_tenants_domain")),
        sa.UniqueConstraint("name", name=op.f("uq_tenants_name")),
    )
    op.create_table(
        "extensions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("password", sa.String(length=128), nullable=False),
        sa.Column("display_name", sa.String(length=64), nullable=True),
        sa.Column("ring_timeout_s", sa.Integer(), nullable=False),
        sa.Column("caller_id_number", sa.String(length=32), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_extensions_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_extensions")),
        sa.UniqueConstraint("tenant_id", "number", name=op.f("uq_extensions_tenant_id_number")),
    )
    op.create_index(op.f("ix_extensions_tenant_id"), "extensions", ["tenant_id"], unique=False)

    op.create_table(
        "trunks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("transport", sa.String(length=8), nullable=False),
        sa.Column("auth_mode", sa.String(length=16), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=True),
        sa.Column("password", sa.String(length=128), nullable=True),
        sa.Column("auth_username", sa.String(length=64), nullable=True),
        sa.Column("register_expires_s", sa.Integer(), nullable=False),
        sa.Column("inbound_sources", sa.JSON(), nullable=True),
        sa.Column("caller_id_mode", sa.String(length=16), nullable=False),
        sa.Column("caller_id_number", sa.String(length=32), nullable=True),
        sa.Column("number_format", sa.String(length=16), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_trunks_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trunks")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_trunks_tenant_id_name")),
    )
    op.create_index(op.f("ix_trunks_tenant_id"), "trunks", ["tenant_id"], unique=False)

    op.create_table(
        "cdrs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(length=255), nullable=False),
        sa.Column("from_number", sa.String(length=255), nullable=False),
        sa.Column("to_number", sa.String(length=255), nullable=False),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("trunk_id", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("billable_s", sa.Integer(), nullable=False),
        sa.Column("hangup_cause", sa.Text(), nullable=False),
        sa.Column("hangup_status", sa.Integer(), nullable=True),
        sa.Column("hangup_by", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_cdrs_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["trunk_id"], ["trunks.id"], name=op.f("fk_cdrs_trunk_id_trunks"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cdrs")),
    )
    op.create_index(op.f("ix_cdrs_call_id"), "cdrs", ["call_id"], unique=False)
    op.create_index(
        "ix_cdrs_tenant_id_started_at", "cdrs", ["tenant_id", "started_at"], unique=False
    )

    op.create_table(
        "dids",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("trunk_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("destination_type", sa.String(length=16), nullable=False),
        sa.Column("destination", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_dids_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["trunk_id"], ["trunks.id"], name=op.f("fk_dids_trunk_id_trunks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dids")),
        sa.UniqueConstraint("number", name=op.f("uq_dids_number")),
    )
    op.create_index(op.f("ix_dids_tenant_id"), "dids", ["tenant_id"], unique=False)
    op.create_index(op.f("ix_dids_trunk_id"), "dids", ["trunk_id"], unique=False)

    op.create_table(
        "registrations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("extension_id", sa.Integer(), nullable=False),
        sa.Column("aor", sa.String(length=1024), nullable=False),
        sa.Column("contact", sa.String(length=1024), nullable=False),
        sa.Column("transport", sa.String(length=8), nullable=False),
        sa.Column("source_host", sa.String(length=255), nullable=False),
        sa.Column("source_port", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("call_id", sa.String(length=255), nullable=False),
        sa.Column("cseq", sa.Integer(), nullable=False),
        sa.Column("user_agent", sa.String(length=255), nullable=True),
        sa.Column("instance_id", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["extension_id"],
            ["extensions.id"],
            name=op.f("fk_registrations_extension_id_extensions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_registrations_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registrations")),
        sa.UniqueConstraint(
            "extension_id", "contact", name=op.f("uq_registrations_extension_id_contact")
        ),
    )
    op.create_index(
        op.f("ix_registrations_expires_at"), "registrations", ["expires_at"], unique=False
    )
    op.create_index(
        op.f("ix_registrations_tenant_id"), "registrations", ["tenant_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_registrations_tenant_id"), table_name="registrations")
    op.drop_index(op.f("ix_registrations_expires_at"), table_name="registrations")

    op.drop_table("registrations")
    op.drop_index(op.f("ix_dids_trunk_id"), table_name="dids")
    op.drop_index(op.f("ix_dids_tenant_id"), table_name="dids")

    op.drop_table("dids")
    op.drop_index("ix_cdrs_tenant_id_started_at", table_name="cdrs")
    op.drop_index(op.f("ix_cdrs_call_id"), table_name="cdrs")

    op.drop_table("cdrs")
    op.drop_index(op.f("ix_trunks_tenant_id"), table_name="trunks")

    op.drop_table("trunks")
    op.drop_index(op.f("ix_extensions_tenant_id"), table_name="extensions")

    op.drop_table("extensions")
    op.drop_table("tenants")
