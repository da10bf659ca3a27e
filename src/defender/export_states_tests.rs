use serde_json::{Value, json};

use super::*;
use crate::model::{ExportKb, ExportState, ExportStates};

const A: &str = "2339AD14a01bd0299afb93dfa2550136057bff96";
const B: &str = "0123456789abcdef0123456789abcdef01234567";

fn fold(pages: &[Value]) -> (ExportStates, Vec<Option<String>>) {
    let mut tally = ExportTally::default();
    let links = (pages.iter())
        .map(|p| fold_page(p.to_string().as_bytes(), &mut tally).expect("a page"))
        .collect();
    (tally.finish(), links)
}

fn state<'a>(states: &'a ExportStates, id: &str) -> ExportState<'a> {
    states.state(&validate_machine_id(id).expect("a valid id"))
}

#[test]
fn kb_rows_in_either_casing_count_their_distinct_cves() {
    let pascal = |kb: Value, cve: &str| json!({ "DeviceId": A, "RecommendedSecurityUpdateId": kb, "CveId": cve, "CvssScore": 7.5 });
    let camel = |kb: Value, cve: Value| {
        json!({ "deviceId": A.to_ascii_lowercase(), "recommendedSecurityUpdateId": kb, "cveId": cve,
                "recommendedSecurityUpdate": "November 2026 Security Updates",
                "recommendedSecurityUpdateUrl": "https://x.invalid/KB5020123" })
    };
    let first = json!({
        "@odata.nextLink": "https://api.securitycenter.microsoft.com/next",
        "value": [pascal(json!("KB5020123"), "CVE-2026-1"), pascal(json!(4550961), "CVE-2026-7")],
        "@odata.context": "ignored"
    });
    let second = json!({ "value": [
        camel(json!("5020123"), json!("CVE-2026-2")),
        camel(json!(" kb5020123 "), json!("CVE\u{2d}2026\u{2d}1")),
        camel(json!("TVM-0001-00000000"), json!("TVM-0001-00000000")),
        camel(json!(null), json!("CVE-2026-40001")),
        camel(json!("5020123"), json!(7)),
        { "deviceId": B, "recommendedSecurityUpdate": "193220", "cveId": "CVE-2026-40101" },
    ]});
    let (states, links) = fold(&[first, second]);
    let link = "https://api.securitycenter.microsoft.com/next";
    assert_eq!(links, [Some(link.to_owned()), None]);
    let a =
        [ExportKb { id: 4550961, cve_addressed: 1 }, ExportKb { id: 5020123, cve_addressed: 2 }];
    assert_eq!(state(&states, A), ExportState::Missing(&a));
    assert_eq!(state(&states, B), ExportState::Missing(&[]), "a row without a KB: known");
    assert_eq!(state(&states, &"c".repeat(40)), ExportState::Unknown);
    assert_eq!((states.counts.rows, states.counts.kb_rows), (8, 5));
    let kb = &states.missing_kbs(&validate_machine_id(A).unwrap()).unwrap()[1];
    assert_eq!(kb.name.as_deref(), Some("November 2026 Security Updates"));
    assert_eq!(kb.url.as_deref(), Some("https://x.invalid/KB5020123"));
}

#[test]
fn odd_rows_are_counted_and_left_out_never_the_page() {
    let row =
        |device: Value| json!({ "deviceId": device, "recommendedSecurityUpdateId": "5020123" });
    // The last row's id has escapes, which still spell a valid id.
    let escaped = A.replace('2', "\\u0032");
    let page = format!(
        r#"{{"value": [{}, {}, {}, {}, 5, [], "x", null, {{"deviceId":"{A}","DeviceId":"{A}"}},
            {{"deviceId": "{escaped}", "recommendedSecurityUpdateId": "5020123"}}]}}"#,
        row(json!("../../etc/passwd")),
        row(json!(5)),
        row(json!(null)),
        row(json!(&A[..39])),
    );
    let mut tally = ExportTally::default();
    assert_eq!(fold_page(page.as_bytes(), &mut tally).expect("the page is read"), None);
    let states = tally.finish();
    let c = states.counts;
    assert_eq!((c.rows, c.rejected, c.malformed, c.kb_rows), (10, 4, 5, 1), "{c:?}");
    assert_eq!(
        state(&states, A),
        ExportState::Missing(&[ExportKb { id: 5020123, cve_addressed: 0 }])
    );
}

#[test]
fn a_page_without_rows_or_with_trailing_text_fails() {
    for bad in [
        r#"{"@odata.nextLink": "x"}"#,
        r#"{"value": []} {"value": []}"#,
        r#"{"value": [], "value": []}"#,
        r#"{"value": {}}"#,
        r#"{"value": [], "@odata.nextLink": 5}"#,
        r#"[]"#,
        r#"{"value": [{"deviceId": "#,
    ] {
        assert!(fold_page(bad.as_bytes(), &mut ExportTally::default()).is_err(), "{bad}");
    }
    let mut tally = ExportTally::default();
    let ok = fold_page(br#" {"value": [], "@odata.nextLink": null} "#, &mut tally);
    assert_eq!(ok.expect("an empty last page"), None);
}

#[test]
fn a_full_tally_fails_the_page_with_its_reason() {
    let rows: Vec<Value> = (0..1025)
        .map(|n| json!({ "deviceId": A, "recommendedSecurityUpdateId": "5020123", "cveId": format!("CVE-1-{n}") }))
        .collect();
    let page = json!({ "value": rows }).to_string();
    let err = fold_page(page.as_bytes(), &mut ExportTally::default()).unwrap_err();
    assert!(err.to_string().contains("more than 1024 CVE ids of one KB"), "{err}");
}
