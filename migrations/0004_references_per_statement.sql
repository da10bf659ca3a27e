-- The references of the two fact tables and of device, checked once per statement instead of once
-- per row.
--
-- A foreign key runs a query that finds and locks the referenced row for every row inserted. Writing
-- the first scan of 10,000 devices, those checks were most of the cost of the fact tables (psql, 2
-- cores: 31,318 missing_kb rows 331 ms with their two keys, 76 ms without; 10,000 device_scan rows
-- 160 ms with theirs, 32 ms without), and the scan's database time bounds its speed. The triggers
-- below keep the same guarantees with one anti-join per statement (the same 31,318 rows written in
-- ten statements, four runs: 352-513 ms with the keys, 115-119 ms checked by the triggers, 95-119 ms
-- unchecked). The key from device to tenant goes the same way: it was about 50 ms of the ~215 ms
-- that storing a first listing of 10,000 devices took (medians of six runs).
--   * a fact row refers to a device, KB and scan run that exist, a device to a tenant that exists,
--     or the statement writing it fails;
--   * those references never change;
--   * a row that another refers to cannot be deleted, nor its key changed.
-- kbwatch itself never deletes these rows. Unlike a foreign key, these checks take no row locks: a
-- delete racing with the insert of a row that refers to the deleted row can let both through.

ALTER TABLE kbwatch.missing_kb
    DROP CONSTRAINT missing_kb_device_fkey,
    DROP CONSTRAINT missing_kb_kb_fkey;
ALTER TABLE kbwatch.device_scan
    DROP CONSTRAINT device_scan_device_fkey,
    DROP CONSTRAINT device_scan_run_fkey;
ALTER TABLE kbwatch.device DROP CONSTRAINT device_tenant_fkey;

-- A statement's rows refer to rows that exist. Arguments: (column, referenced table, its key)
-- repeated. Each check reads the distinct keys of the statement's rows and probes the referenced
-- key for each: a batch's few hundred devices, not a scan of the device table.
CREATE FUNCTION kbwatch.check_references() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    i integer := 0;
    orphan text;
BEGIN
    WHILE i < TG_NARGS LOOP
        EXECUTE format(
            'SELECT a.%1$I::text FROM (SELECT DISTINCT %1$I FROM added) a
             WHERE NOT EXISTS (SELECT 1 FROM kbwatch.%2$I p WHERE p.%3$I = a.%1$I) LIMIT 1',
            TG_ARGV[i], TG_ARGV[i + 1], TG_ARGV[i + 2]) INTO orphan;
        IF orphan IS NOT NULL THEN
            RAISE EXCEPTION 'a % row refers to % % = %, which does not exist',
                TG_TABLE_NAME, TG_ARGV[i + 1], TG_ARGV[i + 2], orphan
                USING ERRCODE = 'foreign_key_violation', TABLE = TG_TABLE_NAME;
        END IF;
        i := i + 3;
    END LOOP;
    RETURN NULL;
END
$$;
CREATE TRIGGER missing_kb_refs AFTER INSERT ON kbwatch.missing_kb
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT
    EXECUTE FUNCTION kbwatch.check_references('device_id', 'device', 'device_id', 'kb_id', 'kb', 'kb_id');
CREATE TRIGGER device_scan_refs AFTER INSERT ON kbwatch.device_scan
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT
    EXECUTE FUNCTION kbwatch.check_references(
        'device_id', 'device', 'device_id', 'scan_run_id', 'scan_run', 'scan_run_id');
CREATE TRIGGER device_refs AFTER INSERT ON kbwatch.device
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT
    EXECUTE FUNCTION kbwatch.check_references('tenant_id', 'tenant', 'tenant_id');

-- Keys that other rows refer to, and the references themselves, are not updated.
CREATE FUNCTION kbwatch.refuse_key_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the keys of kbwatch.% are not changed: other rows refer to them', TG_TABLE_NAME
        USING ERRCODE = 'foreign_key_violation', TABLE = TG_TABLE_NAME;
