-- The two day roll-ups (fleet days, 0008/0010; fleet states, 0015) return at once when no tenant
-- has a final day to roll up, which is the case after almost every run, and take their lock only
-- when there is work.
--
-- Every run's end calls both. With nothing to do, each still took its lock, and the fleet-state
-- roll-up then called kbwatch.fleet_states(NULL), which means "up to today": every tenant's states
-- of the day, over every device, joined to an empty list of tenants to roll up. One daemon with
-- 500 tenants of 200 devices, every tenant scanned at one tick (the `tenants` bench): 500 calls
-- spent 1,572 s waiting for and running the fleet-state roll-up, and the tick's last run ended
-- 193 s after the tick. With that roll-up's early return alone, the fleet-day roll-up's waits came
-- next (151 s in 500 calls; the last run ended after 32 s); with both, after 18 s, and 7 of the
-- 1,000 calls took over 20 ms (41 ms at most). Each waiting call held a connection of the pool.
-- The check is made before taking the lock (a roll-up under way is waited for only when there is
-- work) and again after it (the work may have been done meanwhile).
--
-- final_days() read the lock table (pg_locks) once per running run; it now reads it once.

CREATE OR REPLACE FUNCTION kbwatch.final_days()
RETURNS TABLE (tenant_id integer, final date)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH locked AS (
        SELECT l.objid::integer AS tenant_id FROM pg_locks l
        WHERE l.locktype = 'advisory' AND l.granted
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND l.classid = 1801615204 AND l.objsubid = 2
    )
    SELECT t.tenant_id,
           least((now() AT TIME ZONE 'UTC' - interval '1 hour')::date,
                 (SELECT min((r.started_at AT TIME ZONE 'UTC' - interval '1 hour')::date)
                  FROM kbwatch.scan_run r
                  WHERE r.tenant_id = t.tenant_id AND r.status = 'running'
                    AND r.tenant_id IN (SELECT k.tenant_id FROM locked k))) - 1
    FROM kbwatch.tenant t
$$;
REVOKE ALL ON FUNCTION kbwatch.final_days() FROM PUBLIC;

-- The tenants with fleet days to roll up: 0010's bounds, as final_days() has them.
CREATE FUNCTION kbwatch.fleet_days_due()
RETURNS TABLE (tenant_id integer, done date, final date)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT t.tenant_id, coalesce(t.fleet_days_through, '-infinity'), f.final
    FROM kbwatch.final_days() f
    JOIN kbwatch.tenant t ON t.tenant_id = f.tenant_id
    WHERE f.final > coalesce(t.fleet_days_through, '-infinity')
$$;
REVOKE ALL ON FUNCTION kbwatch.fleet_days_due() FROM PUBLIC;

-- Same rows written as 0010's definition when there is work; none, and no lock, when there is not.
CREATE OR REPLACE FUNCTION kbwatch.roll_up_fleet_days() RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    rolled bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM kbwatch.fleet_days_due()) THEN
        RETURN 0;
    END IF;
    PERFORM pg_advisory_xact_lock(1801615204, 0);
    IF NOT EXISTS (SELECT 1 FROM kbwatch.fleet_days_due()) THEN
        RETURN 0;
    END IF;
    WITH todo AS (
        SELECT * FROM kbwatch.fleet_days_due()
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

-- The tenants with fleet states to roll up: each final day after the last one rolled up.
CREATE FUNCTION kbwatch.fleet_states_due()
RETURNS TABLE (tenant_id integer, done date, final date)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT t.tenant_id, t.fleet_states_through, f.final
    FROM kbwatch.final_days() f
    JOIN kbwatch.tenant t ON t.tenant_id = f.tenant_id
    WHERE f.final > t.fleet_states_through
$$;
REVOKE ALL ON FUNCTION kbwatch.fleet_states_due() FROM PUBLIC;

-- Same rows written as 0015's definition when there is work; none, and no lock, when there is not.
CREATE OR REPLACE FUNCTION kbwatch.roll_up_fleet_states() RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    rolled bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM kbwatch.fleet_states_due()) THEN
        RETURN 0;
    END IF;
    PERFORM pg_advisory_xact_lock(1801615204, -3);
    IF NOT EXISTS (SELECT 1 FROM kbwatch.fleet_states_due()) THEN
        RETURN 0;
    END IF;
    WITH todo AS (
        SELECT * FROM kbwatch.fleet_states_due()
    ), inserted AS (
        INSERT INTO kbwatch.fleet_state_day (tenant_id, day, devices_listed, devices_known,
                                             devices_older_than_7_days, devices_missing_any,
                                             missing_kbs_total, cve_addressed_total)
        SELECT s.* FROM kbwatch.fleet_states((SELECT max(final) FROM todo)) s
        JOIN todo b ON b.tenant_id = s.tenant_id AND s.day <= b.final
        RETURNING 1
    ), carried AS (
        INSERT INTO kbwatch.device_state_carry AS c (device_id, scanned_at, missing_kbs,
                                                     cve_addressed_total)
        SELECT DISTINCT ON (s.device_id) s.device_id, s.scanned_at, s.missing_kbs,
               s.cve_addressed_total
        FROM kbwatch.good_scans(
            (SELECT (min(done) + 1)::timestamp AT TIME ZONE 'UTC' FROM todo),
            (SELECT (max(final) + 1)::timestamp AT TIME ZONE 'UTC' FROM todo)) s
        JOIN kbwatch.device d ON d.device_id = s.device_id
        JOIN todo b ON b.tenant_id = d.tenant_id
        WHERE s.scanned_at >= (b.done + 1)::timestamp AT TIME ZONE 'UTC'
          AND s.scanned_at < (b.final + 1)::timestamp AT TIME ZONE 'UTC'
        ORDER BY s.device_id, s.scanned_at DESC
        ON CONFLICT (device_id) DO UPDATE SET
            scanned_at = EXCLUDED.scanned_at, missing_kbs = EXCLUDED.missing_kbs,
            cve_addressed_total = EXCLUDED.cve_addressed_total
        WHERE c.scanned_at < EXCLUDED.scanned_at
        RETURNING 1
    ), marked AS (
        UPDATE kbwatch.tenant t SET fleet_states_through = b.final
        FROM todo b WHERE b.tenant_id = t.tenant_id
        RETURNING 1
    )
    SELECT count(*) INTO rolled FROM inserted;
    RETURN rolled;
END
$$;
REVOKE ALL ON FUNCTION kbwatch.roll_up_fleet_states() FROM PUBLIC;
