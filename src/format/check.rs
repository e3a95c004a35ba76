//! Check codes: iscsi32 (CRC-32C), xxhash64 with HAMMER2's seed, sha192
//! (SHA-256 folded to 24 bytes), and the freemap CRC.
//!
//! The CRC-32C itself ([`icrc32`]) is defined in [`crate::format`], which
//! needs it for the volume header's own CRCs and must not call up into this
//! module; it is re-exported here with the other check codes.

use crate::format::{Blockref, CheckMethod, XXH_HAMMER2_SEED};
use sha2::{Digest, Sha256};

pub use crate::format::icrc32;

/// xxhash64 with HAMMER2's seed.
pub fn xxhash64(data: &[u8]) -> u64 {
    xxhash_rust::xxh64::xxh64(data, XXH_HAMMER2_SEED)
}

/// sha192: the SHA-256 digest's last 8 bytes xored into bytes 16..24, keeping
/// the first 24 bytes, as DragonFly's kernel and fsck_hammer2 compute it
/// (`u.digest64[2] ^= u.digest64[3]`). The reference tools in
/// ../shared/reftools get it wrong: hammer2-utils' fsck_hammer2 compares
/// the unfolded SHA-256 and rejects every sha192 block, and makefs asserts
/// ("unsupported") on reading one.
pub fn sha192(data: &[u8]) -> [u8; 24] {
    let digest = Sha256::digest(data);
    let mut out = [0u8; 24];
    out.copy_from_slice(&digest[..24]);
    for i in 0..8 {
        out[16 + i] ^= digest[24 + i];
    }
    out
}

/// Outcome of verifying a blockref's check code against its media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    /// The stored code matches.
    Ok,
    /// The method carries no check (none/disabled).
    NotChecked,
    /// Mismatch; both values rendered as hex for reports.
    Mismatch { expected: String, found: String },
    /// The method is unknown to this version.
    UnknownMethod(u8),
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Verifies `bref`'s check code over `data` (the physical media bytes).
/// `expected` is what the blockref stores, `found` what the data hashes to.
pub fn verify(bref: &Blockref, data: &[u8]) -> CheckOutcome {
    match bref.check_method() {
        CheckMethod::None | CheckMethod::Disabled => CheckOutcome::NotChecked,
        CheckMethod::Iscsi32 => {
            let stored = u32::from_le_bytes(bref.check[0..4].try_into().unwrap());
            compare(stored, icrc32(data), |v| format!("{v:08x}"))
        }
        CheckMethod::Freemap => {
            let stored = bref.freemap_check().icrc32.get();
            compare(stored, icrc32(data), |v| format!("{v:08x}"))
        }
        CheckMethod::Xxhash64 => {
            let stored = u64::from_le_bytes(bref.check[0..8].try_into().unwrap());
            compare(stored, xxhash64(data), |v| format!("{v:016x}"))
        }
        CheckMethod::Sha192 => {
            let stored: [u8; 24] = bref.check[0..24].try_into().unwrap();
            compare(stored, sha192(data), |v| hex(&v))
        }
        CheckMethod::Unknown(m) => CheckOutcome::UnknownMethod(m),
    }
}

fn compare<T: PartialEq + Copy>(stored: T, computed: T, show: impl Fn(T) -> String) -> CheckOutcome {
    if stored == computed {
        CheckOutcome::Ok
    } else {
        CheckOutcome::Mismatch { expected: show(stored), found: show(computed) }
    }
}

/// Stores the check code of `data` into `bref` according to its method.
/// Other check-area bytes are left alone (the freemap hints live there).
pub fn set_check(bref: &mut Blockref, data: &[u8]) {
    match bref.check_method() {
        CheckMethod::Iscsi32 => bref.check[0..4].copy_from_slice(&icrc32(data).to_le_bytes()),
        CheckMethod::Freemap => bref.freemap_check_mut().icrc32 = icrc32(data).into(),
        CheckMethod::Xxhash64 => bref.check[0..8].copy_from_slice(&xxhash64(data).to_le_bytes()),
        CheckMethod::Sha192 => bref.check[0..24].copy_from_slice(&sha192(data)),
        CheckMethod::None | CheckMethod::Disabled | CheckMethod::Unknown(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{encode_methods, CompMethod};

    #[test]
    fn icrc32_is_crc32c() {
        // The standard CRC-32C check value.
        assert_eq!(icrc32(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn set_then_verify_for_every_method() {
        let data = vec![0x5au8; 4096];
        for m in [CheckMethod::Iscsi32, CheckMethod::Xxhash64, CheckMethod::Sha192, CheckMethod::Freemap] {
            let mut b = Blockref::zeroed();
            b.methods = encode_methods(m, CompMethod::None);
            set_check(&mut b, &data);
            assert_eq!(verify(&b, &data), CheckOutcome::Ok, "{m}");
            let mut bad = data.clone();
            bad[100] ^= 1;
            assert!(matches!(verify(&b, &bad), CheckOutcome::Mismatch { .. }), "{m}");
        }
    }
}
