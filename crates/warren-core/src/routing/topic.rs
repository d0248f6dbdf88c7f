//! Topic exchanges: binding keys are dot-separated words where `*` matches
//! exactly one word and `#` matches zero or more.
//!
//! Bindings are held in a trie keyed by word, so routing cost grows with the
//! length of the routing key and the number of wildcard branches it meets,
//! not with the number of bindings. A run of `#` words is folded into one
//! (they match the same keys), and matching remembers which `#` states it has
//! visited, so no key/pattern pair can make it backtrack exponentially.

use ahash::AHashMap as HashMap;

use super::Destination;

#[derive(Debug, Default)]
struct Node {
    words: HashMap<Box<str>, Node>,
    star: Option<Box<Node>>,
    hash: Option<Box<Node>>,
    dests: Vec<Destination>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.words.is_empty() && self.star.is_none() && self.hash.is_none() && self.dests.is_empty()
    }
}

#[derive(Debug, Default)]
pub struct TopicRouter {
    root: Node,
}

/// Splits a key into words; the empty key has no words.
fn words(key: &str) -> impl Iterator<Item = &str> {
    let mut it = key.split('.');
    if key.is_empty() {
        it.next();
    }
    it
}

/// The words of a binding key with runs of `#` folded into one.
fn pattern(key: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for w in words(key) {
        if w == "#" && out.last() == Some(&"#") {
            continue;
        }
        out.push(w);
    }
    out
}

impl TopicRouter {
    pub fn bind(&mut self, dest: &Destination, key: &str) {
        let mut node = &mut self.root;
        for w in pattern(key) {
            node = match w {
                "*" => node.star.get_or_insert_with(Default::default),
                "#" => node.hash.get_or_insert_with(Default::default),
                _ => node.words.entry(w.into()).or_default(),
            };
        }
        node.dests.push(dest.clone());
    }

    pub fn unbind(&mut self, dest: &Destination, key: &str) {
        fn remove(node: &mut Node, pat: &[&str], dest: &Destination) {
            let Some((first, rest)) = pat.split_first() else {
                if let Some(i) = node.dests.iter().position(|d| d == dest) {
                    node.dests.swap_remove(i);
                }
                return;
            };
            match *first {
                "*" | "#" => {
                    let slot = if *first == "*" {
                        &mut node.star
                    } else {
                        &mut node.hash
                    };
                    if let Some(child) = slot {
                        remove(child, rest, dest);
                        if child.is_empty() {
                            *slot = None;
                        }
                    }
                }
                w => {
                    if let Some(child) = node.words.get_mut(w) {
                        remove(child, rest, dest);
                        if child.is_empty() {
                            node.words.remove(w);
                        }
                    }
                }
            }
        }
        // Binding keys are at most 255 bytes, so this recursion is bounded.
        remove(&mut self.root, &pattern(key), dest);
    }

    pub fn route(&self, key: &str, out: &mut dyn FnMut(&Destination)) {
        let words: Vec<&str> = words(key).collect();
        let n = words.len();
        let mut stack: Vec<(&Node, usize)> = vec![(&self.root, 0)];
        let mut seen_hash: Vec<(*const Node, usize)> = Vec::new();
        while let Some((node, i)) = stack.pop() {
            if let Some(hash) = &node.hash {
                let ptr: *const Node = &**hash;
                // `#` consumes any number of the remaining words.
                for j in i..=n {
                    if !seen_hash.contains(&(ptr, j)) {
                        seen_hash.push((ptr, j));
                        stack.push((hash, j));
                    }
                }
            }
            if i == n {
                node.dests.iter().for_each(&mut *out);
                continue;
            }
            if let Some(child) = node.words.get(words[i]) {
                stack.push((child, i + 1));
            }
            if let Some(star) = &node.star {
                stack.push((star, i + 1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(binding: &str, key: &str) -> bool {
        let mut r = TopicRouter::default();
        let d = Destination::Queue("q".into());
        r.bind(&d, binding);
        let mut hit = false;
        r.route(key, &mut |_| hit = true);
        hit
    }

    #[test]
    fn table() {
        let cases = [
            ("a.b.c", "a.b.c", true),
            ("a.*.c", "a.b.c", true),
            ("a.*.c", "a.c", false),
            ("a.#", "a", true),
            ("a.#", "a.b.c", true),
            ("#", "", true),
            ("#", "a.b", true),
            ("*", "", false),
            ("*", "a", true),
            ("*", "a.b", false),
            ("#.c", "c", true),
            ("#.c", "a.b.c", true),
            ("#.c", "a.b.c.d", false),
            ("a.#.#.c", "a.c", true),
            ("a.#.#.c", "a.x.y.c", true),
            ("#.#", "", true),
            ("a.#.b", "a.b", true),
            ("a.#.b", "a.x.b", true),
            ("a.#.b", "a.b.x", false),
            ("*.#", "", false),
            ("*.#", "a", true),
            ("#.*", "a.b", true),
            ("", "", true),
            ("", "a", false),
            ("a..b", "a..b", true),
            ("a.*.b", "a..b", true),
            ("*.*", "a.b", true),
            ("*.*", "a.b.c", false),
        ];
        for (binding, key, want) in cases {
            assert_eq!(matches(binding, key), want, "{binding:?} vs {key:?}");
        }
    }

    #[test]
    fn unbind_prunes() {
        let mut r = TopicRouter::default();
        let d = Destination::Queue("q".into());
        r.bind(&d, "a.*.#");
        r.unbind(&d, "a.*.#");
        assert!(r.root.is_empty());
    }

    #[test]
    fn many_hashes_do_not_explode() {
        let mut r = TopicRouter::default();
        let d = Destination::Queue("q".into());
        r.bind(&d, "#.a.#.a.#.a.#.a.#.a.#.b");
        let key = vec!["a"; 120].join(".");
        let mut hit = false;
        r.route(&key, &mut |_| hit = true);
        assert!(!hit);
    }
}
