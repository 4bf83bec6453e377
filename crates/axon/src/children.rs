//! A component's list of children, in the order they were added, with removal that costs the
//! same however long the list is.
//!
//! A server is the parent of every open connection's components, and removes two of them at each
//! close. A plain list made each removal a scan of all the others: with ten thousand connections
//! open, every close read twenty thousand entries.

use rustc_hash::FxHashMap;

use crate::component::{shrink_target, ComponentId, Core};

/// From this many entries on, the list keeps an index from child to position (below, a scan is
/// as cheap).
const INDEX_FROM: usize = 16;

/// The children of one component, in the order they were added, each once.
#[derive(Default)]
pub(crate) struct Children {
    /// In the order added; `None` where a child was removed since the last compaction.
    list: Vec<Option<Core>>,
    /// How many entries of `list` are children.
    live: usize,
    /// Where each child is in `list`, once the list is long. Ids are handed out by the process,
    /// so a plain fast hash will do.
    index: Option<FxHashMap<ComponentId, usize>>,
}

impl Children {
    /// Adds `child` at the end; false (and no change) if it is already a child.
    pub(crate) fn add(&mut self, child: &Core) -> bool {
        let id = child.id();
        if self.position(id).is_some() {
            return false;
        }
        if self.index.is_none() && self.list.len() >= INDEX_FROM {
            self.reindex();
        }
        if let Some(index) = &mut self.index {
            index.insert(id, self.list.len());
        }
        self.list.push(Some(child.clone()));
        self.live += 1;
        true
    }

    /// Removes the child with this id; false if there is none.
    pub(crate) fn remove(&mut self, id: ComponentId) -> bool {
        let Some(pos) = self.position(id) else {
            return false;
        };
        self.list[pos] = None;
        if let Some(index) = &mut self.index {
            index.remove(&id);
        }
        self.live -= 1;
        // Compacted once at least half the entries are gaps: each removal pays for one move later.
        if self.list.len() >= 2 * self.live.max(INDEX_FROM / 2) {
            self.compact();
        }
        true
    }

    /// The children, in the order they were added.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Core> {
        self.list.iter().flatten()
    }

    /// How many children there are.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.live
    }

    fn position(&self, id: ComponentId) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(&id).copied(),
            None => self
                .list
                .iter()
                .position(|c| c.as_ref().is_some_and(|c| c.id() == id)),
        }
    }

    /// Rebuilds the index from `list`, in the index's own memory if it has one (given back as
    /// the list's is, see [`shrink_target`]).
    fn reindex(&mut self) {
        let index = self.index.get_or_insert_with(FxHashMap::default);
        index.clear();
        if let Some(to) = shrink_target(index.capacity(), self.live.max(INDEX_FROM)) {
            index.shrink_to(to);
        }
        index.reserve(self.live);
        for (i, c) in self.list.iter().enumerate() {
            if let Some(c) = c {
                index.insert(c.id(), i);
            }
        }
    }

    /// Drops the gaps. The list keeps its memory unless it could hold four times the children
    /// ([`shrink_target`]): a server whose open connections hover around a number adds and
    /// removes at the same pace.
    fn compact(&mut self) {
        self.list.retain(Option::is_some);
        if let Some(to) = shrink_target(self.list.capacity(), self.list.len().max(INDEX_FROM)) {
            self.list.shrink_to(to);
        }
        if self.list.len() >= INDEX_FROM {
            self.reindex();
        } else {
            self.index = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(c: &Children) -> Vec<ComponentId> {
        c.iter().map(Core::id).collect()
    }

    /// A server whose open connections hover around one number (here 32, two components each
    /// for 16 connections) keeps its list's and index's memory: after the first rounds, adding
    /// and removing neither moves nor regrows them.
    #[test]
    fn a_steady_number_of_children_keeps_its_memory() {
        let cores: Vec<Core> = (0..2_000).map(|_| Core::new("Child")).collect();
        let mut children = Children::default();
        let round = |children: &mut Children, i: usize| {
            assert!(children.add(&cores[i]));
            if i >= 32 {
                assert!(children.remove(cores[i - 32].id()));
            }
        };
        for i in 0..200 {
            round(&mut children, i);
        }
        let list = (children.list.as_ptr(), children.list.capacity());
        let index = children.index.as_ref().map(|i| i.capacity());
        for i in 200..2_000 {
            round(&mut children, i);
            assert_eq!((children.list.as_ptr(), children.list.capacity()), list);
            assert_eq!(children.index.as_ref().map(|i| i.capacity()), index);
        }
        assert_eq!(children.len(), 32);
        assert_eq!(
            ids(&children),
            cores[1_968..].iter().map(Core::id).collect::<Vec<_>>()
        );
    }

    /// Adds and removes across the indexing threshold and through compactions, checking order
    /// and membership against a plain list after every step.
    #[test]
    fn keeps_the_order_of_adding_through_removals_and_compactions() {
        let cores: Vec<Core> = (0..200).map(|_| Core::new("Child")).collect();
        let mut children = Children::default();
        let mut model: Vec<ComponentId> = Vec::new();
        for (i, c) in cores.iter().enumerate() {
            assert!(children.add(c));
            model.push(c.id());
            if i % 3 == 2 {
                // Remove an earlier one: gaps build up behind the end.
                let gone = cores[i / 2].id();
                let present = model.contains(&gone);
                assert_eq!(children.remove(gone), present);
                model.retain(|&id| id != gone);
            }
            assert_eq!(ids(&children), model);
            assert_eq!(children.len(), model.len());
        }
        assert!(!children.add(&cores[199]), "a child is added once");
        for c in cores.iter().rev() {
            let present = model.contains(&c.id());
            assert_eq!(children.remove(c.id()), present);
            model.retain(|&id| id != c.id());
            assert_eq!(ids(&children), model);
        }
        assert_eq!(children.len(), 0);
        assert!(children.list.len() < INDEX_FROM, "compacted when emptied");
        assert!(
            children.list.capacity() <= 4 * INDEX_FROM,
            "memory given back after a burst: capacity {}",
            children.list.capacity()
        );
        assert!(children.add(&cores[5]), "usable again");
        assert_eq!(ids(&children), [cores[5].id()]);
    }
}
