//! Folds the full export's rows, one at a time, into [`ExportStates`], keeping only the aggregate:
//! the export of 100,000 devices is millions of rows (device × software × CVE), their distinct
//! (device, KB) pairs a few hundred thousand.
//!
//! Each KB numbers the CVE ids its rows name, in the order first seen, once for the whole fleet;
//! a (device, KB) pair keeps the set of its CVE ids as bits of those numbers: 128 in 32 bytes,
//! where a sorted list of 64-bit hashes would take 8 bytes a CVE (a cumulative update addresses
//! tens to 150). Rows of one device may come in any order and apart: the public record says
//! nothing of the order (`/work/shared/reference/export-api.md`), so nothing here relies on it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

use super::export_states::KbText;
use super::{ExportCounts, ExportKb, ExportStates, MachineId};

/// The most devices one export may name (ten times the fleet the API recommends it for).
pub const MAX_EXPORT_DEVICES: usize = 1_000_000;
/// The most distinct (device, KB) pairs kept: about 130 MB at 32 bytes each, where 100,000
/// devices missing 5 KBs each take 16 MB.
pub const MAX_EXPORT_KBS: usize = 4_000_000;
/// The most KBs one device may miss (getmissingkbs' bound on one device's list).
const MAX_DEVICE_KBS: usize = 10_000;
/// The most distinct CVE ids one KB's rows may name (a monthly update addresses at most ~150).
const MAX_KB_CVES: usize = 1024;
/// The most distinct (KB, CVE id) pairs of the whole export.
const MAX_CVE_IDS: usize = 1_000_000;
/// The most bytes of a KB's name or URL kept.
const MAX_TEXT: usize = 2048;

/// A row that names a KB, as far as the tally reads it.
#[derive(Debug, Clone, Copy)]
pub struct KbRow<'a> {
    /// The KB number (`recommendedSecurityUpdateId`).
    pub kb: u32,
    /// `cveId`: any id that is not blank counts, a `TVM-` one too (the record does not say
    /// whether getmissingkbs' `cveAddressed` counts those).
    pub cve: Option<&'a str>,
    /// `recommendedSecurityUpdate`: getmissingkbs' `name`.
    pub name: Option<&'a str>,
    /// `recommendedSecurityUpdateUrl`.
    pub url: Option<&'a str>,
}

/// The export named more of something than the tally keeps.
#[derive(Debug, thiserror::Error)]
#[error("the export names more than {limit} {what}")]
pub struct TallyFull {
    pub what: &'static str,
    pub limit: usize,
}

/// The rows folded so far.
#[derive(Debug, Default)]
pub struct ExportTally {
    /// Per device (its id's 20 bytes: 100,000 ids in 2 MB less than as text) its KBs, sorted
    /// by KB number.
    devices: HashMap<[u8; 20], Vec<Held>>,
    /// Per KB its CVE ids' numbers, name and URL.
    kbs: HashMap<u32, KbCves>,
    pairs: usize,
    cve_ids: usize,
    pub counts: ExportCounts,
}

/// One KB of one device: the CVE ids of its rows, as numbers in the KB's list.
#[derive(Debug)]
struct Held {
    kb: u32,
    cves: Bits,
}

#[derive(Debug, Default)]
struct KbCves {
    numbers: HashMap<Box<str>, u32>,
    name: Option<Box<str>>,
    url: Option<Box<str>>,
}

impl ExportTally {
    /// Folds a row of `device`: with `kb`, a KB it misses (and a CVE id of it); without, the
    /// device is known, missing no KB unless other rows name one.
    pub fn add(&mut self, device: MachineId, kb: Option<KbRow<'_>>) -> Result<(), TallyFull> {
        self.counts.rows += 1;
        let known = self.devices.len();
        let held = match self.devices.entry(device.to_bytes()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(_) if known >= MAX_EXPORT_DEVICES => {
                return Err(TallyFull { what: "devices", limit: MAX_EXPORT_DEVICES });
            }
            Entry::Vacant(e) => e.insert(Vec::new()),
        };
        let Some(row) = kb else { return Ok(()) };
        self.counts.kb_rows += 1;
        let at = match held.binary_search_by_key(&row.kb, |h| h.kb) {
            Ok(at) => at,
            Err(_) if held.len() >= MAX_DEVICE_KBS => {
                return Err(TallyFull { what: "KBs of one device", limit: MAX_DEVICE_KBS });
            }
            Err(_) if self.pairs >= MAX_EXPORT_KBS => {
                return Err(TallyFull { what: "(device, KB) pairs", limit: MAX_EXPORT_KBS });
            }
            Err(at) => {
                // Grown one at a time: a device misses a few KBs, and doubling would leave
                // a third of the room unused.
                held.reserve_exact(1);
                held.insert(at, Held { kb: row.kb, cves: Bits::default() });
                self.pairs += 1;
                at
            }
        };
        let kb = self.kbs.entry(row.kb).or_default();
        kb.name = kb.name.take().or_else(|| cut(row.name));
        kb.url = kb.url.take().or_else(|| cut(row.url));
        if let Some(cve) = row.cve.map(str::trim).filter(|c| !c.is_empty()) {
            let number = kb.number(cve, &mut self.cve_ids)?;
            held[at].cves.insert(number);
        }
        Ok(())
    }

