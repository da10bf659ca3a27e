//! The vulnerability export, `GET /api/machines/SoftwareVulnerabilitiesByMachine`: so far only a
//! one-row probe of it and of the token, for `kbwatch validate --online`.

use serde_json::value::RawValue;

use super::model::Page;
use super::{ApiError, Client};
use crate::pacer::Endpoint;

impl Client {
    /// Whether a token can be obtained at all: after it, a 401 means the API refused a good token.
    pub async fn check_token(&self) -> Result<(), ApiError> {
        self.tokens.token().await.map(drop)
    }

    /// One page of one row of the export (`pageSize=1`; its next link is not followed): whether
    /// the app may read it. Returns the rows it got, not decoded beyond the page's shape.
    pub async fn probe_export(&self) -> Result<usize, ApiError> {
        let mut url = self.url(&["api", "machines", "SoftwareVulnerabilitiesByMachine"]);
        url.query_pairs_mut().append_pair("pageSize", "1");
        let (page, _): (Page<Box<RawValue>>, u64) =
            self.get_json(Endpoint::Export, &url, self.options.max_page_bytes).await?;
        Ok(page.value.len())
    }
}
