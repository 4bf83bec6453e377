//! Typed, named boxes: [`Inbox`] and [`Outbox`] (Axon's `Box.py` postboxes).
//!
//! Every box is a node that may feed one other node (its *target*) and be fed by many. A chain of
//! any length resolves to its final box, and every node in the chain caches that final box, so a
//! send is one push into the destination queue: no postman, no intermediate copies (as in Axon,
//! where each box redirects `append` to the final storage).
//!
//! * An inbox has real storage, an optional size limit, and an owner that is woken when a message
//!   is delivered.
//! * An outbox has no storage of its own: a send on an unlinked outbox is silently dropped, as in
//!   Axon.
//! * Only the final box's size limit counts; a limit in the middle of a chain applies only once the
//!   chain is broken there.
//! * Taking a message out of a final inbox wakes the owners of the outboxes feeding it that asked
//!   for it (waiting for room, or in [`Core::pause`](crate::Core::pause)).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};

use crate::component::{ComponentCell, ComponentId, Core};
use crate::error::{Error, NoSpaceInBox};
use crate::linkage::{Linkable, Linkage};

/// Which way a box faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    In,
    Out,
}

/// A box's name and description: static for declared boxes, owned for boxes added at run time.
pub(crate) enum BoxSpec {
    Static {
        name: &'static str,
        description: &'static str,
    },
    Dynamic(Box<(String, String)>),
}

impl BoxSpec {
    pub(crate) fn dynamic(name: &str, description: &str) -> Self {
        Self::Dynamic(Box::new((name.to_owned(), description.to_owned())))
    }

    fn name(&self) -> &str {
        match self {
            Self::Static { name, .. } => name,
            Self::Dynamic(d) => &d.0,
        }
    }

    fn description(&self) -> &str {
        match self {
            Self::Static { description, .. } => description,
            Self::Dynamic(d) => &d.1,
        }
    }
}

/// A short list that holds up to one item without allocating: a box is usually fed by one box,
/// and one producer waits for it.
#[derive(Default)]
enum Few<W> {
    #[default]
    None,
    One(W),
    /// Boxed, so the list is two words, not four (every linked box has two lists).
    #[allow(clippy::box_collection)]
    Many(Box<Vec<W>>),
}

impl<W> Few<W> {
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(&mut self, w: W) {
        *self = match std::mem::take(self) {
            Self::None => Self::One(w),
            Self::One(first) => Self::Many(Box::new(vec![first, w])),
            Self::Many(mut v) => {
                v.push(w);
                Self::Many(v)
            }
        };
    }

    fn iter(&self) -> std::slice::Iter<'_, W> {
        match self {
            Self::None => [].iter(),
            Self::One(w) => std::slice::from_ref(w).iter(),
            Self::Many(v) => v.iter(),
        }
    }

    fn retain(&mut self, mut keep: impl FnMut(&W) -> bool) {
        match self {
            Self::None => {}
            Self::One(w) => {
                if !keep(w) {
                    *self = Self::None;
                }
            }
            Self::Many(v) => v.retain(keep),
        }
    }

    /// Appends `w` and returns its position.
    fn push_at(&mut self, w: W) -> usize {
        self.push(w);
        self.len() - 1
    }

    fn len(&self) -> usize {
        match self {
            Self::None => 0,
            Self::One(_) => 1,
            Self::Many(v) => v.len(),
        }
    }

    /// Removes the item at `i` (the last one takes its place) and returns a reference to the
    /// item now at `i`, if any.
    fn swap_remove(&mut self, i: usize) -> Option<&W> {
        match self {
            Self::None => None,
            Self::One(_) => {
                *self = Self::None;
                None
            }
            Self::Many(v) => {
                v.swap_remove(i);
                v.get(i)
            }
        }
    }

    /// Takes every item out, leaving the list empty.
    fn take_all(&mut self) -> Vec<W> {
        match std::mem::take(self) {
            Self::None => Vec::new(),
            Self::One(w) => vec![w],
            Self::Many(v) => *v,
        }
    }
}

/// The linkage state of a node that a message does not need, allocated the first time the node
/// is linked. (What a message needs, the final box of the chain and whether producers wait, is in
/// the node: at hundreds of connections each allocation a message passes through is a cache miss.)
///
/// Kept to 48 bytes (a 64-byte allocation): an idle connection has ten linked boxes. (Keeping it
/// in the node instead saves that allocation, 22 per relayed connection and about 3% of the
/// instructions of its setup, but every box then takes a 176-byte block instead of 128, and an
/// idle component's four default boxes take it past the 1 KiB of issue 2: 943 → 1,135 B. The
/// test `a_box_node_fits_a_128_byte_block` holds the line.)
struct Links<T> {
    target: Option<Rc<BoxNode<T>>>,
    sources: Few<Weak<BoxNode<T>>>,
    /// For a final box: the producers feeding it that sleep until it is collected from (each
    /// registered itself when it went to sleep; a collection takes the list and wakes them).
    waiters: Few<Weak<ComponentCell>>,
    /// How many times this box has been linked to a target: tells a link from a later one between
    /// the same two boxes.
    epoch: u32,
    /// Where this box is in its target's `sources`, while it has a target: an unlink then costs
    /// the same however many boxes feed that target (a selector's or a server's inbox is fed by
    /// one box per open connection).
    slot: u32,
}

impl<T> Default for Links<T> {
    fn default() -> Self {
        Self {
            target: None,
            sources: Few::None,
            waiters: Few::None,
            epoch: 0,
            slot: 0,
        }
    }
}

