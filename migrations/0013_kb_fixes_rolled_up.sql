-- reporting.kb_remediation, same columns and meaning, without reading every fixed interval.
--
-- Over a year of 100,000 devices the view read the 3.6 M fixed intervals, joined each to its
-- device for the tenant and sorted them all (spilling to disk) for the median and the count of
-- distinct devices: 4 to 8 s, and the dashboard's "Remediation times" panel with it. A fix is final
-- once written, so each tenant and KB's fixes are rolled up into kbwatch.kb_fix: how many devices
-- fixed it, the days each fix took (unordered), and their median. The statement that closes an
-- interval as a fix also stages the fix in kbwatch.kb_fix_new (the same transaction: a fix is
-- staged exactly when it is written); kbwatch.roll_up_kb_fixes() moves the staged fixes into
-- kb_fix after every run, and the view adds those not moved yet.
--
-- A fix's days are the definition of migration 0009, (closed_at - opened_at) in days, as the float8
-- that percentile_cont sorted there.

CREATE TABLE kbwatch.kb_fix (
    tenant_id          integer NOT NULL CONSTRAINT kb_fix_tenant_fkey REFERENCES kbwatch.tenant,
    kb_id              text NOT NULL,
    -- Distinct devices with a fix of the KB.
    devices_remediated bigint NOT NULL,
    -- The days of every fix, in no order (a device that fixed the KB twice counts twice here).
    days               float8[] NOT NULL,
    median_days        float8,
    CONSTRAINT kb_fix_pkey PRIMARY KEY (tenant_id, kb_id)
);

-- Fixes written since the last roll-up: a run's at most, usually.
CREATE TABLE kbwatch.kb_fix_new (
    tenant_id          integer NOT NULL,
    device_id          bigint NOT NULL,
    kb_id              text NOT NULL,
    opened_scan_run_id bigint NOT NULL,
    days               float8
);

-- The staged fixes per tenant and KB: the days they took, and how many of their devices had no
-- fix of that KB rolled up before (each device once).
CREATE FUNCTION kbwatch.kb_fixes_staged()
RETURNS TABLE (tenant_id integer, kb_id text, new_devices bigint, days float8[])
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT n.tenant_id, n.kb_id,
           count(DISTINCT n.device_id) FILTER (WHERE NOT EXISTS (
               SELECT 1 FROM kbwatch.missing_kb r
               WHERE r.device_id = n.device_id AND r.kb_id = n.kb_id AND r.fixed
                 AND NOT EXISTS (
                     SELECT 1 FROM kbwatch.kb_fix_new s
                     WHERE s.device_id = r.device_id AND s.kb_id = r.kb_id
                       AND s.opened_scan_run_id = r.opened_scan_run_id))),
           array_agg(n.days)
    FROM kbwatch.kb_fix_new n
    GROUP BY n.tenant_id, n.kb_id
$$;
REVOKE ALL ON FUNCTION kbwatch.kb_fixes_staged() FROM PUBLIC;

-- Each tenant and KB's fixes as the view shows them: rolled up, plus those staged since.
CREATE FUNCTION kbwatch.kb_fixes()
RETURNS TABLE (tenant_id integer, kb_id text, devices_remediated bigint,
               median_days_to_remediate float8)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(f.tenant_id, s.tenant_id), coalesce(f.kb_id, s.kb_id),
           coalesce(f.devices_remediated, 0) + coalesce(s.new_devices, 0),
           CASE WHEN s.kb_id IS NULL THEN f.median_days
                ELSE (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x)
                      FROM unnest(coalesce(f.days, '{}') || s.days) x) END
    FROM kbwatch.kb_fix f
    FULL JOIN kbwatch.kb_fixes_staged() s ON s.tenant_id = f.tenant_id AND s.kb_id = f.kb_id
$$;
REVOKE ALL ON FUNCTION kbwatch.kb_fixes() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kbwatch.kb_fixes() TO kbwatch_reader;

