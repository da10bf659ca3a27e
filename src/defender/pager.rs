//! The device list: `GET /api/machines` page by page.

use std::collections::HashSet;

use url::Url;

use super::model::Page;
use super::{ApiError, Client};
use crate::model::Machine;
use crate::pacer::Endpoint;

/// Pages of the device list: `$top`/`$skip` until a short page, `@odata.nextLink` when given,
/// duplicates dropped. A 404 on the list is an empty fleet.
pub struct MachinePager<'a> {
    client: &'a Client,
    filter: Option<String>,
    fetched: u64,
    next_link: Option<Url>,
    done: bool,
    /// Ids listed so far, valid ones as their 20 bytes: for 100,000 devices about 3 MB where
    /// the strings took about 9.
    seen: HashSet<[u8; 20]>,
    seen_invalid: HashSet<String>,
}

impl Client {
    /// Pages through `GET /api/machines`, optionally filtered.
    pub fn machines(&self, filter: Option<&str>) -> MachinePager<'_> {
        MachinePager {
            client: self,
            filter: filter.map(str::to_owned),
            fetched: 0,
            next_link: None,
            done: false,
            seen: HashSet::new(),
            seen_invalid: HashSet::new(),
        }
    }
}

impl MachinePager<'_> {
    /// The next page's new devices, or `None` when the listing is complete.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Machine>>, ApiError> {
        if self.done {
            return Ok(None);
        }
        let top = self.client.options.page_size.clamp(1, 10_000);
        let url = match self.next_link.take() {
            Some(link) => link,
            None => {
                let mut url = self.client.url(&["api", "machines"]);
                {
                    let mut q = url.query_pairs_mut();
                    q.append_pair("$top", &top.to_string())
                        .append_pair("$skip", &self.fetched.to_string());
                    if let Some(f) = &self.filter {
                        q.append_pair("$filter", f);
                    }
                }
                url
            }
        };
        let (page, _): (Page<Box<serde_json::value::RawValue>>, u64) = match self
            .client
            .get_json(Endpoint::Machines, &url, self.client.options.max_page_bytes)
            .await
        {
            Ok(page) => page,
            Err(ApiError::NotFound) if self.fetched == 0 => {
                self.done = true;
                return Ok(Some(Vec::new()));
            }
            Err(e) => return Err(e),
        };
        let rows = page.value.len() as u64;
        self.fetched += rows;
        self.next_link = page.next_link.and_then(|l| self.client.same_origin(&l));
        let machines = self.fresh(page.value);
        if self.next_link.is_none() && rows < u64::from(top) || machines.is_empty() {
            self.done = true;
        }
        Ok(Some(machines))
    }

    /// Maps rows to machines, dropping ids already seen. A valid id is compared in lower case, as
    /// the store keeps it: two spellings of one id are one device.
    fn fresh(&mut self, rows: Vec<Box<serde_json::value::RawValue>>) -> Vec<Machine> {
        rows.into_iter()
            .map(Machine::from_raw)
            .filter(|m| match crate::model::validate_machine_id(&m.id) {
                Some(id) => self.seen.insert(id.to_bytes()),
                None => self.seen_invalid.insert(m.id.clone()),
            })
            .collect()
    }
}
