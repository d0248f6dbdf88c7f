//! Server-generated names and name rules.

/// Characters RabbitMQ uses for generated names (URL-safe base64).
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A random name with the given prefix and 22 base64 characters (128 bits),
/// as RabbitMQ generates `amq.gen-…` queue names and `amq.ctag-…` tags.
pub fn generate(prefix: &str, mut random: impl FnMut() -> u64) -> String {
    let mut s = String::with_capacity(prefix.len() + 22);
    s.push_str(prefix);
    let mut bits = random();
    let mut left = 10;
    for _ in 0..22 {
        if left == 0 {
            bits = random();
            left = 10;
        }
        s.push(ALPHABET[(bits & 63) as usize] as char);
        bits >>= 6;
        left -= 1;
    }
    s
}

/// Whether a name uses the prefix reserved for the broker.
pub fn is_reserved(name: &str) -> bool {
    name.starts_with("amq.")
}
