-- The roll-up of migration 0008, but for two things a review found:
-- - A run left `running` by a process that died holds back its tenant's days until the tenant's
--   next scan marks it interrupted; a tenant removed from the configuration is never scanned
--   again, and its orphan held the roll-up back for good, so reporting.fleet_daily computed an
--   ever longer range live. A run counts as running here only while some session holds its
--   tenant's lock (every scan holds it until its run is closed).
-- - Its own lock used the class 0x6b617764, not kbwatch's 0x6b627764 ("kbwd") as its comment said.
--   It now uses kbwatch's class with key 0 (tenant ids start at 1).
-- And the roll-up is kbwatch's own: PUBLIC may no longer call it.
CREATE OR REPLACE FUNCTION kbwatch.roll_up_fleet_days() RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    rolled bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(1801615204, 0);
    WITH bounds AS (
        SELECT t.tenant_id, coalesce(t.fleet_days_through, '-infinity') AS done,
               least((now() AT TIME ZONE 'UTC' - interval '1 hour')::date,
                     (SELECT min((r.started_at AT TIME ZONE 'UTC' - interval '1 hour')::date)
                      FROM kbwatch.scan_run r
                      WHERE r.tenant_id = t.tenant_id AND r.status = 'running'
                        AND EXISTS (
                            SELECT 1 FROM pg_locks l
                            WHERE l.locktype = 'advisory' AND l.granted
                              AND l.database = (SELECT oid FROM pg_database
                                                WHERE datname = current_database())
                              AND l.classid = 1801615204 AND l.objid = r.tenant_id
                              AND l.objsubid = 2))) - 1 AS final
        FROM kbwatch.tenant t
    ), todo AS (
        SELECT * FROM bounds WHERE final > done
    ), inserted AS (
        INSERT INTO kbwatch.fleet_day (tenant_id, day, devices_reporting, devices_missing_any,
                                       missing_kbs_total, cve_addressed_total)
        SELECT f.tenant_id, f.day, f.devices_reporting, f.devices_missing_any,
               f.missing_kbs_total, f.cve_addressed_total
        FROM kbwatch.fleet_days((SELECT min(done) FROM todo), (SELECT max(final) FROM todo)) f
        JOIN todo b ON b.tenant_id = f.tenant_id AND f.day > b.done AND f.day <= b.final
        RETURNING 1
    ), marked AS (
        UPDATE kbwatch.tenant t SET fleet_days_through = b.final
        FROM todo b WHERE b.tenant_id = t.tenant_id
        RETURNING 1
    )
    SELECT count(*) INTO rolled FROM inserted;
    RETURN rolled;
END
$$;
REVOKE ALL ON FUNCTION kbwatch.roll_up_fleet_days() FROM PUBLIC;

-- A tenant registered before this had nothing rolled up until its first run ended; from now on
-- a new tenant starts with nothing to roll up (ensure_tenant sets the day before today).
SELECT kbwatch.roll_up_fleet_days();
