-- Where each listed device's counts came from: `reporting.devices` shows the last good scan's
-- missing_kbs and cve_addressed_total, which since 0016 may be the export's. Its last good scan is
-- getmissingkbs' exactly when it is the last getmissingkbs answer (0016's good_requested_at, set
-- to the same time): a state from the export comes from a later run.
--
-- Same columns and meaning as 0011's definition, and `missing_kbs_source` appended:
-- `getmissingkbs`, `export`, or NULL before the first good scan.
CREATE OR REPLACE VIEW reporting.devices AS
SELECT t.name AS tenant, d.machine_id, d.computer_dns_name, d.os_platform, d.os_build,
       d.health_status, d.onboarding_status, d.rbac_group_name, d.machine_tags, d.last_seen,
       st.scanned_at AS last_scanned_at, st.outcome AS last_scan_outcome, st.missing_kbs,
       st.cve_addressed_total,
       CASE WHEN st.good_scanned_at IS NULL THEN NULL
            WHEN st.good_requested_at = st.good_scanned_at THEN 'getmissingkbs'
            ELSE 'export' END AS missing_kbs_source
FROM kbwatch.device d
JOIN kbwatch.tenant t USING (tenant_id)
LEFT JOIN kbwatch.device_state st ON st.device_id = d.device_id
WHERE d.gone_at IS NULL;
