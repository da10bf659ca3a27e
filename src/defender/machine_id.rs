//! Machine ids: only 40 hex digits ever reach a URL.

/// A validated machine id: 40 hex digits, lower-case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MachineId(String);

impl MachineId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for MachineId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Accepts exactly `^[0-9a-fA-F]{40}$` and returns it lower-cased.
pub fn validate_machine_id(id: &str) -> Option<MachineId> {
    (id.len() == 40 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| MachineId(id.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_forty_hex_digits_pass() {
        let good = "2339AD14a01bd0299afb93dfa2550136057bff96";
        assert_eq!(validate_machine_id(good).unwrap().as_str(), good.to_ascii_lowercase());
        for bad in [
            "../x",
            &good[..39],
            &format!("{good}0"),
            "g339ad14a01bd0299afb93dfa2550136057bff96",
            "",
            "2339ad14a01bd0299afb93dfa2550136057bff9/",
        ] {
            assert!(validate_machine_id(bad).is_none(), "{bad:?} passed");
        }
    }
}
