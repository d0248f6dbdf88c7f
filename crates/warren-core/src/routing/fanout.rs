//! Fanout exchanges: every binding matches.

use super::Destination;

#[derive(Debug, Default)]
pub struct FanoutRouter {
    dests: Vec<Destination>,
}

impl FanoutRouter {
    pub fn bind(&mut self, dest: &Destination) {
        self.dests.push(dest.clone());
    }

    pub fn unbind(&mut self, dest: &Destination) {
        if let Some(i) = self.dests.iter().position(|d| d == dest) {
            self.dests.swap_remove(i);
        }
    }

    pub fn route(&self, out: &mut dyn FnMut(&Destination)) {
        self.dests.iter().for_each(out);
    }
}