/// Puts a value taken out of `cell` back. The cell is empty (it was taken and nothing puts
/// anything in meanwhile: debug builds check), so this is a plain store: `Cell::set` would call
/// the old value's drop glue, a few instructions every time a message is sent.
#[inline]
fn put_back<V>(cell: &Cell<Option<V>>, value: Option<V>) {
    let old = cell.replace(value);
    debug_assert!(old.is_none(), "a taken-out value was replaced meanwhile");
    if old.is_some() {
        drop(old);
    } else {
        std::mem::forget(old);
    }
}

/// The link state of a node, taken out of it while in use ([`BoxNode::links_mut`]) and put back
/// when dropped: a `Cell` rather than a `RefCell`, so the node has room for what a message needs
/// (see [`BoxNode`]). Used as a `RefCell`'s `borrow_mut` was: never twice at once for one node
/// (debug builds check).
struct LinksMut<'a, T> {
    node: &'a BoxNode<T>,
    links: Option<Box<Links<T>>>,
}

impl<T> std::ops::Deref for LinksMut<'_, T> {
    type Target = Links<T>;

    fn deref(&self) -> &Links<T> {
        self.links
            .as_deref()
            .unwrap_or_else(|| unreachable!("put back only on drop"))
    }
}

impl<T> std::ops::DerefMut for LinksMut<'_, T> {
    fn deref_mut(&mut self) -> &mut Links<T> {
        self.links
            .as_deref_mut()
            .unwrap_or_else(|| unreachable!("put back only on drop"))
    }
}

impl<T> Drop for LinksMut<'_, T> {
    fn drop(&mut self) {
        self.node.put_links(self.links.take());
    }
}

/// One box: the storage and linkage behind an [`Inbox`] or [`Outbox`] handle.
///
/// In declaration order (`repr(C)`), what a message touches first: the flags, the limit, the
/// owner, the final box and the queue, 64 bytes right after the `Rc`'s counts; the name and the
/// link state, which no message needs, last. At hundreds of connections each cache line a message
/// touches is a miss, and the compiler's own order put the one-byte fields after everything else.
#[repr(C)]
pub(crate) struct BoxNode<T> {
    dir: Direction,
    /// This box's flag in its owner's record of deliveries ([`Deliveries`]): its position among
    /// the owner's boxes, the 64th and later sharing the last flag.
    flag: u8,
    /// For a final box: some producer waits for a collection from it (`Links::waiters` is not
    /// empty), so a collection looks into the link state only then.
    has_waiters: Cell<bool>,
    /// The link state is taken out ([`LinksMut`]): checked in debug builds, as a `RefCell` would.
    links_out: Cell<bool>,
    /// The size limit; `u32::MAX` means none. (32 bits keep the node small: an idle component's
    /// four boxes are most of its memory.)
    capacity: Cell<u32>,
    owner: Weak<ComponentCell>,
    /// The final box of this box's chain, while it has a target: a send is one push there. Read
    /// by taking it out and putting it back (no borrow flag: the node stays within its block).
    resolved: Cell<Option<Rc<BoxNode<T>>>>,
    queue: RefCell<VecDeque<T>>,
    spec: BoxSpec,
    links: Cell<Option<Box<Links<T>>>>,
}

impl<T> BoxNode<T> {
    /// Takes this node's link state out (none if it was never linked), until [`Self::put_links`].
    fn take_links(&self) -> Option<Box<Links<T>>> {
        let taken = self.links_out.replace(true);
        debug_assert!(!taken, "a box's link state taken twice at once");
        self.links.take()
    }

    /// Puts back what [`Self::take_links`] took.
    fn put_links(&self, links: Option<Box<Links<T>>>) {
        put_back(&self.links, links);
        self.links_out.set(false);
    }
}

