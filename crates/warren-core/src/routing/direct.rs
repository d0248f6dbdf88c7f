//! Direct exchanges: the routing key must equal the binding key.

use ahash::AHashMap as HashMap;

use super::Destination;

#[derive(Debug, Default)]
pub struct DirectRouter {
    by_key: HashMap<String, Vec<Destination>>,
}

impl DirectRouter {
    pub fn bind(&mut self, dest: &Destination, key: &str) {
        self.by_key
            .entry(key.to_string())
            .or_default()
            .push(dest.clone());
    }

    pub fn unbind(&mut self, dest: &Destination, key: &str) {
        if let Some(dests) = self.by_key.get_mut(key) {
            if let Some(i) = dests.iter().position(|d| d == dest) {
                dests.swap_remove(i);
            }
            if dests.is_empty() {
                self.by_key.remove(key);
            }
        }
    }

    pub fn route(&self, key: &str, out: &mut dyn FnMut(&Destination)) {
        if let Some(dests) = self.by_key.get(key) {
            dests.iter().for_each(out);
        }
    }
}
