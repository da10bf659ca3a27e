//! Checks of single values, whatever key holds them: URLs, files, tenant ids. A `check_*` pushes a
//! [`Problem`] for the key path it is given, never with the value of a secret.

use std::fs::File;
use std::path::Path;

use url::{Host, Url};

use crate::config::Problem;

/// True when `text` starts with a URL scheme (`postgres://`).
pub(super) fn is_url(text: &str) -> bool {
    text.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    })
}

/// True when a PostgreSQL URL carries a password, in its user info or as a `password` parameter.
pub(super) fn url_has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let (authority, query) = match rest.split_once('?') {
        Some((before, query)) => (before, query),
        None => (rest, ""),
    };
    let authority = authority.split('/').next().unwrap_or_default();
    let in_userinfo =
        authority.rsplit_once('@').is_some_and(|(userinfo, _)| userinfo.contains(':'));
    in_userinfo || query.split('&').any(|pair| pair.split('=').next() == Some("password"))
}

/// https anywhere, http only for a loopback host.
pub(super) fn check_url(path: &str, url: &Url, out: &mut Vec<Problem>) {
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(url) => {}
        "http" => out.push(problem(
            path,
            "must use https; http is accepted only for a loopback host (localhost, 127.0.0.0/8, ::1)",
        )),
        other => out.push(problem(path, format!("scheme {other:?} is not supported; use https"))),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

pub(super) fn check_readable(path: &str, file: &Path, out: &mut Vec<Problem>) {
    let shown = file.display();
    match File::open(file).and_then(|f| f.metadata()) {
        Ok(meta) if meta.is_dir() => {
            out.push(problem(path, format!("{shown} is a directory, not a file")))
        }
        Ok(_) => {}
        Err(e) => out.push(problem(path, format!("cannot read {shown}: {e}"))),
    }
}

pub(super) fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

pub(super) fn is_domain(s: &str) -> bool {
    let labels: Vec<&str> = s.split('.').collect();
    let label_ok = |l: &&str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    s.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(label_ok)
        && labels.last().is_some_and(|tld| tld.bytes().any(|b| b.is_ascii_alphabetic()))
}

pub(super) fn problem(path: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem { path: path.into(), message: message.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_and_passwords() {
        assert!(is_guid("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"));
        assert!(!is_guid("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f"));
        assert!(is_domain("contoso.onmicrosoft.com"));
        assert!(!is_domain("contoso"));
        assert!(!is_domain("-bad.com"));
        assert!(url_has_password("postgres://kb:pw@db:5432/kbwatch"));
        assert!(url_has_password("postgresql://kb@db/kbwatch?sslmode=require&password=pw"));
        assert!(!url_has_password("postgres://kb@db/kbwatch"));
        assert!(!url_has_password("postgres://db/kbwatch?user=a:b"));
    }

    #[test]
    fn loopback_hosts() {
        for ok in ["http://localhost:8080", "http://127.0.0.2/", "http://[::1]:9/"] {
            assert!(is_loopback(&Url::parse(ok).unwrap()), "{ok}");
        }
        for bad in ["http://10.0.0.1", "http://localhost.example.com", "http://[::2]/"] {
            assert!(!is_loopback(&Url::parse(bad).unwrap()), "{bad}");
        }
    }
}
