-- reporting.fleet_daily, same columns and meaning, without reading every device_scan row.
--
-- Over a year of 100,000 devices scanned daily the view read all 36.5 M scan rows: 21.6 s. A day's
-- totals cannot change once no run that could still write into that day is running, so such days
-- are rolled up once into kbwatch.fleet_day, and the view reads them from there. The days after a
-- tenant's last rolled-up one (today, usually) are computed from device_scan as before, found
-- through a block-range index on scanned_at (rows are appended in time order).

CREATE TABLE kbwatch.fleet_day (
    tenant_id           integer NOT NULL CONSTRAINT fleet_day_tenant_fkey REFERENCES kbwatch.tenant,
    day                 date NOT NULL,
    devices_reporting   bigint NOT NULL,
    devices_missing_any bigint NOT NULL,
    missing_kbs_total   bigint,
    cve_addressed_total numeric,
    CONSTRAINT fleet_day_pkey PRIMARY KEY (tenant_id, day)
);

-- The last (UTC) day of the tenant whose totals are in fleet_day; NULL: none yet.
ALTER TABLE kbwatch.tenant ADD COLUMN fleet_days_through date;

CREATE INDEX device_scan_scanned_at_idx ON kbwatch.device_scan USING brin (scanned_at)
    WITH (pages_per_range = 32);

-- Each tenant's totals of the days after `after` and up to `through` (NULL: no end): each device
-- once a day, with its last good scan of that day (the definition of migration 0003, for a range
-- of days). The one definition of a day's totals, for the roll-up and the view; it runs as its
-- owner so that kbwatch_reader, which may read the view, need not read the tables.
CREATE FUNCTION kbwatch.fleet_days(after date, through date)
RETURNS TABLE (tenant_id integer, day date, devices_reporting bigint, devices_missing_any bigint,
               missing_kbs_total bigint, cve_addressed_total numeric)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT d.tenant_id, x.day, count(*), count(*) FILTER (WHERE x.missing_kbs > 0),
           sum(x.missing_kbs), sum(x.cve_addressed_total)
    FROM (
        SELECT DISTINCT ON (s.device_id, (s.scanned_at AT TIME ZONE 'UTC')::date)
               s.device_id, (s.scanned_at AT TIME ZONE 'UTC')::date AS day, s.missing_kbs,
               s.cve_addressed_total
        FROM kbwatch.device_scan s
        WHERE s.outcome = 'ok'
          AND s.scanned_at >= ((after + 1)::timestamp AT TIME ZONE 'UTC')
          AND s.scanned_at < coalesce((through + 1)::timestamp AT TIME ZONE 'UTC', 'infinity')
        ORDER BY s.device_id, (s.scanned_at AT TIME ZONE 'UTC')::date, s.scanned_at DESC
    ) x
    JOIN kbwatch.device d ON d.device_id = x.device_id
    GROUP BY d.tenant_id, x.day
$$;
REVOKE ALL ON FUNCTION kbwatch.fleet_days(date, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kbwatch.fleet_days(date, date) TO kbwatch_reader;

-- Rolls up each tenant's days that are final: before today (UTC) and before the day any of its
-- running runs started, with an hour's margin for clocks that differ between kbwatch's hosts (which
-- stamp scanned_at) and the database (which stamps started_at). Concurrent calls (replicas) wait
-- for each other. Returns the number of days rolled up.
CREATE FUNCTION kbwatch.roll_up_fleet_days() RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    rolled bigint;
BEGIN
    -- "kbwd", 0: the tenant locks use the same class with tenant ids from 1.
    PERFORM pg_advisory_xact_lock(1801549668, 0);
    WITH bounds AS (
        SELECT t.tenant_id, coalesce(t.fleet_days_through, '-infinity') AS done,
               least((now() AT TIME ZONE 'UTC' - interval '1 hour')::date,
                     (SELECT min((r.started_at AT TIME ZONE 'UTC' - interval '1 hour')::date)
                      FROM kbwatch.scan_run r
                      WHERE r.tenant_id = t.tenant_id AND r.status = 'running')) - 1 AS final
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

CREATE OR REPLACE VIEW reporting.fleet_daily AS
SELECT t.name AS tenant, f.day, f.devices_reporting, f.devices_missing_any, f.missing_kbs_total,
       f.cve_addressed_total
FROM kbwatch.fleet_day f
JOIN kbwatch.tenant t USING (tenant_id)
UNION ALL
SELECT t.name, f.day, f.devices_reporting, f.devices_missing_any, f.missing_kbs_total,
       f.cve_addressed_total
FROM kbwatch.fleet_days(
         (SELECT coalesce(min(coalesce(fleet_days_through, '-infinity')), 'infinity')
          FROM kbwatch.tenant),
         NULL) f
JOIN kbwatch.tenant t ON t.tenant_id = f.tenant_id
WHERE f.day > coalesce(t.fleet_days_through, '-infinity');

-- The days of every tenant rolled up as they stand.
SELECT kbwatch.roll_up_fleet_days();
