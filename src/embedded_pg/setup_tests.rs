//! Tests of what is worked out before a server runs, with no server: where the state directory
//! is, the server options and their quoting, where the binaries are, URL encoding and quoting of
//! identifiers, and the rewriting of `pg_hba.conf` lines that trust TCP.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::binaries::find_bin_dir;
use super::cluster::server_options;
use super::state_dir::Layout;
use super::*;

#[test]
fn state_dir_precedence() {
    let os = |s: &str| Some(OsString::from(s));
    assert_eq!(
        state_dir_from(os("/var/lib/kbwatch:/var/lib/other"), os("/home/u/.local/state")),
        PathBuf::from("/var/lib/kbwatch")
    );
    assert_eq!(state_dir_from(os("/srv/kb"), None), PathBuf::from("/srv/kb"));
    assert_eq!(
        state_dir_from(None, os("/home/u/.local/state")),
        PathBuf::from("/home/u/.local/state/kbwatch")
    );
    assert_eq!(
        state_dir_from(os(""), os("/home/u/.local/state")),
        PathBuf::from("/home/u/.local/state/kbwatch")
    );
    assert_eq!(state_dir_from(None, os("relative/state")), PathBuf::from(".kbwatch"));
    assert_eq!(state_dir_from(None, os("")), PathBuf::from(".kbwatch"));
    assert_eq!(state_dir_from(None, None), PathBuf::from(".kbwatch"));
}

#[test]
fn server_options_quote_the_socket_path() {
    let layout = Layout::new(Path::new("/tmp/it's \"odd\"")).expect("layout");
    let opts = server_options(&layout, 5433);
    assert_eq!(
        opts.to_str().expect("utf-8"),
        "-c listen_addresses=127.0.0.1 -c port=5433 -c max_connections=200 -c shared_buffers=128MB -c fsync=on \
         -c 'unix_socket_directories=\"/tmp/it'\\''s \"\"odd\"\"/socket\"'"
    );

    let long = Layout::new(&Path::new("/tmp").join("x".repeat(100))).expect("layout");
    assert!(!long.socket_usable());
    assert!(
        server_options(&long, 5433)
            .to_str()
            .expect("utf-8")
            .ends_with("-c 'unix_socket_directories='")
    );
}

#[test]
fn bin_dir_discovery() {
    fn fake_bin(dir: &Path, names: &[&str]) {
        std::fs::create_dir_all(dir).expect("mkdir");
        for name in names {
            let path = dir.join(name);
            std::fs::write(&path, "#!/bin/sh\n").expect("write");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
    }
    let root = tempfile::tempdir().expect("temp dir");
    let all = ["pg_ctl", "initdb", "postgres"];
    let partial = root.path().join("partial");
    fake_bin(&partial, &["pg_ctl", "initdb"]);
    let lib = root.path().join("lib");
    fake_bin(&lib.join("9.6/bin"), &all);
    fake_bin(&lib.join("15/bin"), &all);
    fake_bin(&lib.join("16/bin"), &["pg_ctl"]);
    fake_bin(&lib.join("notaversion/bin"), &all);

    let path = std::env::join_paths([partial.clone()]).expect("PATH");
    assert_eq!(find_bin_dir(Some(&path), &lib), Some(lib.join("15/bin")));

    let full = root.path().join("full");
    fake_bin(&full, &all);
    let path = std::env::join_paths([partial, full.clone()]).expect("PATH");
    assert_eq!(find_bin_dir(Some(&path), &lib), Some(full));

    assert_eq!(find_bin_dir(None, &root.path().join("none")), None);
}

#[test]
fn url_encoding_and_identifiers() {
    assert_eq!(percent_encode("kb_watch-1.x~"), "kb_watch-1.x~");
    assert_eq!(percent_encode("a b/é"), "a%20b%2F%C3%A9");
    assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
}

#[test]
fn host_trust_lines_are_found_and_replaced() {
    let hba = "# host all all 0.0.0.0/0 trust\n\
               local all all trust\n\
               host all all 127.0.0.1/32 trust\n\
               host all all ::1 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff trust\n\
               hostssl trust trust 10.0.0.0/8 scram-sha-256\n";
    assert_eq!(
        password::without_host_trust(hba).expect("two host lines trust"),
        "# host all all 0.0.0.0/0 trust\n\
         local all all trust\n\
         host all all 127.0.0.1/32 scram-sha-256\n\
         host all all ::1 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff scram-sha-256\n\
         hostssl trust trust 10.0.0.0/8 scram-sha-256\n"
    );
    assert_eq!(password::without_host_trust("local all all trust\n"), None);
}
