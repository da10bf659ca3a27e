use super::*;
use crate::model::{ExportState, validate_machine_id};

fn id(c: char) -> MachineId {
    validate_machine_id(&c.to_string().repeat(40)).expect("40 hex digits")
}

fn row(kb: u32, cve: &str) -> Option<KbRow<'_>> {
    Some(KbRow { kb, cve: Some(cve), name: None, url: None })
}

#[test]
fn each_cve_id_counts_once_in_any_order_and_rows_of_a_device_may_come_apart() {
    let mut tally = ExportTally::default();
    let rows = [
        ('a', row(5020123, "CVE-2026-1")),
        ('b', row(5020123, "CVE-2026-2")),
        ('a', row(890830, "CVE-2026-9")),
        ('a', row(5020123, "cve-2026-2 ")),
        ('b', None),
        ('a', row(5020123, "CVE-2026-1")),
        ('c', None),
        ('a', row(5020123, "CVE-2026-3")),
        ('b', row(5020123, "")),
    ];
    for (device, kb) in rows {
        tally.add(id(device), kb).expect("within the bounds");
    }
    tally.reject();
    let states = tally.finish();
    let kb = |id, cve_addressed| ExportKb { id, cve_addressed };
    let a = [kb(890830, 1), kb(5020123, 3)];
    assert_eq!(states.state(&id('a')), ExportState::Missing(&a));
    assert_eq!(states.state(&id('b')), ExportState::Missing(&[kb(5020123, 1)]));
    assert_eq!(states.state(&id('c')), ExportState::Missing(&[]), "known, missing nothing");
    assert_eq!(states.state(&id('d')), ExportState::Unknown, "no row: unknown");
    assert!(states.missing_kbs(&id('d')).is_none());
    let counts = states.counts;
    assert_eq!((counts.rows, counts.kb_rows, counts.rejected), (10, 7, 1));
    let items = states.missing_kbs(&id('a')).expect("known");
    let last = &items[1];
    assert_eq!((last.id.as_str(), last.cve_addressed), ("5020123", Some(3)));
    assert_eq!(last.machine_missed_on, Some(2), "a and b miss it");
}

#[test]
fn more_than_128_cves_spill_and_still_count_once() {
    let mut tally = ExportTally::default();
    let cves: Vec<String> = (0..300).map(|n| format!("CVE-2026-{n}")).collect();
    // Device b sees the high numbers first; a sees them all, twice.
    for cve in cves.iter().rev().take(100).chain(&cves).chain(&cves) {
        let device = if cves[..200].contains(cve) { 'a' } else { 'b' };
        tally.add(id(device), row(5020123, cve)).unwrap();
        tally.add(id('a'), row(5020123, cve)).unwrap();
    }
    let states = tally.finish();
    let count = |c| match states.state(&id(c)) {
        ExportState::Missing(kbs) => kbs[0].cve_addressed,
        ExportState::Unknown => panic!("{c} is known"),
    };
    assert_eq!((count('a'), count('b')), (300, 100));
}

#[test]
fn name_and_url_are_the_first_given_and_cut() {
    let mut tally = ExportTally::default();
    let long = "é".repeat(MAX_TEXT);
    for (name, url) in
        [(Some(" "), None), (Some(long.as_str()), Some("u1")), (Some("x"), Some("u2"))]
    {
        let kb = KbRow { kb: 5020123, cve: None, name, url };
        tally.add(id('a'), Some(kb)).unwrap();
    }
    let states = tally.finish();
    let item = states.missing_kbs(&id('a')).unwrap().remove(0);
    let name = item.name.unwrap();
    assert!(name.len() <= MAX_TEXT && name.len() > MAX_TEXT - 2 && name.starts_with('é'));
    assert_eq!((item.url.as_deref(), item.cve_addressed), (Some("u1"), Some(0)));
}

#[test]
fn the_bounds_fail_the_tally_not_the_process() {
    let mut tally = ExportTally::default();
    for n in 0..MAX_KB_CVES {
        tally.add(id('a'), row(5020123, &format!("CVE-1-{n}"))).unwrap();
    }
    let err = tally.add(id('a'), row(5020123, "CVE-1-x")).unwrap_err();
    assert_eq!((err.what, err.limit), ("CVE ids of one KB", MAX_KB_CVES));
    assert!(tally.add(id('a'), row(5020123, "CVE-1-0")).is_ok(), "a known id still counts");

    let mut tally = ExportTally::default();
    for kb in 0..MAX_DEVICE_KBS as u32 {
        tally.add(id('b'), row(1000 + kb, "CVE-1-0")).unwrap();
    }
    let err = tally.add(id('b'), row(999_999, "CVE-1-0")).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("the export names more than {MAX_DEVICE_KBS} KBs of one device")
    );
}
