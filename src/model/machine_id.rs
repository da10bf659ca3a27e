//! Machine ids: only 40 hex digits ever reach a URL.

/// A validated machine id: 40 hex digits, lower-case, kept inline (a scan plan holds one per
/// device, so no allocation each).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MachineId([u8; 40]);

impl MachineId {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("a validated id is ASCII hex digits")
    }

    /// The 20 bytes its 40 hex digits spell: a compact key where many ids are kept.
    pub fn to_bytes(&self) -> [u8; 20] {
        let mut bytes = [0; 20];
        hex::decode_to_slice(self.0, &mut bytes).expect("a validated id is 40 hex digits");
        bytes
    }

    /// The id whose digits spell `bytes`: [`MachineId::to_bytes`] back.
    pub fn from_bytes(bytes: [u8; 20]) -> MachineId {
        let mut digits = [0; 40];
        hex::encode_to_slice(bytes, &mut digits).expect("40 digits hold 20 bytes");
        MachineId(digits)
    }
}

impl std::fmt::Display for MachineId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for MachineId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("MachineId").field(&self.as_str()).finish()
    }
}

/// Accepts exactly `^[0-9a-fA-F]{40}$` and returns it lower-cased.
pub fn validate_machine_id(id: &str) -> Option<MachineId> {
    let digits: [u8; 40] = id.as_bytes().try_into().ok()?;
    digits
        .iter()
        .all(u8::is_ascii_hexdigit)
        .then(|| MachineId(digits.map(|b| b.to_ascii_lowercase())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_the_digits_pairwise() {
        let id = validate_machine_id(&format!("00ff{}", "A1".repeat(18))).unwrap();
        let bytes = id.to_bytes();
        assert_eq!((bytes[0], bytes[1], bytes[19]), (0x00, 0xff, 0xa1));
        assert_eq!(hex::encode(bytes), id.as_str());
        assert_eq!(MachineId::from_bytes(bytes), id);
    }

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