    /// Counts a row whose device id is not valid.
    pub fn reject(&mut self) {
        self.counts.rows += 1;
        self.counts.rejected += 1;
    }

    /// Counts a row that could not be read.
    pub fn malformed(&mut self) {
        self.counts.rows += 1;
        self.counts.malformed += 1;
    }

    /// Every device's KBs with their distinct CVE ids counted.
    pub fn finish(self) -> ExportStates {
        let mut kbs: HashMap<u32, KbText> = (self.kbs.into_iter())
            .map(|(id, k)| (id, KbText { name: k.name, url: k.url, devices: 0 }))
            .collect();
        let mut states = |held: Vec<Held>| -> Box<[ExportKb]> {
            let state = |h: &Held| {
                kbs.entry(h.kb).or_default().devices += 1;
                ExportKb { id: h.kb, cve_addressed: h.cves.count() }
            };
            held.iter().map(state).collect()
        };
        let devices = self.devices.into_iter().map(|(id, held)| (id, states(held))).collect();
        ExportStates { devices, kbs, counts: self.counts }
    }
}

impl KbCves {
    /// The number of `cve` (trimmed) in this KB's list; CVE ids are compared without case.
    fn number(&mut self, cve: &str, total: &mut usize) -> Result<u32, TallyFull> {
        let cve = match cve.bytes().any(|b| b.is_ascii_lowercase()) {
            true => Cow::Owned(cve.to_ascii_uppercase()),
            false => Cow::Borrowed(cve),
        };
        if let Some(&n) = self.numbers.get(&*cve) {
            return Ok(n);
        }
        if self.numbers.len() >= MAX_KB_CVES {
            return Err(TallyFull { what: "CVE ids of one KB", limit: MAX_KB_CVES });
        }
        if *total >= MAX_CVE_IDS {
            return Err(TallyFull { what: "distinct (KB, CVE id) pairs", limit: MAX_CVE_IDS });
        }
        let n = self.numbers.len() as u32;
        self.numbers.insert(cve.into(), n);
        *total += 1;
        Ok(n)
    }
}

/// The first [`MAX_TEXT`] bytes of a text that is not blank.
fn cut(text: Option<&str>) -> Option<Box<str>> {
    let text = text.filter(|t| !t.trim().is_empty())?;
    let mut end = text.len().min(MAX_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Some(text[..end].into())
}

/// A set of small numbers: below 128 inline, more on the heap.
#[derive(Debug)]
enum Bits {
    Inline([u64; 2]),
    Heap(Box<[u64]>),
}

impl Default for Bits {
    fn default() -> Self {
        Bits::Inline([0; 2])
    }
}

impl Bits {
    fn insert(&mut self, n: u32) {
        let (word, bit) = ((n / 64) as usize, n % 64);
        if word >= self.words().len() {
            let mut grown = vec![0; word + 1];
            grown[..self.words().len()].copy_from_slice(self.words());
            *self = Bits::Heap(grown.into());
        }
        let words = match self {
            Bits::Inline(w) => &mut w[..],
            Bits::Heap(w) => &mut w[..],
        };
        words[word] |= 1 << bit;
    }

    fn words(&self) -> &[u64] {
        match self {
            Bits::Inline(w) => w,
            Bits::Heap(w) => w,
        }
    }

    fn count(&self) -> u32 {
        self.words().iter().map(|w| w.count_ones()).sum()
    }
}

#[cfg(test)]
#[path = "export_tally_tests.rs"]
mod tests;
