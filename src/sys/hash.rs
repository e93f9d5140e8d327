//! One content hash for the whole project: SHA-256 (RustCrypto's `sha2`), cut to 64 bits
//! where a short stable name or a change check is all that is needed (host object names
//! per VE and root, a chunk of an image that changed between two passes).

use sha2::{Digest, Sha256};

/// The first 64 bits of SHA-256 over the parts, in order.
pub fn short(parts: &[&[u8]]) -> u64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_order_sensitive() {
        // SHA-256("abc") starts ba7816bf8f01cfea.
        assert_eq!(short(&[b"abc"]), 0xba7816bf8f01cfea);
        assert_eq!(short(&[b"a", b"bc"]), short(&[b"abc"]));
        assert_ne!(short(&[b"abc"]), short(&[b"acb"]));
    }
}
