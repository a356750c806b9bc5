//! Random secrets, their stored hashes, and constant-time comparison.

use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// `len` characters from a 62-letter alphabet (5.95 bits each) from the OS-seeded CSPRNG.
pub fn random_string(len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect()
}

/// The stored form of a high-entropy random secret. (Passwords use argon2id instead.)
pub fn hash_token(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Constant-time equality of a presented secret's hash with the stored one.
pub fn token_matches(secret: &str, stored_hash: &str) -> bool {
    hash_token(secret).as_bytes().ct_eq(stored_hash.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_compare() {
        let s = random_string(40);
        assert_eq!(s.len(), 40);
        assert!(token_matches(&s, &hash_token(&s)));
        assert!(!token_matches("other", &hash_token(&s)));
        assert_ne!(random_string(40), random_string(40));
    }
}
