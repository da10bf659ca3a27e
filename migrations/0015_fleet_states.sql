-- reporting.fleet_state_daily: for each tenant and UTC day, every device listed at the day's end
-- with its last known state as of then (its last good scan before the day's end, however old),
-- and how old that state is. fleet_daily counts only the devices scanned each day, so with a
-- fleet covered in rotation its trend moves with coverage; this one moves with patching.
--
-- A day's rows cannot change once no run can still write into it (the finality of 0010's
-- roll-up), so final days are rolled up once into fleet_state_day, and each device's last good
-- scan as of the last one is carried in device_state_carry; the days after a tenant's last
-- rolled-up one (today, usually) are computed by the view from the carry and the scans since.
--
-- A device counts as listed at a day's end if it was first listed before it and was not gone
-- then. kbwatch keeps only a device's last gone time: a device gone and listed again counts as
-- listed on the days between.
CREATE TABLE kbwatch.fleet_state_day (
    tenant_id                 integer NOT NULL
        CONSTRAINT fleet_state_day_tenant_fkey REFERENCES kbwatch.tenant,
    day                       date NOT NULL,
    devices_listed            bigint NOT NULL,
    devices_known             bigint NOT NULL,
    devices_older_than_7_days bigint NOT NULL,
    devices_missing_any       bigint NOT NULL,
    missing_kbs_total         bigint,
    cve_addressed_total       numeric,
    CONSTRAINT fleet_state_day_pkey PRIMARY KEY (tenant_id, day)
);

-- Each device's last good scan as of the end of its tenant's fleet_states_through day.
CREATE TABLE kbwatch.device_state_carry (
    device_id           bigint CONSTRAINT device_state_carry_pkey PRIMARY KEY
        CONSTRAINT device_state_carry_device_fkey REFERENCES kbwatch.device ON DELETE CASCADE,
    scanned_at          timestamptz NOT NULL,
    missing_kbs         integer,
    cve_addressed_total bigint
);

-- The last (UTC) day of the tenant in fleet_state_day; a new tenant has nothing before today.
ALTER TABLE kbwatch.tenant
    ADD COLUMN fleet_states_through date NOT NULL
        DEFAULT ((now() AT TIME ZONE 'UTC')::date - 1);

-- Every good scan in [lo, hi), from device_scan rows and packs.
CREATE FUNCTION kbwatch.good_scans(lo timestamptz, hi timestamptz)
RETURNS TABLE (device_id bigint, scanned_at timestamptz, missing_kbs integer,
               cve_addressed_total bigint)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT s.device_id, s.scanned_at, s.missing_kbs, s.cve_addressed_total
    FROM kbwatch.device_scan s
    WHERE s.outcome = 'ok' AND s.scanned_at >= lo AND s.scanned_at < hi
    UNION ALL
    SELECT s.device_id, s.scanned_at, s.missing_kbs, s.cve_addressed_total
    FROM kbwatch.packed_scan s
    WHERE s.scanned_to >= lo AND s.scanned_from < hi
      AND s.scanned_at >= lo AND s.scanned_at < hi
$$;
REVOKE ALL ON FUNCTION kbwatch.good_scans(timestamptz, timestamptz) FROM PUBLIC;

-- The last day of each tenant that no run can still write into: 0010's rule (the day before the
-- one an hour ago, and before the first day of a run still running with its lock held).
CREATE FUNCTION kbwatch.final_days()
RETURNS TABLE (tenant_id integer, final date)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT t.tenant_id,
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
                          AND l.objsubid = 2))) - 1
    FROM kbwatch.tenant t
$$;
REVOKE ALL ON FUNCTION kbwatch.final_days() FROM PUBLIC;