impl<T: 'static> BoxNode<T> {
    fn new(owner: &Rc<ComponentCell>, spec: BoxSpec, dir: Direction) -> Rc<Self> {
        // The box is registered right after it is made, at the end of the owner's list. (If the
        // list is being changed, any flag will do: sharing one only makes a flag ambiguous.)
        let position = owner.boxes.try_borrow().map_or(63, |b| b.len());
        Rc::new(Self {
            spec,
            dir,
            owner: Rc::downgrade(owner),
            queue: RefCell::new(VecDeque::new()),
            capacity: Cell::new(u32::MAX),
            flag: position.min(63) as u8,
            resolved: Cell::new(None),
            has_waiters: Cell::new(false),
            links_out: Cell::new(false),
            links: Cell::new(None),
        })
    }

    /// Records with the owner that messages reached this box, and wakes it.
    #[inline]
    fn delivered(&self) {
        if let Some(owner) = self.owner.upgrade() {
            owner
                .delivered
                .set(owner.delivered.get() | DeliveryFlag(self.flag).bit());
            owner.wake();
        }
    }

    #[inline]
    fn size_limit(&self) -> usize {
        match self.capacity.get() {
            u32::MAX => usize::MAX,
            n => n as usize,
        }
    }

    /// Pushes a message to the final box of this node's chain.
    #[inline]
    fn push(&self, msg: T) -> Result<(), NoSpaceInBox<T>> {
        self.with_final(|fin| fin.push_local(msg))
    }

    /// Applies `f` to the final box of this box's chain (itself when unlinked). While `f` runs
    /// this box's `resolved` is taken out, so `f` must not reach this box's links (it does not:
    /// it pushes, or looks at a queue).
    #[inline]
    fn with_final<R>(&self, f: impl FnOnce(&Self) -> R) -> R {
        let fin = self.resolved.take();
        let r = f(fin.as_deref().unwrap_or(self));
        put_back(&self.resolved, fin);
        r
    }

    /// The final box of this box's chain, while it has a target.
    fn resolved(&self) -> Option<Rc<Self>> {
        let fin = self.resolved.take();
        let copy = fin.clone();
        put_back(&self.resolved, fin);
        copy
    }

    /// Whether a push would be accepted now.
    fn has_room(&self) -> bool {
        self.with_final(|fin| {
            fin.dir == Direction::Out || fin.queue.borrow().len() < fin.size_limit()
        })
    }

    /// Whether the final inbox of this box's chain is empty (an outbox with no target: true).
    fn is_collected(&self) -> bool {
        self.with_final(|fin| fin.dir == Direction::Out || fin.queue.borrow().is_empty())
    }

    #[inline]
    fn push_local(&self, msg: T) -> Result<(), NoSpaceInBox<T>> {
        if self.dir == Direction::Out {
            // An unlinked outbox is a null sink, as in Axon.
            return Ok(());
        }
        {
            let mut q = self.queue.borrow_mut();
            let size = self.size_limit();
            if q.len() >= size {
                return Err(NoSpaceInBox {
                    message: msg,
                    len: q.len(),
                    size,
                });
            }
            if q.capacity() == 0 {
                // Room for exactly one at first (`push_back` would make room for four): a box
                // that has carried one message at a time keeps the smallest buffer while idle. A
                // second queued message grows it as usual.
                q.reserve_exact(1);
            }
            q.push_back(msg);
        }
        self.delivered();
        Ok(())
    }

    /// Takes the head of this box's own storage, waking the producers that sleep until it is
    /// collected from. Costs nothing more when none does, however many outboxes feed the box.
    #[inline]
    fn pop(&self) -> Option<T> {
        // Small enough to inline: a look at an empty box (a component checks several per pass)
        // is a flag and a length, with no call.
        let msg = self.queue.borrow_mut().pop_front()?;
        self.wake_collectors();
        Some(msg)
    }

    /// Wakes the producers that sleep until this box is collected from, if any.
    #[inline]
    fn wake_collectors(&self) {
        if self.has_waiters.get() {
            self.wake_waiters();
        }
    }

    /// Takes the list of producers waiting for a collection and wakes them.
    fn wake_waiters(&self) {
        self.has_waiters.set(false);
        let waiters = std::mem::take(&mut self.links_mut().waiters);
        match waiters {
            // The usual case: one producer waits, woken with no list to allocate.
            Few::One(w) => {
                if let Some(p) = w.upgrade() {
                    p.wake_for_collection();
                }
            }
            mut many => {
                for w in many.take_all() {
                    if let Some(p) = w.upgrade() {
                        p.wake_for_collection();
                    }
                }
            }
        }
    }

    /// Registers `owner` to be woken by the next collection from the final box this outbox feeds
    /// (nothing to wait for when it feeds nothing: an unlinked outbox takes everything).
    fn wait_for_collection(&self, owner: &Weak<ComponentCell>) {
        if self.dir != Direction::Out {
            return;
        }
        let fin = match self.resolved() {
            Some(fin) if fin.dir == Direction::In => fin,
            _ => return,
        };
        let mut l = fin.links_mut();
        if !l.waiters.iter().any(|w| w.ptr_eq(owner)) {
            l.waiters.push(owner.clone());
        }
        fin.has_waiters.set(true);
    }

    /// Wakes the owners of the outboxes in the tree rooted at `node` (itself included) that sleep
    /// until a collection: their outboxes now feed another box (or none), which may have room.
    fn wake_tree_waiters(node: &Rc<Self>) {
        if node.dir == Direction::Out {
            if let Some(owner) = node.owner.upgrade() {
                owner.wake_for_collection();
            }
        }
        node.for_each_source(|src| Self::wake_tree_waiters(&src));
    }

    /// This node's link state, made on first use, until the guard is dropped.
    fn links_mut(&self) -> LinksMut<'_, T> {
        LinksMut {
            node: self,
            links: Some(self.take_links().unwrap_or_default()),
        }
    }

    /// Applies `f` to this node's link state, if it has any (a node never linked has none).
    fn with_links<R>(&self, f: impl FnOnce(Option<&Links<T>>) -> R) -> R {
        let links = self.take_links();
        let r = f(links.as_deref());
        self.put_links(links);
        r
    }

    fn target(&self) -> Option<Rc<Self>> {
        self.with_links(|l| l.and_then(|l| l.target.clone()))
    }

    /// Calls `f` with each box feeding this one that is still alive, with this box's links not
    /// borrowed (so `f` may change them). Nothing to set up for a box nothing feeds, the usual
    /// case for the box being linked or cut (a component's outbox); no allocation for one source.
    #[inline]
    fn for_each_source(&self, mut f: impl FnMut(Rc<Self>)) {
        let Some((one, many)) = self.with_links(|l| match l.map(|l| &l.sources) {
            None | Some(Few::None) => None,
            Some(Few::One(w)) => Some((w.upgrade(), Vec::new())),
            Some(Few::Many(v)) => Some((None, v.to_vec())),
        }) else {
            return;
        };
        if let Some(src) = one {
            f(src);
        }
        for src in many.iter().filter_map(Weak::upgrade) {
            f(src);
        }
    }

    /// Follows targets to the end of the chain.
    fn final_node(self: &Rc<Self>) -> Rc<Self> {
        let mut node = self.clone();
        while let Some(next) = node.target() {
            node = next;
        }
        node
    }

    /// Sets the cached final box of every node feeding `root`, transitively.
    fn resolve_upstream(root: &Rc<Self>, fin: &Rc<Self>) {
        root.for_each_source(|src| {
            src.resolved.set(Some(fin.clone()));
            Self::resolve_upstream(&src, fin);
        });
    }

    fn link(src: &Rc<Self>, dst: &Rc<Self>) -> Result<(), Error> {
        if src.dir == Direction::In && dst.dir == Direction::Out {
            return Err(Error::InvalidDirection {
                source: src.label(),
                sink: dst.label(),
            });
        }
        if let Some(current) = src.target() {
            return Err(Error::BoxAlreadyLinked {
                source: src.label(),
                current_sink: current.label(),
            });
        }
        let fin = dst.final_node();
        if Rc::ptr_eq(&fin, src) {
            return Err(Error::LinkCycle {
                source: src.label(),
                sink: dst.label(),
            });
        }
        {
            let mut l = src.links_mut();
            l.target = Some(dst.clone());
            l.epoch = l.epoch.wrapping_add(1);
        }
        src.resolved.set(Some(fin.clone()));
        let slot = Self::add_source(dst, src);
        src.links_mut().slot = slot;
        Self::resolve_upstream(src, &fin);
        Self::wake_tree_waiters(src);
        // Messages already in the source's own storage move on to the new destination (Axon).
        let moved = std::mem::take(&mut *src.queue.borrow_mut());
        if !moved.is_empty() && fin.dir == Direction::In {
            fin.queue.borrow_mut().extend(moved);
            fin.delivered();
        }
        Ok(())
    }

    fn unlink(src: &Rc<Self>) {
        let Some(target) = src.links_mut().target.take() else {
            return;
        };
        src.resolved.set(None);
        let slot = src.links_mut().slot as usize;
        Self::remove_source(&target, src, slot);
        Self::resolve_upstream(src, src);
        // The cut tree no longer feeds the old final box: its producers' registrations there go
        // (waking them below makes each register again with what it feeds now, if it still waits).
        let old_fin = target.final_node();
        if old_fin.has_waiters.get() {
            let mut cut = Vec::new();
            Self::tree_owners(src, &mut cut);
            let mut l = old_fin.links_mut();
            l.waiters
                .retain(|w| w.strong_count() > 0 && !cut.iter().any(|c| w.ptr_eq(c)));
            old_fin.has_waiters.set(!l.waiters.is_empty());
        }
        // The cut tree feeds `src` now: producers waiting for room may have it.
        Self::wake_tree_waiters(src);
    }

    /// Records `src` as feeding `dst` and returns its slot there. Sources dropped without being
    /// unlinked are cleared out first whenever the list would have to grow, so they cost nothing
    /// per link on average.
    fn add_source(dst: &Rc<Self>, src: &Rc<Self>) -> u32 {
        let mut l = dst.links_mut();
        if let Few::Many(v) = &mut l.sources {
            if v.len() == v.capacity() && v.iter().any(|w| w.strong_count() == 0) {
                v.retain(|w| w.strong_count() > 0);
                for (i, w) in v.iter().enumerate() {
                    if let Some(s) = w.upgrade() {
                        s.links_mut().slot = i as u32;
                    }
                }
            }
        }
        l.sources.push_at(Rc::downgrade(src)) as u32
    }

    /// Takes `src` out of `dst`'s sources, where it sits at `slot`; the source moved into its place
    /// learns its new slot.
    fn remove_source(dst: &Rc<Self>, src: &Rc<Self>, slot: usize) {
        let mut l = dst.links_mut();
        let at_slot = l
            .sources
            .iter()
            .nth(slot)
            .is_some_and(|w| std::ptr::eq(w.as_ptr(), Rc::as_ptr(src)));
        if !at_slot {
            // Not where it should be: a bookkeeping bug, caught in tests; a scan is still right.
            debug_assert!(
                false,
                "a linked box is not at its slot in its target's sources"
            );
            l.sources
                .retain(|w| !std::ptr::eq(w.as_ptr(), Rc::as_ptr(src)));
            return;
        }
        let moved = l.sources.swap_remove(slot).and_then(Weak::upgrade);
        drop(l);
        if let Some(m) = moved {
            m.links_mut().slot = slot as u32;
        }
    }

    /// The owners of the outboxes in the tree rooted at `node` (itself included).
    fn tree_owners(node: &Rc<Self>, out: &mut Vec<Weak<ComponentCell>>) {
        if node.dir == Direction::Out {
            out.push(node.owner.clone());
        }
        node.for_each_source(|src| Self::tree_owners(&src, out));
    }

    fn label(&self) -> String {
        let owner = self
            .owner
            .upgrade()
            .map(|o| o.name())
            .unwrap_or_else(|| "<gone>".to_owned());
        format!("{owner}.{}", self.spec.name())
    }
}