END
$$;
CREATE TRIGGER missing_kb_keys BEFORE UPDATE OF device_id, kb_id ON kbwatch.missing_kb
    FOR EACH ROW WHEN (OLD.device_id <> NEW.device_id OR OLD.kb_id <> NEW.kb_id)
    EXECUTE FUNCTION kbwatch.refuse_key_change();
CREATE TRIGGER device_scan_keys BEFORE UPDATE OF device_id, scan_run_id ON kbwatch.device_scan
    FOR EACH ROW WHEN (OLD.device_id <> NEW.device_id OR OLD.scan_run_id <> NEW.scan_run_id)
    EXECUTE FUNCTION kbwatch.refuse_key_change();
CREATE TRIGGER device_keys BEFORE UPDATE OF device_id, tenant_id ON kbwatch.device
    FOR EACH ROW WHEN (OLD.device_id <> NEW.device_id OR OLD.tenant_id <> NEW.tenant_id)
    EXECUTE FUNCTION kbwatch.refuse_key_change();
CREATE TRIGGER kb_keys BEFORE UPDATE OF kb_id ON kbwatch.kb
    FOR EACH ROW WHEN (OLD.kb_id <> NEW.kb_id)
    EXECUTE FUNCTION kbwatch.refuse_key_change();
CREATE TRIGGER scan_run_keys BEFORE UPDATE OF scan_run_id ON kbwatch.scan_run
    FOR EACH ROW WHEN (OLD.scan_run_id <> NEW.scan_run_id)
    EXECUTE FUNCTION kbwatch.refuse_key_change();
CREATE TRIGGER tenant_keys BEFORE UPDATE OF tenant_id ON kbwatch.tenant
    FOR EACH ROW WHEN (OLD.tenant_id <> NEW.tenant_id)
    EXECUTE FUNCTION kbwatch.refuse_key_change();

-- A row still referred to is not deleted. Arguments: (key, referring table, its column) repeated.
-- (scan_run's key to tenant is still a foreign key; no index leads from a KB to its missing_kb
-- rows, as none did for the foreign key: KBs are not deleted.)
CREATE FUNCTION kbwatch.refuse_referenced_delete() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    i integer := 0;
    referenced text;
BEGIN
    WHILE i < TG_NARGS LOOP
        EXECUTE format(
            'SELECT r.%1$I::text FROM removed r
             WHERE EXISTS (SELECT 1 FROM kbwatch.%2$I c WHERE c.%3$I = r.%1$I) LIMIT 1',
            TG_ARGV[i], TG_ARGV[i + 1], TG_ARGV[i + 2]) INTO referenced;
        IF referenced IS NOT NULL THEN
            RAISE EXCEPTION '% % = % is not deleted: % rows refer to it',
                TG_TABLE_NAME, TG_ARGV[i], referenced, TG_ARGV[i + 1]
                USING ERRCODE = 'foreign_key_violation', TABLE = TG_TABLE_NAME;
        END IF;
        i := i + 3;
    END LOOP;
    RETURN NULL;
END
$$;
CREATE TRIGGER device_referenced AFTER DELETE ON kbwatch.device
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT
    EXECUTE FUNCTION kbwatch.refuse_referenced_delete(
        'device_id', 'device_scan', 'device_id', 'device_id', 'missing_kb', 'device_id');
CREATE TRIGGER kb_referenced AFTER DELETE ON kbwatch.kb
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT
    EXECUTE FUNCTION kbwatch.refuse_referenced_delete('kb_id', 'missing_kb', 'kb_id');
CREATE TRIGGER scan_run_referenced AFTER DELETE ON kbwatch.scan_run
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT
    EXECUTE FUNCTION kbwatch.refuse_referenced_delete('scan_run_id', 'device_scan', 'scan_run_id');
CREATE TRIGGER tenant_referenced AFTER DELETE ON kbwatch.tenant
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT
    EXECUTE FUNCTION kbwatch.refuse_referenced_delete('tenant_id', 'device', 'tenant_id');
