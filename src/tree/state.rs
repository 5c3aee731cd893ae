//! The tree's state, kept in the bus: the nodes with their children (by registration order), the
//! stops under way, and the walks over a subtree (iterative, so any depth is fine).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use actix::Recipient;

use super::component::{ComponentInfo, Stop, Stopper};
use crate::bus::{BusError, Lane, Target};
use crate::channel::ComponentId;
use crate::value::Promise;

pub(super) struct Node {
    pub(super) info: ComponentInfo,
    /// When it registered, in the tree's own count (its key among its parent's children).
    pub(super) seq: u64,
    /// Its children by registration order: in order, and each removed without a scan.
    pub(super) children: BTreeMap<u64, ComponentId>,
    pub(super) stopper: Option<Stopper>,
    /// The component's last lifecycle announcement: the next one is delivered after it, so every
    /// subscriber sees `Registered`, `Started` and `Unregistered` of one component in that order,
    /// whatever threads register, start and unregister it.
    pub(super) lane: Option<Lane>,
}

/// The tree itself, kept inside the bus.
#[derive(Default)]
pub(crate) struct TreeState {
    pub(super) nodes: HashMap<ComponentId, Node>,
    /// Registrations so far (gives each node its `seq`).
    pub(super) registered: u64,
    /// Stops under way: the callers waiting for each (a second stop of the same component joins
    /// the first instead of stopping everything twice).
    pub(super) stopping: HashMap<ComponentId, Vec<StopWaiter>>,
    /// How long a stop waits for one component's answer (`None`: the default).
    pub(super) stop_timeout: Option<Duration>,
}

/// A caller waiting for a stop under way.
pub(super) type StopWaiter = Promise<Result<Vec<ComponentId>, BusError>>;

/// One component to stop: where its lifecycle events go, what it is, its stopper.
pub(super) type StopStep = (Target, ComponentInfo, Option<Recipient<Stop>>);

/// A component that left the tree: where its `Unregistered` goes, what it was, its last
/// announcement (to come after).
pub(super) type Farewell = (Target, ComponentInfo, Option<Lane>);

impl TreeState {
    /// The components of `id`'s subtree not in `skip`, children first, with what stopping each
    /// needs.
    pub(super) fn stop_steps(&self, id: ComponentId, skip: &HashSet<ComponentId>) -> Vec<StopStep> {
        let mut order = Vec::new();
        self.post_order(id, &mut order);
        order
            .into_iter()
            .filter(|c| !skip.contains(c))
            .filter_map(|c| {
                self.nodes.get(&c).map(|n| {
                    (
                        lifecycle_target(&n.info, self),
                        n.info.clone(),
                        n.stopper.as_ref().and_then(Stopper::get),
                    )
                })
            })
            .collect()
    }

    /// Takes `id`'s subtree out of the tree; returns its ids (children first) and the
    /// `Unregistered` announcements to make (each after its component's earlier ones).
    pub(super) fn remove_subtree(&mut self, id: ComponentId) -> (Vec<ComponentId>, Vec<Farewell>) {
        let root = self
            .nodes
            .get(&id)
            .and_then(|n| Some((n.info.parent?, n.seq)));
        let mut removed = Vec::new();
        self.post_order(id, &mut removed);
        let targets: Vec<_> = removed
            .iter()
            .filter_map(|c| Some(lifecycle_target(&self.nodes.get(c)?.info, self)))
            .collect();
        let announcements: Vec<Farewell> = removed
            .iter()
            .filter_map(|c| self.nodes.remove(c))
            .zip(targets)
            .map(|(node, target)| (target, node.info, node.lane))
            .collect();
        if let Some((parent, seq)) = root {
            if let Some(p) = self.nodes.get_mut(&parent) {
                p.children.remove(&seq);
            }
        }
        // Memory returns when components go, not only their entries.
        if self.nodes.capacity() > 64 && self.nodes.len() < self.nodes.capacity() / 4 {
            self.nodes.shrink_to_fit();
        }
        (removed, announcements)
    }

    /// The subtree under `id`, children before parents (the order things stop in).
    ///
    /// Iterative (an explicit stack, no recursion), so a tree of any depth is walked without
    /// growing the thread's stack.
    fn post_order(&self, id: ComponentId, out: &mut Vec<ComponentId>) {
        if !self.nodes.contains_key(&id) {
            return;
        }
        // Each entry: a node and its children not pushed yet.
        let children = |c: &ComponentId| self.nodes.get(c).map(|n| n.children.values());
        let mut stack = vec![(id, children(&id))];
        while let Some((node, rest)) = stack.last_mut() {
            match rest.as_mut().and_then(Iterator::next) {
                Some(child) => {
                    if self.nodes.contains_key(child) {
                        stack.push((*child, children(child)));
                    }
                }
                None => {
                    out.push(*node);
                    stack.pop();
                }
            }
        }
    }
}

pub(super) fn lifecycle_target(info: &ComponentInfo, tree: &TreeState) -> Target {
    let mut chans = vec![info.channel.clone()];
    if let Some(p) = info.parent.and_then(|p| tree.nodes.get(&p)) {
        if p.info.channel != info.channel {
            chans.push(p.info.channel.clone());
        }
    }
    Target::Channels(chans)
}