/// The type-erased view of a box, used for name-based linking, introspection and the
/// component's box registry.
pub(crate) trait ErasedBox {
    fn name(&self) -> &str;
    fn description(&self) -> &str;
    fn direction(&self) -> Direction;
    fn type_name(&self) -> &'static str;
    fn local_len(&self) -> usize;
    fn label(&self) -> String;
    fn owner_id(&self) -> Option<ComponentId>;
    fn owner_core(&self) -> Option<Core>;
    fn as_any_rc(self: Rc<Self>) -> Rc<dyn Any>;
    /// Links this box to `sink`, checking that both carry the same type.
    fn link_to(self: Rc<Self>, sink: &Rc<dyn ErasedBox>) -> Result<(), Error>;
    /// Cuts this box's link to its target, if any.
    fn unlink(self: Rc<Self>);
    /// Whether this box currently feeds `sink` directly.
    fn feeds(&self, sink: &dyn ErasedBox) -> bool;
    /// How many times this box has been linked to a target (0 if never).
    fn link_epoch(&self) -> u64;
    /// Cuts every link to and from this box.
    fn detach(self: Rc<Self>);
    /// A new box carrying the same type, owned by `owner`.
    fn new_like(&self, owner: &Core, spec: BoxSpec, dir: Direction) -> Rc<dyn ErasedBox>;
    /// For an outbox: wake `owner` on the next collection from the box it feeds.
    fn wait_for_collection(&self, owner: &Weak<ComponentCell>);
}

