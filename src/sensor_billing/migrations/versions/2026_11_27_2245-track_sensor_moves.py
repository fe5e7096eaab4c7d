"""track_sensor_moves: a sensor moved to another organization moves its status history too

Written by hand (autogenerate does not see triggers). The trigger that keeps
sensor_status_periods fired only on status changes, so a sensor moved to another
organization stayed in its old organization's open period: counted as the old owner's active
sensor for as long as it lived, never as the new owner's. A move now closes the open period
and opens one under the new organization, like a status change. Existing periods are left as
they are (no past move can be dated).

Revision ID: 3d8a6f2c1e07
Revises: 7b3e51d09a2c
Create Date: 2026-11-27 22:45:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "3d8a6f2c1e07"
down_revision: str | None = "7b3e51d09a2c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# A status change or a move closes the open period and opens a new one at status_changed_at,
# or at now() when the writer did not set it. Writers that only touch other columns do not
# fire it.
TRACK_SENSOR_STATUS = """
CREATE OR REPLACE FUNCTION sensors_track_status() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed_at timestamptz;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO sensor_status_periods (sensor_id, organization_id, status, valid_from)
        VALUES (NEW.id, NEW.organization_id, NEW.status, NEW.status_changed_at);
    ELSIF NEW.status IS DISTINCT FROM OLD.status
       OR NEW.organization_id IS DISTINCT FROM OLD.organization_id THEN
        changed_at := CASE WHEN NEW.status_changed_at IS DISTINCT FROM OLD.status_changed_at
                           THEN NEW.status_changed_at ELSE now() END;
        UPDATE sensor_status_periods SET valid_to = changed_at
         WHERE sensor_id = NEW.id AND valid_to IS NULL;
        INSERT INTO sensor_status_periods (sensor_id, organization_id, status, valid_from)
        VALUES (NEW.id, NEW.organization_id, NEW.status, changed_at);
    END IF;
    RETURN NULL;
END;
$$
"""

PREVIOUS_TRACK_SENSOR_STATUS = """
CREATE OR REPLACE FUNCTION sensors_track_status() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed_at timestamptz;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO sensor_status_periods (sensor_id, organization_id, status, valid_from)
        VALUES (NEW.id, NEW.organization_id, NEW.status, NEW.status_changed_at);
    ELSIF NEW.status IS DISTINCT FROM OLD.status THEN
        changed_at := CASE WHEN NEW.status_changed_at IS DISTINCT FROM OLD.status_changed_at
                           THEN NEW.status_changed_at ELSE now() END;
        UPDATE sensor_status_periods SET valid_to = changed_at
         WHERE sensor_id = NEW.id AND valid_to IS NULL;
        INSERT INTO sensor_status_periods (sensor_id, organization_id, status, valid_from)
        VALUES (NEW.id, NEW.organization_id, NEW.status, changed_at);
    END IF;
    RETURN NULL;
END;
$$
"""


def upgrade() -> None:
    op.execute(TRACK_SENSOR_STATUS)
    op.execute("DROP TRIGGER sensors_track_status ON sensors")
    op.execute(
        "CREATE TRIGGER sensors_track_status AFTER INSERT OR UPDATE OF status, organization_id"
        " ON sensors FOR EACH ROW EXECUTE FUNCTION sensors_track_status()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER sensors_track_status ON sensors")
    op.execute(PREVIOUS_TRACK_SENSOR_STATUS)
    op.execute(
        "CREATE TRIGGER sensors_track_status AFTER INSERT OR UPDATE OF status ON sensors"
        " FOR EACH ROW EXECUTE FUNCTION sensors_track_status()"
    )
