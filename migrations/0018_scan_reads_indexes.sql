-- Two indexes for the reads of one scan over a long history (issue 14: one scan's
-- missing_kb_snapshots over a year of 100,000 devices took about 1 s for the last scan, and 1.5 s
-- for a scan nine months back).
--
-- 1. A scan's intervals. The views probe missing_kb once per device and scan for the intervals
--    with opened_scan_run_id <= scan < coalesce(closed_scan_run_id, max) (0014). With 0014's index
--    on (device_id, closing run), every interval closed after the scan was fetched from the heap to
--    test its opening run: 27 a device for a scan nine months back, where 2 or 3 match. With the
--    opening run in the key, the test is made on the index entry and only matching intervals are
--    fetched. The index replaces 0014's, whose searches it serves as well.
CREATE INDEX missing_kb_device_closed_opened_idx
    ON kbwatch.missing_kb (device_id, coalesce(closed_scan_run_id, 9223372036854775807),
                           opened_scan_run_id);
DROP INDEX kbwatch.missing_kb_device_closed_idx;

-- 2. What the views read of a device, without its row. A view joins each scan to its device for
--    machine_id and tenant_id; the row (with the listing's raw JSON, at fillfactor 60) is about
--    1.3 kB wide, and an index-only scan of this index (75 bytes a device) reads neither it nor
--    its page. tenant_id and machine_id never change, so the listing's updates stay HOT.
CREATE INDEX device_names_idx ON kbwatch.device (device_id) INCLUDE (tenant_id, machine_id);