impl<T: 'static> ErasedBox for BoxNode<T> {
    fn name(&self) -> &str {
        self.spec.name()
    }

    fn description(&self) -> &str {
        self.spec.description()
    }

    fn direction(&self) -> Direction {
        self.dir
    }

    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }

    fn local_len(&self) -> usize {
        self.queue.borrow().len()
    }

    fn label(&self) -> String {
        BoxNode::label(self)
    }

    fn owner_id(&self) -> Option<ComponentId> {
        self.owner.upgrade().map(|o| o.id)
    }

    fn owner_core(&self) -> Option<Core> {
        self.owner.upgrade().map(|cell| Core { cell })
    }

    fn as_any_rc(self: Rc<Self>) -> Rc<dyn Any> {
        self
    }

    fn link_to(self: Rc<Self>, sink: &Rc<dyn ErasedBox>) -> Result<(), Error> {
        // Labels are built only for the error: formatting them costs allocations on every link.
        match sink.clone().as_any_rc().downcast::<BoxNode<T>>() {
            Ok(dst) => BoxNode::link(&self, &dst),
            Err(_) => Err(Error::TypeMismatch {
                source: self.label(),
                source_type: std::any::type_name::<T>(),
                sink: sink.label(),
                sink_type: sink.type_name(),
            }),
        }
    }

    fn unlink(self: Rc<Self>) {
        BoxNode::unlink(&self);
    }

    fn feeds(&self, sink: &dyn ErasedBox) -> bool {
        self.target()
            .is_some_and(|t| std::ptr::addr_eq(Rc::as_ptr(&t), sink as *const dyn ErasedBox))
    }

    fn link_epoch(&self) -> u64 {
        self.with_links(|l| l.map_or(0, |l| u64::from(l.epoch)))
    }

    fn detach(self: Rc<Self>) {
        BoxNode::unlink(&self);
        self.for_each_source(|src| BoxNode::unlink(&src));
    }

    fn new_like(&self, owner: &Core, spec: BoxSpec, dir: Direction) -> Rc<dyn ErasedBox> {
        BoxNode::<T>::new(&owner.cell, spec, dir)
    }

    fn wait_for_collection(&self, owner: &Weak<ComponentCell>) {
        BoxNode::wait_for_collection(self, owner);
    }
}

/// Which of a component's inboxes had messages delivered to them between two calls of
/// [`Core::take_deliveries`] (a set of flags, one per box; ask with [`Inbox::delivered_in`]).
///
/// A component that looks at several inboxes on every pass, most of them empty most of the time,
/// can skip the ones nothing was delivered to: each box is an allocation of its own, and at
/// hundreds of connections looking into one is a cache miss. A flag may be set for a box that
/// received nothing (boxes past the 64th of a component share one), never the other way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Deliveries(pub(crate) u64);

impl Deliveries {
    /// Whether anything was delivered to a box made after the component's first `n` boxes: to
    /// one of its [declared boxes](BoxDecl) made since, by its owner or by a lookup elsewhere.
    ///
    /// ```
    /// use axon::{BoxDecl, Core, Inbox};
    ///
    /// static LATER: &[BoxDecl] = &[BoxDecl::inbox::<u8>("later", "made on first use")];
    /// let core = Core::new("Reader");
    /// let first: Inbox<u8> = core.inbox("first", "made at once");
    /// core.declare_boxes(&LATER);
    /// first.deliver(1).unwrap();
    /// assert!(!core.deliveries().any_after(1));
    /// core.find_inbox::<u8>("later").unwrap().deliver(2).unwrap();
    /// assert!(core.take_deliveries().any_after(1));
    /// ```
    #[inline]
    pub fn any_after(self, n: usize) -> bool {
        n < 64 && self.0 >> n != 0
    }

    /// Whether these deliveries may include one to the box whose flag is `flag`
    /// ([`Inbox::delivery_flag`]): the same answer as [`Inbox::delivered_in`], without reading
    /// the box.
    #[inline]
    pub fn contains(self, flag: DeliveryFlag) -> bool {
        self.0 & flag.bit() != 0
    }

    /// Whether these deliveries may include one to a box other than the one whose flag is `flag`:
    /// the same answer as [`Inbox::others_delivered_in`], without reading the box.
    #[inline]
    pub fn contains_other_than(self, flag: DeliveryFlag) -> bool {
        self.0 & !flag.bit() != 0
    }
}

