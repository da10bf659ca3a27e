-- The year row's history and its generator, in a schema of their own (`bench_year`: not counted in
-- the size of the `kbwatch` schema).
--
-- The history is a pure function of (device d = 1..n, day k = 0..days-1):
--   * every device is listed once a day, its lastSeen a little before that day's scan (`listing`);
--   * month m's three KBs (j = 0..2) appear on every device on day 30·m, and device d installs
--     KB (m, j) `fix_days(d, m, j)` days later, between 2 and 40 (`missing`).
-- `listing` and `missing` are what the API would answer; the write-path replay feeds them to
-- kbwatch's store. `generate_days` writes the same days straight into kbwatch's tables, set-based.

CREATE SCHEMA bench_year;

-- Days until device d installs KB (m, j): 2 to 40, spread by a hash.
CREATE FUNCTION bench_year.fix_days(d int, m int, j int) RETURNS int
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN 2 + (hashint8(d::int8 * 64 + m * 3 + j) & 2147483647) % 39;

CREATE FUNCTION bench_year.kb_id(m int, j int) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN (5030000 + 10 * m + j)::text;

-- What the API says of a KB besides its id and cveAddressed.
CREATE FUNCTION bench_year.kb_name(kb_id text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN 'Cumulative update KB' || kb_id;

CREATE FUNCTION bench_year.kb_url(kb_id text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN 'https://support.microsoft.com/help/' || kb_id;

CREATE FUNCTION bench_year.kb_products() RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN '{windows_11}'::text[];

CREATE FUNCTION bench_year.cve(m int, j int) RETURNS int
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN 1 + ((m * 3 + j) * 17) % 45;

-- 1 when device d misses KB (m, j) on day k (a month before 0 does not exist).
CREATE FUNCTION bench_year.misses(d int, m int, j int, k int) RETURNS int
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN m >= 0 AND 30 * m <= k AND k < 30 * m + bench_year.fix_days(d, m, j)
                THEN 1 ELSE 0 END;

-- Day k's cron tick, when its run starts.
CREATE FUNCTION bench_year.tick(t0 timestamptz, k int) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN t0 + k * interval '1 day';

-- When device d is requested on day k: a minute of listing, then 100 devices a minute (the
-- default quota), in device order.
CREATE FUNCTION bench_year.scanned_at(t0 timestamptz, k int, d int) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN t0 + k * interval '1 day' + interval '60 s' + (d - 1) * interval '600 ms';

CREATE FUNCTION bench_year.machine_id(d int) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN md5('bench-year-' || d) || left(md5('device-' || d), 8);

-- The API's timestamp format.
CREATE FUNCTION bench_year.api_time(t timestamptz) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');

-- Day k's listing: every device, with the fields kbwatch types and the minimal entity it keeps.
CREATE FUNCTION bench_year.listing(n int, t0 timestamptz, k int)
    RETURNS TABLE (d int, machine_id text, computer_dns_name text, os_platform text,
                   os_build int8, health_status text, onboarding_status text, rbac_group_id text,
                   rbac_group_name text, first_seen timestamptz, last_seen timestamptz, raw text)
    LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT x.d, x.machine_id, x.dns, x.platform, x.build, 'Active', 'Onboarded', x.rbac_id,
           x.rbac_name, x.first_seen, x.last_seen,
           format('{"id":"%s","computerDnsName":"%s","firstSeen":"%s","lastSeen":"%s",'
                  '"osPlatform":"%s","osBuild":%s,"healthStatus":"Active",'
                  '"onboardingStatus":"Onboarded","rbacGroupId":%s,"rbacGroupName":"%s",'
                  '"machineTags":[],"isPotentialDuplication":false}',
                  x.machine_id, x.dns, bench_year.api_time(x.first_seen),
                  bench_year.api_time(x.last_seen), x.platform, x.build, x.rbac_id, x.rbac_name)
    FROM (
        SELECT g.d, bench_year.machine_id(g.d) AS machine_id,
               'ws-' || lpad(g.d::text, 6, '0') || '.corp.contoso.test' AS dns,
               CASE WHEN g.d % 5 = 0 THEN 'Windows10' ELSE 'Windows11' END AS platform,
               CASE WHEN g.d % 5 = 0 THEN 19045 ELSE 22631 END::int8 AS build,
               (g.d % 20)::text AS rbac_id, 'Site ' || (g.d % 20) AS rbac_name,
               t0 - interval '400 days' + g.d * interval '1 s' AS first_seen,
               bench_year.tick(t0, k) - (g.d % 3600) * interval '1 s' AS last_seen
        FROM generate_series(1, n) g(d)
    ) x
    ORDER BY x.d;
END;

-- What the API reports missing on device d at day k, machineMissedOn being the number of devices
-- missing that KB that day (a fleet-wide count).
CREATE FUNCTION bench_year.missing(n int, k int)
    RETURNS TABLE (d int, kb_id text, name text, url text, products_names text[],
                   cve_addressed int, machine_missed_on int8)
    LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT x.d, bench_year.kb_id(x.m, x.j), bench_year.kb_name(bench_year.kb_id(x.m, x.j)),
           bench_year.kb_url(bench_year.kb_id(x.m, x.j)), bench_year.kb_products(),
           bench_year.cve(x.m, x.j), count(*) OVER (PARTITION BY x.m, x.j)
    FROM (
        SELECT g.d, m.m, j.j
        FROM generate_series(1, n) g(d), generate_series(greatest(0, k / 30 - 1), k / 30) m(m),
             generate_series(0, 2) j(j)
        WHERE bench_year.misses(g.d, m.m, j.j, k) = 1
    ) x
    ORDER BY x.d, x.m, x.j;
END;

-- The runs and devices written so far, by day and by d.
CREATE TABLE bench_year.run (k int PRIMARY KEY, scan_run_id bigint NOT NULL);
CREATE TABLE bench_year.device (d int PRIMARY KEY, device_id bigint NOT NULL);

-- Writes days c0 .. c1-1 of the history of n devices into kbwatch's tables as kbwatch's scans of
-- those days leave them: one completed scheduled run a day; the devices inserted by the first
-- listing and updated to the chunk's last listing; one ok device_scan row per device and day with
-- its counts (packed once its run has ended), and each device's last scan; an interval opened at the run of the day a KB appears
-- and closed (an UPDATE, as kbwatch does) at the run of the day it is gone; the KBs reported, with
-- what the API said of them the last time. Where kbwatch writes every day (the listing's update, the KB upsert), one write
-- per chunk leaves the same rows.
CREATE FUNCTION bench_year.generate_days(tenant int, n int, t0 timestamptz, c0 int, c1 int)
    RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO kbwatch.scan_run (tenant_id, trigger, scheduled_for, runner, started_at,
                                  finished_at, status, devices_listed, devices_planned,
                                  devices_ok, api_calls, throttled, effective_per_minute)
    SELECT tenant, 'schedule', bench_year.tick(t0, k), 'bench-year:1', bench_year.tick(t0, k),
           bench_year.scanned_at(t0, k, n) + interval '1 s', 'completed', n, n, n,
           n + (n + 9999) / 10000, 0, 100
    FROM generate_series(c0, c1 - 1) k
    ORDER BY k;
    INSERT INTO bench_year.run (k, scan_run_id)
    SELECT k, r.scan_run_id FROM generate_series(c0, c1 - 1) k
    JOIN kbwatch.scan_run r ON r.tenant_id = tenant AND r.scheduled_for = bench_year.tick(t0, k);

    IF c0 = 0 THEN
        INSERT INTO kbwatch.device (tenant_id, machine_id, id_valid, computer_dns_name,
            os_platform, os_version, os_build, health_status, onboarding_status, rbac_group_id,
            rbac_group_name, machine_tags, first_seen, last_seen, is_potential_duplication,
            merged_into_machine_id, raw, first_listed_at, last_listed_at, last_listed_run_id)
        SELECT tenant, l.machine_id, true, l.computer_dns_name, l.os_platform, NULL, l.os_build,
               l.health_status, l.onboarding_status, l.rbac_group_id, l.rbac_group_name, '{}',
               l.first_seen, l.last_seen, false, NULL, l.raw::json, bench_year.tick(t0, 0),
               bench_year.tick(t0, 0), r.scan_run_id
        FROM bench_year.listing(n, t0, 0) l, bench_year.run r
        WHERE r.k = 0
        ORDER BY l.d;
        INSERT INTO bench_year.device (d, device_id)
        SELECT g.d, v.device_id FROM generate_series(1, n) g(d)
        JOIN kbwatch.device v ON v.tenant_id = tenant AND v.machine_id = bench_year.machine_id(g.d);
    END IF;
    IF c1 - 1 > 0 THEN
        UPDATE kbwatch.device v SET
            computer_dns_name = l.computer_dns_name, os_platform = l.os_platform,
            os_version = NULL, os_build = l.os_build, health_status = l.health_status,
            onboarding_status = l.onboarding_status, rbac_group_id = l.rbac_group_id,
            rbac_group_name = l.rbac_group_name, machine_tags = '{}', first_seen = l.first_seen,
            last_seen = l.last_seen, is_potential_duplication = false,
            merged_into_machine_id = NULL, raw = l.raw::json,
            last_listed_at = bench_year.tick(t0, c1 - 1), last_listed_run_id = r.scan_run_id,
            gone_at = NULL
        FROM bench_year.listing(n, t0, c1 - 1) l, bench_year.run r
        WHERE r.k = c1 - 1 AND v.tenant_id = tenant AND v.machine_id = l.machine_id;
    END IF;

    -- The six KBs that can be missing on day k: month k/30's and the month before's. OFFSET 0
    -- keeps each flag computed once.
    INSERT INTO kbwatch.device_scan (device_id, scan_run_id, scanned_at, outcome, missing_kbs,
                                     cve_addressed_total, error, last_seen)
    SELECT x.device_id, x.scan_run_id, bench_year.scanned_at(t0, x.k, x.d), 'ok',
           x.a0 + x.a1 + x.a2 + x.b0 + x.b1 + x.b2,
           (x.a0 * bench_year.cve(x.m, 0) + x.a1 * bench_year.cve(x.m, 1)
            + x.a2 * bench_year.cve(x.m, 2) + x.b0 * bench_year.cve(x.m - 1, 0)
            + x.b1 * bench_year.cve(x.m - 1, 1) + x.b2 * bench_year.cve(x.m - 1, 2))::int8,
           NULL, bench_year.tick(t0, x.k) - (x.d % 3600) * interval '1 s'
    FROM (
        SELECT r.k, r.scan_run_id, v.d, v.device_id, r.k / 30 AS m,
               bench_year.misses(v.d, r.k / 30, 0, r.k) AS a0,
               bench_year.misses(v.d, r.k / 30, 1, r.k) AS a1,
               bench_year.misses(v.d, r.k / 30, 2, r.k) AS a2,
               bench_year.misses(v.d, r.k / 30 - 1, 0, r.k) AS b0,
               bench_year.misses(v.d, r.k / 30 - 1, 1, r.k) AS b1,
               bench_year.misses(v.d, r.k / 30 - 1, 2, r.k) AS b2
        FROM bench_year.run r, bench_year.device v
        WHERE r.k >= c0 AND r.k < c1
        OFFSET 0
    ) x
    ORDER BY x.k, x.d;

    -- Each device's last scan as of the chunk's last day (kbwatch moves it with every scan).
    INSERT INTO kbwatch.device_state AS st (device_id, scan_run_id, scanned_at, outcome,
                                            good_scan_run_id, good_scanned_at, good_last_seen,
                                            missing_kbs, cve_addressed_total, good_requested_at)
    SELECT s.device_id, s.scan_run_id, s.scanned_at, s.outcome, s.scan_run_id, s.scanned_at,
           s.last_seen, s.missing_kbs, s.cve_addressed_total, s.scanned_at
    FROM bench_year.run r
    JOIN kbwatch.device_scan s ON s.scan_run_id = r.scan_run_id
    WHERE r.k = c1 - 1
    ON CONFLICT (device_id) DO UPDATE SET
        scan_run_id = EXCLUDED.scan_run_id, scanned_at = EXCLUDED.scanned_at,
        outcome = EXCLUDED.outcome, good_scan_run_id = EXCLUDED.good_scan_run_id,
        good_scanned_at = EXCLUDED.good_scanned_at, good_last_seen = EXCLUDED.good_last_seen,
        missing_kbs = EXCLUDED.missing_kbs, cve_addressed_total = EXCLUDED.cve_addressed_total,
        good_requested_at = EXCLUDED.good_requested_at;

    -- The KBs reported in the chunk, as the last scan that reported each stored it (before the
    -- intervals that refer to them, as kbwatch stores them).
    INSERT INTO kbwatch.kb AS k (kb_id, name, url, products_names, cve_addressed,
                                 machine_missed_on, first_seen_at, last_seen_at)
    SELECT bench_year.kb_id(s.m, s.j), bench_year.kb_name(bench_year.kb_id(s.m, s.j)),
           bench_year.kb_url(bench_year.kb_id(s.m, s.j)), bench_year.kb_products(),
           bench_year.cve(s.m, s.j),
           (SELECT count(*) FROM generate_series(1, n) g(d)
            WHERE bench_year.misses(g.d, s.m, s.j, s.last_k) = 1),
           bench_year.scanned_at(t0, 30 * s.m, 1), bench_year.scanned_at(t0, s.last_k, n)
    FROM (
        SELECT m, j, least(c1 - 1, max(30 * m + bench_year.fix_days(g.d, m, j) - 1)) AS last_k
        FROM generate_series(greatest(0, (c0 - 40) / 30), (c1 - 1) / 30) m,
             generate_series(0, 2) j, generate_series(1, n) g(d)
        GROUP BY m, j
    ) s
    WHERE s.last_k >= greatest(c0, 30 * s.m)
    ON CONFLICT (kb_id) DO UPDATE SET
        name = EXCLUDED.name, url = EXCLUDED.url, products_names = EXCLUDED.products_names,
        cve_addressed = EXCLUDED.cve_addressed, machine_missed_on = EXCLUDED.machine_missed_on,
        last_seen_at = EXCLUDED.last_seen_at;

    -- Intervals opened in the chunk: month m's KBs on the day they appear.
    INSERT INTO kbwatch.missing_kb (device_id, kb_id, opened_scan_run_id, cve_addressed,
                                    opened_at)
    SELECT v.device_id, bench_year.kb_id(m, j), r.scan_run_id, bench_year.cve(m, j),
           bench_year.scanned_at(t0, r.k, v.d)
    FROM generate_series((c0 + 29) / 30, (c1 - 1) / 30) m, bench_year.run r,
         bench_year.device v, generate_series(0, 2) j
    WHERE r.k = 30 * m
    ORDER BY m, v.d, j;
    -- Intervals closed in the chunk: at the run of the day the KB is installed (a fix: the
    -- history never changes a KB's cveAddressed).
    UPDATE kbwatch.missing_kb mk
    SET closed_scan_run_id = c.scan_run_id, closed_at = c.scanned_at, fixed = true
    FROM (
        SELECT v.device_id, bench_year.kb_id(m, j) AS kb_id, o.scan_run_id AS opened,
               r.scan_run_id, bench_year.scanned_at(t0, r.k, v.d) AS scanned_at
        FROM generate_series(greatest(0, (c0 - 40) / 30), (c1 - 1) / 30) m,
             generate_series(0, 2) j, bench_year.device v, bench_year.run o, bench_year.run r
        WHERE o.k = 30 * m AND r.k = 30 * m + bench_year.fix_days(v.d, m, j)
          AND r.k >= c0 AND r.k < c1
    ) c
    WHERE mk.device_id = c.device_id AND mk.kb_id = c.kb_id
      AND mk.opened_scan_run_id = c.opened AND mk.closed_scan_run_id IS NULL;

    -- Each run's good scans packed once it has ended, as kbwatch packs them (migration 0014),
    -- and the intervals it closed (migration 0021).
    PERFORM kbwatch.pack_scans(r.scan_run_id)
    FROM bench_year.run r WHERE r.k >= c0 AND r.k < c1
    ORDER BY r.k;
    PERFORM kbwatch.pack_intervals(array_agg(r.scan_run_id))
    FROM bench_year.run r WHERE r.k >= c0 AND r.k < c1;
END
$$;
