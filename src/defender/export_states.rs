//! The full vulnerability export (`GET /api/machines/SoftwareVulnerabilitiesByMachine`) read into
//! what each device misses ([`ExportStates`]): a device's KBs are the KB numbers of its rows'
//! `recommendedSecurityUpdateId` (by the rules of the delta's reader: not `TVM-` ids, advisories
//! or null), each with the distinct `cveId`s of its rows.
//!
//! Each page is folded into an [`ExportTally`] while it is decoded: its rows are never held, only
//! the page's text (within `max_page_bytes`) and the tally. Field names are read in camelCase and
//! PascalCase; a row that is not an object is counted and left out, a device id that is not 40
//! hex digits is counted and never used, a field of another type than text reads as absent.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::error::cut_text;
use super::export::{MAX_EXPORT_PAGES, kb_of_number, kb_of_text};
use super::{ApiError, Client};
use crate::model::{ExportStates, ExportTally, KbRow, TallyFull, validate_machine_id};
use crate::pacer::Endpoint;

impl Client {
    /// Every page of the full export, paced on its quota, folded into each device's missing KBs
    /// (a device the export does not name is unknown: see [`ExportStates`]). Pages are sized
    /// and capped as [`Client::kb_changes_since`]'s; a next link to another origin fails the
    /// call, since a device's rows may be on any page and a part of the export would give some
    /// devices part of their KBs.
    pub async fn export_states(&self) -> Result<ExportStates, ApiError> {
        let mut url = self.url(&["api", "machines", "SoftwareVulnerabilitiesByMachine"]);
        url.query_pairs_mut().append_pair("pageSize", &self.export_page_rows().to_string());
        let mut tally = ExportTally::default();
        // One allocation for every page: pages freed one after the other, with the tally's
        // allocations between them, left the heap holding two.
        let mut body = Vec::new();
        for _ in 0..MAX_EXPORT_PAGES {
            let cap = self.options.max_page_bytes;
            let fold = |page: &[u8]| fold_page(page, &mut tally);
            let (next, _) = self.get_decoded(Endpoint::Export, &url, cap, &mut body, fold).await?;
            tally.counts.pages += 1;
            let Some(link) = next else {
                drop(body);
                return Ok(tally.finish());
            };
            url = self.same_origin(&link).ok_or_else(|| {
                ApiError::Decode(format!(
                    "the export's next page is elsewhere: {}",
                    cut_text(&link)
                ))
            })?;
        }
        Err(ApiError::Decode(format!("more than {MAX_EXPORT_PAGES} @odata.nextLink pages")))
    }
}

/// Folds the rows of one page into `tally`; its next link.
fn fold_page(body: &[u8], tally: &mut ExportTally) -> serde_json::Result<Option<String>> {
    let mut json = serde_json::Deserializer::from_slice(body);
    let next = Page(tally).deserialize(&mut json)?;
    json.end()?;
    Ok(next)
}

/// An OData page whose `value` rows go to the tally one by one.
struct Page<'t>(&'t mut ExportTally);

/// The rows of a page's `value`.
struct Rows<'t>(&'t mut ExportTally);

#[derive(Deserialize)]
#[serde(field_identifier)]
enum PageKey {
    #[serde(rename = "value")]
    Value,
    #[serde(rename = "@odata.nextLink")]
    NextLink,
    #[serde(other)]
    Other,
}

impl<'de> DeserializeSeed<'de> for Page<'_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Page<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an OData page")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<String>, A::Error> {
        let (mut next, mut rows) = (None, false);
        while let Some(key) = map.next_key::<PageKey>()? {
            match key {
                PageKey::Value if rows => return Err(de::Error::duplicate_field("value")),
                PageKey::Value => {
                    map.next_value_seed(Rows(&mut *self.0))?;
                    rows = true;
                }
                PageKey::NextLink => next = map.next_value()?,
                PageKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !rows {
            return Err(de::Error::missing_field("value"));
        }
        Ok(next)
    }
}

impl<'de> DeserializeSeed<'de> for Rows<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Rows<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of rows")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(row) = seq.next_element::<&'de RawValue>()? {
            fold_row(row, self.0).map_err(de::Error::custom)?;
        }
        Ok(())
    }
}

/// A row of the export, as far as it is read: each field as the JSON text it was sent as, under
/// its camelCase or PascalCase name.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Row<'a> {
    #[serde(borrow, alias = "DeviceId")]
    device_id: Option<&'a RawValue>,
    #[serde(borrow, alias = "RecommendedSecurityUpdateId")]
    recommended_security_update_id: Option<&'a RawValue>,
    #[serde(borrow, alias = "CveId")]
    cve_id: Option<&'a RawValue>,
    /// getmissingkbs' `name`.
    #[serde(borrow, alias = "RecommendedSecurityUpdate")]
    recommended_security_update: Option<&'a RawValue>,
    #[serde(borrow, alias = "RecommendedSecurityUpdateUrl")]
    recommended_security_update_url: Option<&'a RawValue>,
}

fn fold_row(raw: &RawValue, tally: &mut ExportTally) -> Result<(), TallyFull> {
    // Only an object is a row (serde would read an array as one, field by field).
    let object = raw.get().starts_with('{');
    let Some(row) = object.then(|| serde_json::from_str::<Row<'_>>(raw.get()).ok()).flatten()
    else {
        tally.malformed();
        return Ok(());
    };
    let Some(device) = text(row.device_id).as_deref().and_then(validate_machine_id) else {
        tally.reject();
        return Ok(());
    };
    let Some(kb) = kb_id(row.recommended_security_update_id) else {
        return tally.add(device, None);
    };
    let cve = text(row.cve_id);
    let name = text(row.recommended_security_update);
    let url = text(row.recommended_security_update_url);
    let (cve, name, url) = (cve.as_deref(), name.as_deref(), url.as_deref());
    tally.add(device, Some(KbRow { kb, cve, name, url }))
}

/// A field sent as a JSON string: its text (unescaped only if it has escapes); else `None`.
fn text(raw: Option<&RawValue>) -> Option<Cow<'_, str>> {
    let json = raw?.get().trim();
    let inner = json.strip_prefix('"')?.strip_suffix('"')?;
    match inner.contains('\\') {
        false => Some(Cow::Borrowed(inner)),
        true => serde_json::from_str::<String>(json).ok().map(Cow::Owned),
    }
}

/// `recommendedSecurityUpdateId` as a KB number: from text or a JSON number.
fn kb_id(raw: Option<&RawValue>) -> Option<u32> {
    match text(raw) {
        Some(text) => kb_of_text(&text),
        None => raw?.get().trim().parse().ok().and_then(kb_of_number),
    }
}

#[cfg(test)]
#[path = "export_states_tests.rs"]
mod tests;