/// An inbox's flag in its owner's [`Deliveries`] ([`Inbox::delivery_flag`]): a component that looks
/// at its deliveries on every pass keeps its boxes' flags beside it, so that asking
/// ([`Deliveries::contains`]) reads no box. (At hundreds of connections every box looked into is a
/// cache miss, and a box with nothing delivered is looked into only for its flag.)
///
/// ```
/// use axon::{Core, Inbox};
///
/// let core = Core::new("Reader");
/// let data: Inbox<u8> = core.inbox("inbox", "data");
/// let control: Inbox<u8> = core.inbox("control", "signals");
/// let (data_flag, control_flag) = (data.delivery_flag(), control.delivery_flag());
/// data.deliver(1).unwrap();
/// let d = core.take_deliveries();
/// assert!(d.contains(data_flag));
/// assert!(!d.contains(control_flag), "nothing for control: no need to look");
/// assert!(!d.contains_other_than(data_flag));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryFlag(u8);

impl DeliveryFlag {
    #[inline]
    fn bit(self) -> u64 {
        1 << self.0
    }
}

/// A box declared with its component but made only when first used: by its owner
/// ([`Core::declared_inbox`], [`Core::declared_outbox`]), or by anyone looking it up by name
/// (linking by name, [`Core::inbox_named`], [`Core::find_inbox`], ...). Until then it costs nothing
/// but an entry in a static list, and it is listed by [`Core::inboxes`], [`Core::outboxes`] and
/// [`Core::box_names`] after the boxes made so far. A lookup that could not use it (the wrong
/// direction or type) does not make it.
///
/// For boxes most instances never use: a socket adapter's `makessl` and `sslready` (TLS only),
/// `SendReady` (only when a write blocks). Declare them as a `static` list with
/// [`Core::declare_boxes`].
///
/// ```
/// use axon::{BoxDecl, Core, Inbox};
///
/// static LATER: &[BoxDecl] = &[BoxDecl::inbox::<String>("makessl", "upgrade requests")];
/// let core = Core::new("Adapter");
/// core.declare_boxes(&LATER);
/// assert_eq!(core.box_names(), ["makessl"]);
/// let by_name: Inbox<String> = core.inbox_named("makessl").unwrap(); // made now
/// by_name.deliver("tls".into()).unwrap();
/// let own: Inbox<String> = core.declared_inbox(0); // the same box
/// assert_eq!(own.recv_now().as_deref(), Some("tls"));
/// ```
pub struct BoxDecl {
    pub(crate) name: &'static str,
    pub(crate) description: &'static str,
    pub(crate) dir: Direction,
    pub(crate) type_id: fn() -> std::any::TypeId,
    pub(crate) type_name: fn() -> &'static str,
    pub(crate) make: fn(&Rc<ComponentCell>, BoxSpec) -> Rc<dyn ErasedBox>,
}

impl BoxDecl {
    /// An inbox carrying `T`.
    pub const fn inbox<T: 'static>(name: &'static str, description: &'static str) -> Self {
        Self {
            name,
            description,
            dir: Direction::In,
            type_id: std::any::TypeId::of::<T>,
            type_name: std::any::type_name::<T>,
            make: |owner, spec| Inbox::<T>::new_node(owner, spec).node,
        }
    }

    /// An outbox carrying `T`.
    pub const fn outbox<T: 'static>(name: &'static str, description: &'static str) -> Self {
        Self {
            name,
            description,
            dir: Direction::Out,
            type_id: std::any::TypeId::of::<T>,
            type_name: std::any::type_name::<T>,
            make: |owner, spec| Outbox::<T>::new_node(owner, spec).node,
        }
    }

    /// The box's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether a box of this declaration would serve a lookup for `dir` carrying `ty`.
    pub(crate) fn fits(&self, dir: Direction, ty: Option<std::any::TypeId>) -> bool {
        self.dir == dir && ty.is_none_or(|ty| (self.type_id)() == ty)
    }
}

impl fmt::Debug for BoxDecl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoxDecl")
            .field("name", &self.name)
            .field("direction", &self.dir)
            .finish()
    }
}

/// An inbox: a named queue of `T` owned by one component (Axon's `inbox` postbox).
///
/// Delivering a message wakes the owner. Collecting one wakes the producers feeding it that wait
/// for room or are paused. The size limit (none by default) gives back-pressure: a full inbox
/// refuses sends with [`NoSpaceInBox`], or makes [`Outbox::send_wait`] wait.
///
/// Handles are cheap clones of the same box.
pub struct Inbox<T: 'static> {
    pub(crate) node: Rc<BoxNode<T>>,
}

