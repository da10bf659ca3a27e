//! Cloud presets and the environment of Azure hosts, applied to the TOML table before it is
//! deserialized, so that a key written in the file or set by `KBWATCH_*` always wins.
//!
//! - `cloud` presets `api_base`, `auth.authority` and `auth.scope` (hosts from
//!   `reference/defender-api.md` §4; the US Government scopes follow msticpy's `<api host>/.default`,
//!   which Microsoft's pages do not state).
//! - `workload_identity` takes `tenant_id`, `client_id` and `federated_token_file` from the
//!   `AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and `AZURE_FEDERATED_TOKEN_FILE` variables that the
//!   Azure Workload Identity webhook injects.

use serde::Deserialize;
use toml::{Table, Value};

/// The Microsoft cloud a tenant lives in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cloud {
    #[default]
    Public,
    UsgovGcc,
    UsgovHigh,
    UsgovDod,
}

impl Cloud {
    fn parse(name: &str) -> Option<Cloud> {
        Cloud::deserialize(Value::String(name.to_owned())).ok()
    }

    fn api_host(self) -> &'static str {
        match self {
            Cloud::Public => "https://api.security.microsoft.com",
            Cloud::UsgovGcc => "https://api-gcc.securitycenter.microsoft.us",
            Cloud::UsgovHigh | Cloud::UsgovDod => "https://api-gov.securitycenter.microsoft.us",
        }
    }

    fn authority_host(self) -> &'static str {
        match self {
            Cloud::Public | Cloud::UsgovGcc => "https://login.microsoftonline.com",
            Cloud::UsgovHigh | Cloud::UsgovDod => "https://login.microsoftonline.us",
        }
    }

    /// The API base URL.
    pub fn api_base(self) -> url::Url {
        url::Url::parse(self.api_host()).expect("constant URL parses")
    }

    /// The Entra ID authority host.
    pub fn authority(self) -> url::Url {
        url::Url::parse(self.authority_host()).expect("constant URL parses")
    }

    /// The token scope (the public cloud's audience, whatever regional host is called).
    pub fn scope(self) -> &'static str {
        match self {
            Cloud::Public => "https://api.securitycenter.microsoft.com/.default",
            Cloud::UsgovGcc => "https://api-gcc.securitycenter.microsoft.us/.default",
            Cloud::UsgovHigh | Cloud::UsgovDod => {
                "https://api-gov.securitycenter.microsoft.us/.default"
            }
        }
    }
}

/// The keys of `workload_identity` that default from the variables its webhook injects.
pub(super) const WORKLOAD_IDENTITY_ENV: [(&str, &str); 3] = [
    ("tenant_id", "AZURE_TENANT_ID"),
    ("client_id", "AZURE_CLIENT_ID"),
    ("federated_token_file", "AZURE_FEDERATED_TOKEN_FILE"),
];

/// Fills the keys each tenant leaves out from its cloud and, for `workload_identity`, from `env`.
/// A `cloud` name that does not parse is left for deserialization to report.
pub(super) fn apply(table: &mut Table, env: &[(String, String)]) {
    let Some(Value::Array(tenants)) = table.get_mut("tenant") else { return };
    for tenant in tenants.iter_mut().filter_map(Value::as_table_mut) {
        let cloud = match tenant.get("cloud").and_then(Value::as_str) {
            Some(name) => Cloud::parse(name).unwrap_or_default(),
            None => Cloud::Public,
        };
        insert_missing(tenant, "api_base", cloud.api_host());
        let Some(Value::Table(auth)) = tenant.get_mut("auth") else { continue };
        insert_missing(auth, "authority", cloud.authority_host());
        insert_missing(auth, "scope", cloud.scope());
        if auth.get("kind").and_then(Value::as_str) == Some("workload_identity") {
            for (key, var) in WORKLOAD_IDENTITY_ENV {
                if let Some((_, value)) = env.iter().find(|(k, v)| k == var && !v.is_empty()) {
                    insert_missing(auth, key, value);
                }
            }
        }
    }
}

fn insert_missing(table: &mut Table, key: &str, value: &str) {
    table.entry(key).or_insert_with(|| Value::String(value.to_owned()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(text: &str, env: &[(&str, &str)]) -> Table {
        let mut table: Table = text.parse().expect("test TOML parses");
        let env: Vec<_> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        apply(&mut table, &env);
        table
    }

    fn get<'a>(t: &'a Table, tenant: usize, path: &[&str]) -> Option<&'a str> {
        let mut v = &t["tenant"][tenant];
        for key in path {
            v = v.get(key)?;
        }
        v.as_str()
    }

    #[test]
    fn a_cloud_presets_hosts_and_scope_and_explicit_keys_win() {
        let t = applied(
            "[[tenant]]\ncloud = \"usgov-high\"\n[tenant.auth]\nkind = \"client_secret\"\n\
             [[tenant]]\ncloud = \"usgov-gcc\"\napi_base = \"https://example.test\"\n\
             [tenant.auth]\nkind = \"client_secret\"\nscope = \"s/.default\"\n\
             [[tenant]]\n[tenant.auth]\nkind = \"token_file\"\n",
            &[],
        );
        assert_eq!(get(&t, 0, &["api_base"]), Some("https://api-gov.securitycenter.microsoft.us"));
        assert_eq!(get(&t, 0, &["auth", "authority"]), Some("https://login.microsoftonline.us"));
        assert_eq!(
            get(&t, 0, &["auth", "scope"]),
            Some("https://api-gov.securitycenter.microsoft.us/.default")
        );
        assert_eq!(get(&t, 1, &["api_base"]), Some("https://example.test"));
        assert_eq!(get(&t, 1, &["auth", "authority"]), Some("https://login.microsoftonline.com"));
        assert_eq!(get(&t, 1, &["auth", "scope"]), Some("s/.default"));
        assert_eq!(get(&t, 2, &["api_base"]), Some("https://api.security.microsoft.com"));
        assert_eq!(
            get(&t, 2, &["auth", "scope"]),
            Some("https://api.securitycenter.microsoft.com/.default")
        );
    }

    #[test]
    fn workload_identity_reads_the_webhook_variables_unless_set() {
        let env = [
            ("AZURE_TENANT_ID", "00000000-0000-0000-0000-000000000009"),
            ("AZURE_CLIENT_ID", "from-env"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/secrets/azure/tokens/azure-identity-token"),
        ];
        let t = applied(
            "[[tenant]]\n[tenant.auth]\nkind = \"workload_identity\"\nclient_id = \"explicit\"\n\
             [[tenant]]\n[tenant.auth]\nkind = \"client_secret\"\n",
            &env,
        );
        assert_eq!(get(&t, 0, &["auth", "tenant_id"]), Some(env[0].1));
        assert_eq!(get(&t, 0, &["auth", "client_id"]), Some("explicit"));
        assert_eq!(get(&t, 0, &["auth", "federated_token_file"]), Some(env[2].1));
        assert_eq!(get(&t, 1, &["auth", "tenant_id"]), None, "other kinds ignore them");
    }
}