-- Each tenant's days after its fleet_states_through and up to `through` (NULL: today, UTC): the
-- one definition of a day's row, for the roll-up and the view. Each device's states in order (its
-- carried one, then its good scans since) hold from one to the next: a state counts on each day
-- whose end falls after it and not after the next, while the device is listed. Set-based, so that
-- a year is rolled up in one pass. It runs as its owner so that kbwatch_reader, which may read
-- the view, need not read the tables; without JIT, whose compiling took longer (0.5 s) than the
-- whole read of today over 100,000 devices.
CREATE FUNCTION kbwatch.fleet_states(through date)
RETURNS TABLE (tenant_id integer, day date, devices_listed bigint, devices_known bigint,
               devices_older_than_7_days bigint, devices_missing_any bigint,
               missing_kbs_total bigint, cve_addressed_total numeric)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off AS $$
    WITH bounds AS (
        SELECT t.tenant_id, t.fleet_states_through AS done,
               coalesce(through, (now() AT TIME ZONE 'UTC')::date) AS last
        FROM kbwatch.tenant t
        WHERE t.fleet_states_through < coalesce(through, (now() AT TIME ZONE 'UTC')::date)
    ), states AS (
        SELECT b.done, b.last, d.tenant_id, d.first_listed_at, d.gone_at, x.scanned_at,
               x.missing_kbs, x.cve_addressed_total,
               lead(x.scanned_at) OVER (PARTITION BY x.device_id ORDER BY x.scanned_at) AS next_at
        FROM (
            SELECT c.device_id, c.scanned_at, c.missing_kbs, c.cve_addressed_total, true AS carried
            FROM kbwatch.device_state_carry c
            UNION ALL
            -- From the earliest tenant's first day; each tenant's own below.
            SELECT s.device_id, s.scanned_at, s.missing_kbs, s.cve_addressed_total, false
            FROM kbwatch.good_scans(
                (SELECT (min(done) + 1)::timestamp AT TIME ZONE 'UTC' FROM bounds),
                (SELECT (max(last) + 1)::timestamp AT TIME ZONE 'UTC' FROM bounds)) s
        ) x
        JOIN kbwatch.device d ON d.device_id = x.device_id
        JOIN bounds b ON b.tenant_id = d.tenant_id
        WHERE x.carried OR (x.scanned_at >= (b.done + 1)::timestamp AT TIME ZONE 'UTC'
                            AND x.scanned_at < (b.last + 1)::timestamp AT TIME ZONE 'UTC')
    ), held AS (
        SELECT s.tenant_id, g.day, s.scanned_at, s.missing_kbs, s.cve_addressed_total
        FROM states s
        CROSS JOIN LATERAL (
            SELECT g.day::date AS day, (g.day::date + 1)::timestamp AT TIME ZONE 'UTC' AS day_end
            FROM generate_series(
                greatest(s.done + 1, (s.scanned_at AT TIME ZONE 'UTC')::date),
                least(s.last, coalesce((least(s.next_at, s.gone_at) AT TIME ZONE 'UTC')::date,
                                       s.last)),
                interval '1 day') g(day)) g
        WHERE s.scanned_at < g.day_end AND (s.next_at IS NULL OR s.next_at >= g.day_end)
          AND s.first_listed_at < g.day_end AND (s.gone_at IS NULL OR s.gone_at >= g.day_end)
    ), known AS (
        SELECT h.tenant_id, h.day, count(*) AS devices_known,
               count(*) FILTER (WHERE h.scanned_at < (h.day + 1)::timestamp AT TIME ZONE 'UTC'
                                                     - interval '7 days') AS older,
               count(*) FILTER (WHERE h.missing_kbs > 0) AS missing_any,
               sum(h.missing_kbs) AS missing_kbs_total,
               sum(h.cve_addressed_total) AS cve_addressed_total
        FROM held h
        GROUP BY h.tenant_id, h.day
    ), listed AS (
        SELECT b.tenant_id, g.day, count(*) AS devices_listed
        FROM bounds b
        CROSS JOIN LATERAL (
            SELECT g.day::date AS day, (g.day::date + 1)::timestamp AT TIME ZONE 'UTC' AS day_end
            FROM generate_series(b.done + 1, b.last, interval '1 day') g(day)) g
        JOIN kbwatch.device d
          ON d.tenant_id = b.tenant_id AND d.first_listed_at < g.day_end
         AND (d.gone_at IS NULL OR d.gone_at >= g.day_end)
        GROUP BY b.tenant_id, g.day
    )
    SELECT l.tenant_id, l.day, l.devices_listed, coalesce(k.devices_known, 0),
           coalesce(k.older, 0), coalesce(k.missing_any, 0), k.missing_kbs_total,
           k.cve_addressed_total
    FROM listed l
    LEFT JOIN known k ON k.tenant_id = l.tenant_id AND k.day = l.day
$$;
REVOKE ALL ON FUNCTION kbwatch.fleet_states(date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kbwatch.fleet_states(date) TO kbwatch_reader;

-- Rolls up each tenant's final days in one pass: their rows, then the carry moved to the last
-- one's end. Concurrent calls wait for each other. Returns the number of rows rolled up.
CREATE FUNCTION kbwatch.roll_up_fleet_states() RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    rolled bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(1801615204, -3);
    WITH todo AS (
        SELECT t.tenant_id, t.fleet_states_through AS done, f.final
        FROM kbwatch.final_days() f
        JOIN kbwatch.tenant t ON t.tenant_id = f.tenant_id
        WHERE f.final > t.fleet_states_through
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

-- Same columns as fleet_state_day, with the tenant's name.
CREATE VIEW reporting.fleet_state_daily AS
SELECT t.name AS tenant, f.day, f.devices_listed, f.devices_known, f.devices_older_than_7_days,
       f.devices_missing_any, f.missing_kbs_total, f.cve_addressed_total
FROM kbwatch.fleet_state_day f
JOIN kbwatch.tenant t USING (tenant_id)
UNION ALL
SELECT t.name, f.day, f.devices_listed, f.devices_known, f.devices_older_than_7_days,
       f.devices_missing_any, f.missing_kbs_total, f.cve_addressed_total
FROM kbwatch.fleet_states(NULL) f
JOIN kbwatch.tenant t ON t.tenant_id = f.tenant_id;
GRANT SELECT ON reporting.fleet_state_daily TO kbwatch_reader;

-- Every tenant's days since its first listing (or since the last retention cutoff), rolled up.
UPDATE kbwatch.tenant t
SET fleet_states_through = greatest(
        (SELECT min(d.first_listed_at AT TIME ZONE 'UTC')::date FROM kbwatch.device d
         WHERE d.tenant_id = t.tenant_id),
        (SELECT max(p.cutoff AT TIME ZONE 'UTC')::date FROM kbwatch.retention_pass p)) - 1
WHERE EXISTS (SELECT 1 FROM kbwatch.device d WHERE d.tenant_id = t.tenant_id);
SELECT kbwatch.roll_up_fleet_states();