impl<T: 'static> Inbox<T> {
    pub(crate) fn new_node(owner: &Rc<ComponentCell>, spec: BoxSpec) -> Self {
        Self {
            node: BoxNode::new(owner, spec, Direction::In),
        }
    }

    /// The typed handle for `node`, if it carries `T` (its direction is not checked).
    pub(crate) fn downcast(node: Rc<dyn ErasedBox>) -> Option<Self> {
        node.as_any_rc()
            .downcast::<BoxNode<T>>()
            .ok()
            .map(|node| Self { node })
    }

    pub(crate) fn from_erased(node: Rc<dyn ErasedBox>) -> Result<Self, Error> {
        // The label is built only for the error (formatting it allocates).
        node.clone()
            .as_any_rc()
            .downcast::<BoxNode<T>>()
            .map(|node| Self { node })
            .map_err(|_| Error::WrongBoxType {
                name: node.label(),
                actual: node.type_name(),
                requested: std::any::type_name::<T>(),
            })
    }

    /// Takes the oldest message, if any, without waiting (Axon's `recv`).
    #[inline]
    pub fn recv_now(&self) -> Option<T> {
        self.node.pop()
    }

    /// Waits for a message and takes it. Only the owner should await this: it is the owner that a
    /// delivery wakes.
    pub fn recv(&self) -> Recv<'_, T> {
        Recv { inbox: self }
    }

    /// Whether a message is waiting in this box's own storage (Axon's `dataReady`).
    pub fn data_ready(&self) -> bool {
        !self.node.queue.borrow().is_empty()
    }

    /// How many messages wait in this box's own storage.
    pub fn len(&self) -> usize {
        self.node.queue.borrow().len()
    }

    /// Whether this box's own storage is empty.
    pub fn is_empty(&self) -> bool {
        !self.data_ready()
    }

    /// Whether `deliveries` ([`Core::take_deliveries`]) may include a message delivered to this
    /// box. False means none was: a box that was empty when those deliveries were taken last is
    /// still empty, and need not be looked at.
    #[inline]
    pub fn delivered_in(&self, deliveries: Deliveries) -> bool {
        deliveries.contains(self.delivery_flag())
    }

    /// This box's flag in its owner's deliveries, to keep and ask with instead of the box
    /// ([`Deliveries::contains`]). Fixed for the box's life.
    pub fn delivery_flag(&self) -> DeliveryFlag {
        DeliveryFlag(self.node.flag)
    }

    /// Whether `deliveries` may include a message delivered to a box other than this one: false
    /// means this box is the only one to look at. Reads this box alone, not the others.
    #[inline]
    pub fn others_delivered_in(&self, deliveries: Deliveries) -> bool {
        deliveries.contains_other_than(self.delivery_flag())
    }

    /// Puts a message into this box as if a linked outbox had sent it, following any passthrough
    /// onwards (Axon's `_deliver`). Useful from outside the graph and in tests.
    ///
    /// # Errors
    ///
    /// [`NoSpaceInBox`], with the message, if the final box is full.
    pub fn deliver(&self, msg: T) -> Result<(), NoSpaceInBox<T>> {
        self.node.push(msg)
    }

    /// Makes room for `additional` more messages in the box's own storage now, so that many
    /// deliveries in a row do not grow it one step at a time (a box holds room for one message
    /// after its first delivery). The size limit is unchanged.
    pub fn reserve(&self, additional: usize) {
        self.node.queue.borrow_mut().reserve_exact(additional);
    }

    /// Sets the size limit (Axon's `setInboxSize`); `None` means unlimited. Messages already held
    /// beyond a new, smaller limit stay; new ones are refused until the box drains below it.
    pub fn set_size(&self, size: Option<usize>) {
        let limit = size.map_or(u32::MAX, |n| {
            u32::try_from(n).unwrap_or(u32::MAX - 1).min(u32::MAX - 1)
        });
        self.node.capacity.set(limit);
    }

    /// The size limit, if any.
    pub fn size(&self) -> Option<usize> {
        Some(self.node.capacity.get())
            .filter(|&c| c != u32::MAX)
            .map(|c| c as usize)
    }

    /// The box's name.
    pub fn name(&self) -> &str {
        self.node.spec.name()
    }

    /// The box's one-line description.
    pub fn description(&self) -> &str {
        self.node.spec.description()
    }

    /// Links this inbox onwards to a child's inbox (passthrough mode 1), without recording the
    /// linkage in any postoffice. See [`Core::link`] for the recorded form.
    ///
    /// # Errors
    ///
    /// As [`Core::link`].
    pub fn link_to(&self, sink: &Inbox<T>) -> Result<Linkage, Error> {
        crate::linkage::link(self, sink)
    }

    /// Drains every waiting message (Axon's `Inbox(box)` generator).
    pub fn drain(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(move || self.recv_now())
    }

    pub(crate) fn erased(&self) -> Rc<dyn ErasedBox> {
        self.node.clone()
    }
}

impl<T> Clone for Inbox<T> {
    fn clone(&self) -> Self {
        Self {
            node: self.node.clone(),
        }
    }
}

impl<T> fmt::Debug for Inbox<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox")
            .field("box", &self.node.label())
            .field("type", &std::any::type_name::<T>())
            .field("len", &self.node.queue.borrow().len())
            .finish()
    }
}

/// An outbox: the named place a component sends `T` from (Axon's `outbox` postbox).
///
/// It has no storage: sends go straight into the final inbox of the chain it is linked into, or
/// are dropped if it is not linked (as in Axon).
pub struct Outbox<T: 'static> {
    pub(crate) node: Rc<BoxNode<T>>,
}

