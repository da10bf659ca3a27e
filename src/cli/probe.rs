//! `kbwatch validate --online`, per tenant: a token, then one call to each endpoint kbwatch uses,
//! each refusal (403, or 401 after a good token) named by the application permission it needs.

use super::escape;
use crate::config::{TenantConfig, TlsConfig};
use crate::defender::{ApiError, Client, client_for};
use crate::model::validate_machine_id;

/// An endpoint probed, what it is called in messages, and the permission it needs.
#[derive(Clone, Copy)]
struct Call {
    what: &'static str,
    permission: &'static str,
}

const LIST: Call = Call { what: "device list", permission: "Machine.Read.All" };
const KBS: Call = Call { what: "getmissingkbs", permission: "Software.Read.All" };
const EXPORT: Call = Call { what: "export", permission: "Vulnerability.Read.All" };

/// Probes `tenant`, printing a line per call; returns whether every call succeeded.
pub(super) async fn tenant(tenant: &TenantConfig, tls: &TlsConfig) -> anyhow::Result<bool> {
    let probe = TenantConfig { page_size: 1, ..tenant.clone() };
    let client = client_for(&probe, tls)?;
    let name = tenant.name.as_str();
    if let Err(e) = client.check_token().await {
        println!("{}", probe_failed(name, &e));
        return Ok(false);
    }
    let mut pager = client.machines(tenant.device_filter.as_deref());
    let mut ok = true;
    let first = match pager.next_page().await {
        Ok(page) => {
            let page = page.unwrap_or_default();
            let n = page.len();
            println!("{name}: token ok, device list answers ({n} device(s) on a one-row page)");
            page.into_iter().next()
        }
        Err(e) => {
            refused(name, LIST, &e);
            ok = false;
            None
        }
    };
    if let Some(machine) = first {
        ok &= missing_kbs(&client, name, &machine.id).await;
    }
    if tenant.export.enabled {
        match client.probe_export().await {
            Ok(rows) => println!("{name}: the export answers ({rows} row(s) on a one-row page)"),
            Err(e) => {
                refused(name, EXPORT, &e);
                ok = false;
            }
        }
    }
    Ok(ok)
}

/// One getmissingkbs call on the listed device `id`, once it is a valid machine id.
async fn missing_kbs(client: &Client, name: &str, id: &str) -> bool {
    let Some(id) = validate_machine_id(id) else {
        println!("{name}: the listed device has an invalid id; getmissingkbs not probed");
        return true;
    };
    match client.missing_kbs(&id).await {
        Ok(kbs) => println!("{name}: getmissingkbs answers ({} KB(s) on one device)", kbs.len()),
        // The device went between the two calls: nothing to say about the permission.
        Err(ApiError::NotFound) => println!("{name}: the listed device is gone (404)"),
        Err(e) => {
            refused(name, KBS, &e);
            return false;
        }
    }
    true
}

/// Prints the permission a refusal means, when it is one, then the API's message.
fn refused(name: &str, call: Call, e: &ApiError) {
    if let Some(line) = lacks(name, call, e) {
        println!("{line}");
    }
    println!("{}", probe_failed(name, e));
}

/// `tenant "contoso": the app lacks Vulnerability.Read.All (the export answered 403)`, for a 403
/// or a 401 (the token was good, so the API refused it for this call).
fn lacks(name: &str, call: Call, e: &ApiError) -> Option<String> {
    let status = match e {
        ApiError::Forbidden(_) => 403,
        ApiError::Unauthorized(_) => 401,
        _ => return None,
    };
    let Call { what, permission } = call;
    Some(format!("tenant {name:?}: the app lacks {permission} (the {what} answered {status})"))
}

/// The line printed when a tenant's probe fails: the API's message with controls escaped.
fn probe_failed(tenant: &str, e: &ApiError) -> String {
    format!("{tenant}: {}", escape::terminal(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_probe_shows_the_api_message_escaped() {
        let e = ApiError::Status { status: 400, body: "machines: bad\x1b[2J\x1b]0;x\x07\n".into() };
        assert_eq!(
            probe_failed("t1", &e),
            "t1: unexpected status 400: machines: bad\\x1b[2J\\x1b]0;x\\x07\\x0a"
        );
    }

    #[test]
    fn refusals_name_the_permission_and_other_failures_do_not() {
        let e = ApiError::Forbidden("Missing application roles.".into());
        assert_eq!(
            lacks("contoso", EXPORT, &e).as_deref(),
            Some(
                r#"tenant "contoso": the app lacks Vulnerability.Read.All (the export answered 403)"#
            )
        );
        let e = ApiError::Unauthorized("no".into());
        let line = lacks("t1", KBS, &e).unwrap_or_default();
        assert!(
            line.ends_with("lacks Software.Read.All (the getmissingkbs answered 401)"),
            "{line}"
        );
        assert_eq!(lacks("t1", LIST, &ApiError::NotFound), None);
    }
}