-- Moves the staged fixes into kb_fix, in one statement (one snapshot: exactly the staged rows it
-- reads are deleted; fixes committed meanwhile stay staged for the next call). Concurrent calls
-- (tenants whose runs end together, replicas) wait for each other. Returns the rows moved.
CREATE FUNCTION kbwatch.roll_up_kb_fixes() RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    moved bigint;
BEGIN
    -- kbwatch's class: key 0 is the fleet-day roll-up, -1 retention, ids from 1 the tenants.
    PERFORM pg_advisory_xact_lock(1801615204, -2);
    WITH staged AS (
        SELECT * FROM kbwatch.kb_fixes_staged()
    ), merged AS (
        INSERT INTO kbwatch.kb_fix AS f (tenant_id, kb_id, devices_remediated, days, median_days)
        SELECT s.tenant_id, s.kb_id, s.new_devices, s.days,
               (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FROM unnest(s.days) x)
        FROM staged s
        ON CONFLICT (tenant_id, kb_id) DO UPDATE SET
            devices_remediated = f.devices_remediated + EXCLUDED.devices_remediated,
            days = f.days || EXCLUDED.days,
            median_days = (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x)
                           FROM unnest(f.days || EXCLUDED.days) x)
    ), deleted AS (
        DELETE FROM kbwatch.kb_fix_new RETURNING 1
    )
    SELECT count(*) INTO moved FROM deleted;
    RETURN moved;
END
$$;
REVOKE ALL ON FUNCTION kbwatch.roll_up_kb_fixes() FROM PUBLIC;

-- Rolls every fix up again from the intervals: here, and after retention dropped intervals. The
-- staging table is locked against writers meanwhile (a batch that closes a fix waits), so that no
-- fix is both staged and rolled up.
CREATE FUNCTION kbwatch.rebuild_kb_fixes() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1801615204, -2);
    LOCK TABLE kbwatch.kb_fix_new IN EXCLUSIVE MODE;
    DELETE FROM kbwatch.kb_fix_new;
    DELETE FROM kbwatch.kb_fix;
    INSERT INTO kbwatch.kb_fix (tenant_id, kb_id, devices_remediated, days, median_days)
    SELECT d.tenant_id, m.kb_id, count(DISTINCT m.device_id), array_agg(x.days),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY x.days)
    FROM kbwatch.missing_kb m
    JOIN kbwatch.device d ON d.device_id = m.device_id
    CROSS JOIN LATERAL (
        SELECT (extract(epoch FROM (m.closed_at - m.opened_at)) / 86400.0)::float8 AS days) x
    WHERE m.fixed
    GROUP BY d.tenant_id, m.kb_id;
END
$$;
REVOKE ALL ON FUNCTION kbwatch.rebuild_kb_fixes() FROM PUBLIC;

CREATE OR REPLACE VIEW reporting.kb_remediation AS
WITH open_now AS (
    SELECT d.tenant_id, m.kb_id, count(*) AS devices_missing_now
    FROM kbwatch.missing_kb m
    JOIN kbwatch.device d ON d.device_id = m.device_id
    WHERE m.closed_scan_run_id IS NULL AND d.gone_at IS NULL
    GROUP BY d.tenant_id, m.kb_id
), fixed_agg AS (
    SELECT * FROM kbwatch.kb_fixes()
)
SELECT t.name AS tenant, k.kb_id, k.name AS kb_name,
       coalesce(o.devices_missing_now, 0) AS devices_missing_now,
       coalesce(f.devices_remediated, 0) AS devices_remediated,
       f.median_days_to_remediate
FROM (SELECT tenant_id, kb_id FROM open_now UNION SELECT tenant_id, kb_id FROM fixed_agg) tk
JOIN kbwatch.tenant t ON t.tenant_id = tk.tenant_id
JOIN kbwatch.kb k ON k.kb_id = tk.kb_id
LEFT JOIN open_now o ON o.tenant_id = tk.tenant_id AND o.kb_id = tk.kb_id
LEFT JOIN fixed_agg f ON f.tenant_id = tk.tenant_id AND f.kb_id = tk.kb_id;

SELECT kbwatch.rebuild_kb_fixes();