impl<T: 'static> Outbox<T> {
    pub(crate) fn new_node(owner: &Rc<ComponentCell>, spec: BoxSpec) -> Self {
        Self {
            node: BoxNode::new(owner, spec, Direction::Out),
        }
    }

    pub(crate) fn from_erased(node: Rc<dyn ErasedBox>) -> Result<Self, Error> {
        Inbox::<T>::from_erased(node).map(|i| Self { node: i.node })
    }

    /// The typed handle for `node`, if it carries `T` (its direction is not checked).
    pub(crate) fn downcast(node: Rc<dyn ErasedBox>) -> Option<Self> {
        Inbox::<T>::downcast(node).map(|i| Self { node: i.node })
    }

    /// Sends a message (Axon's `send`). Unlinked: the message is dropped.
    ///
    /// # Errors
    ///
    /// [`NoSpaceInBox`], with the message handed back, if the destination inbox is full.
    #[inline]
    pub fn send(&self, msg: T) -> Result<(), NoSpaceInBox<T>> {
        self.node.push(msg)
    }

    /// Sends a message, waiting while the destination inbox is full: the async form of
    /// [`Outbox::send`]. Only the owner should await this: it is the owner that a collection wakes.
    pub fn send_wait(&self, msg: T) -> SendWait<'_, T> {
        SendWait {
            outbox: self,
            msg: Some(msg),
        }
    }

    /// Whether a send would be accepted now.
    pub fn has_room(&self) -> bool {
        self.node.has_room()
    }

    /// Whether everything sent so far has been collected: the destination inbox is empty (or the
    /// outbox is not linked, so nothing waits anywhere).
    pub fn all_collected(&self) -> bool {
        self.node.is_collected()
    }

    /// Whether this outbox is linked to anything.
    pub fn is_linked(&self) -> bool {
        self.node.target().is_some()
    }

    /// Links this outbox to an inbox (mode 0), or to a parent's outbox (mode 2), without recording
    /// the linkage in any postoffice. See [`Core::link`] for the recorded form.
    ///
    /// # Errors
    ///
    /// As [`Core::link`].
    pub fn link_to<D>(&self, sink: &D) -> Result<Linkage, Error>
    where
        Self: Linkable<D>,
    {
        crate::linkage::link(self, sink)
    }

    /// Cuts this outbox's link, if any.
    pub fn unlink(&self) {
        BoxNode::unlink(&self.node);
    }

    /// The box's name.
    pub fn name(&self) -> &str {
        self.node.spec.name()
    }

    /// The box's one-line description.
    pub fn description(&self) -> &str {
        self.node.spec.description()
    }

    pub(crate) fn erased(&self) -> Rc<dyn ErasedBox> {
        self.node.clone()
    }
}

impl<T> Clone for Outbox<T> {
    fn clone(&self) -> Self {
        Self {
            node: self.node.clone(),
        }
    }
}

impl<T> fmt::Debug for Outbox<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("box", &self.node.label())
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}

/// The future returned by [`Inbox::recv`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Recv<'a, T: 'static> {
    inbox: &'a Inbox<T>,
}

impl<T: 'static> Future for Recv<'_, T> {
    type Output = T;

    #[inline]
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<T> {
        match self.inbox.recv_now() {
            Some(m) => Poll::Ready(m),
            None => Poll::Pending,
        }
    }
}

/// The future returned by [`Outbox::send_wait`].
#[must_use = "futures do nothing unless awaited"]
pub struct SendWait<'a, T: 'static> {
    outbox: &'a Outbox<T>,
    msg: Option<T>,
}

impl<T> fmt::Debug for SendWait<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendWait")
            .field("outbox", self.outbox)
            .finish()
    }
}

impl<T: 'static> Unpin for SendWait<'_, T> {}

impl<T: 'static> Future for SendWait<'_, T> {
    type Output = ();

    #[inline]
    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        let Some(msg) = self.msg.take() else {
            return Poll::Ready(());
        };
        match self.outbox.node.push(msg) {
            Ok(()) => Poll::Ready(()),
            Err(full) => {
                self.msg = Some(full.message);
                let node = &self.outbox.node;
                if let Some(owner) = node.owner.upgrade() {
                    owner.wants_collection.set(true);
                    node.wait_for_collection(&node.owner);
                }
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_box_node_fits_a_128_byte_block() {
        // An idle component is four box nodes, its cell, registry and future: 943 B in
        // `cargo bench -p axon --bench idle_memory`, against a budget of 1 KiB (issue 2). A node
        // and its `Rc` counts must stay within one 128-byte glibc block (request + 8 bytes of
        // header, rounded up to 16); one size class more is 48 bytes per box, 192 per component.
        fn block<T>() -> usize {
            let request = 2 * std::mem::size_of::<usize>() + std::mem::size_of::<BoxNode<T>>();
            (request + 8).next_multiple_of(16)
        }
        assert_eq!(block::<u64>(), 128);
        assert_eq!(block::<Vec<u8>>(), 128);
        assert_eq!(
            block::<[u8; 512]>(),
            128,
            "a node does not grow with its message type"
        );
    }

    #[test]
    fn reserve_makes_room_once_and_keeps_the_limit() {
        let core = crate::Core::new("Owner");
        let inbox: Inbox<u32> = core.inbox("control", "test");
        inbox.set_size(Some(2));
        inbox.reserve(2);
        let room = inbox.node.queue.borrow().capacity();
        assert!(room >= 2, "room for {room}");
        inbox.deliver(1).unwrap();
        inbox.deliver(2).unwrap();
        assert_eq!(
            inbox.node.queue.borrow().capacity(),
            room,
            "no growth for two"
        );
        assert!(inbox.deliver(3).is_err(), "the size limit is unchanged");
        assert_eq!(inbox.drain().collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn link_state_fits_a_64_byte_allocation() {
        // Every linked box of every idle connection has one: see `Links`.
        assert!(std::mem::size_of::<Links<u64>>() <= 48);
        assert_eq!(
            std::mem::size_of::<Few<Weak<ComponentCell>>>(),
            2 * std::mem::size_of::<usize>()
        );
    }

    #[test]
    fn few_keeps_order_and_retains() {
        let mut few = Few::default();
        assert!(few.is_empty());
        for i in 0..4 {
            few.push(i);
            assert_eq!(
                few.iter().copied().collect::<Vec<_>>(),
                (0..=i).collect::<Vec<_>>()
            );
        }
        few.retain(|&i| i % 2 == 1);
        assert_eq!(few.iter().copied().collect::<Vec<_>>(), [1, 3]);
        assert_eq!(few.take_all(), [1, 3]);
        assert!(few.is_empty());
        few.push(7);
        few.retain(|&i| i != 7);
        assert!(few.is_empty());
    }
}
