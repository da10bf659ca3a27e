-- Storage shaped by how the two large tables are written.
--
-- Every listing rewrites every listed device's row (its raw entity changes with lastSeen). With full
-- pages each new version went to another page, with new entries in both indexes, and the old one
-- waited for VACUUM: over 30 daily scans of 10,000 devices the table grew from 14 to 26 MB and its
-- (tenant, machine) index doubled. Leaving 40 % of each page free keeps the next version on the same
-- page (a HOT update: no index entries, the old version pruned when the page is next visited).
-- Pages filled before this keep their rows; the setting applies as pages are written.
ALTER TABLE kbwatch.device SET (fillfactor = 60);

-- device_scan rows are appended run after run and never updated by kbwatch, so a run's rows sit in
-- adjacent pages: a block-range index finds them (a run of 10,000 devices fills about 90 pages) at a
-- fraction of a B-tree's size, which was 2.4 MB over the same 300,000 rows.
DROP INDEX kbwatch.device_scan_run_idx;
CREATE INDEX device_scan_run_idx ON kbwatch.device_scan USING brin (scan_run_id)
    WITH (pages_per_range = 32);
