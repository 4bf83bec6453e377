//! Components: the identity, boxes, children and linkages every component has ([`Core`]), and the
//! [`Component`] trait that gives it a `main`.
//!
//! Kamaelia's `Axon.Component.component` is a class whose `main()` generator the scheduler steps.
//! Here a component is any value that owns a [`Core`] and can turn itself into a future. Awaiting
//! an empty inbox is Kamaelia's `pause()`: the scheduler does not poll the component again until a
//! message is delivered to one of its inboxes, a consumer collects a message one of its outboxes
//! sent (while it waits for room or is in [`Core::pause`]), a timer it set fires, or a child ends.

use std::any::{Any, TypeId};
use std::cell::{Cell, OnceCell, RefCell};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use crate::boxes::{BoxDecl, BoxSpec, Direction, ErasedBox, Inbox, Outbox};
use crate::children::Children;
use crate::error::Error;
use crate::linkage::{Linkable, Linkage};
use crate::scheduler::RunQueue;

/// A component's unique id, stable for the life of the process (Axon's microprocess `id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentId(pub u64);

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

fn next_id() -> ComponentId {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    ComponentId(NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Where a component is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Created, not yet activated.
    Inactive,
    /// In the run queue.
    Queued,
    /// Being polled right now.
    Running,
    /// Being polled, and woken since the poll began: queued when the poll returns (not at once, so
    /// a component run inside it by [`run_handed_off`](crate::run_handed_off) can leave no queue
    /// entry behind for what the caller handles in the same poll).
    Woken,
    /// Paused: waits for a delivery, a collection, a timer or a remote wake.
    Sleeping,
    /// Its `main` ended, or it was stopped.
    Finished,
}

/// From four up to this many boxes, a component's box registry grows one slot at a time; beyond
/// it (an adaptive component adding boxes per client), by doubling.
const EXACT_BOX_REGISTRY: usize = 16;

pub(crate) type LocalFuture = Pin<Box<dyn Future<Output = ()>>>;

/// The shared state behind a [`Core`]: what the scheduler and the boxes need to know about a
/// component.
///
/// In declaration order (`repr(C)`), what a delivery, a wake and a poll touch first, right after
/// the `Rc`'s counts: the state flags, the deliveries, the run queue, the future and the waker;
/// the name, the box registry and the rest after them. At hundreds of connections each cache
/// line a message touches is a miss.
#[repr(C)]
pub(crate) struct ComponentCell {
    pub(crate) state: Cell<State>,
    /// Set while the component waits in `pause()` or for room in a full inbox: then a consumer's
    /// collection wakes it (Axon's "producer woken by collection").
    pub(crate) wants_collection: Cell<bool>,
    /// A stop was requested from outside; the scheduler ends the component instead of polling it.
    pub(crate) stop_requested: Cell<bool>,
    pub(crate) daemon: Cell<bool>,
    /// Which of `declared` have been made (or deleted): those are looked up among `boxes` only.
    pub(crate) made: Cell<u16>,
    /// The flags of the boxes delivered to since [`Core::take_deliveries`] last took them.
    pub(crate) delivered: Cell<u64>,
    pub(crate) runq: OnceCell<Rc<RunQueue>>,
    pub(crate) future: RefCell<Option<LocalFuture>>,
    pub(crate) waker: OnceCell<Waker>,
    pub(crate) id: ComponentId,
    pub(crate) kind: &'static str,
    pub(crate) boxes: RefCell<Vec<Rc<dyn ErasedBox>>>,
    pub(crate) extra: RefCell<Option<Box<Extra>>>,
    /// Boxes made on first use ([`Core::declare_boxes`]); a thin pointer, so a component without
    /// any pays one word.
    pub(crate) declared: Cell<Option<&'static &'static [BoxDecl]>>,
}

/// Rarely used parts of a component, allocated only when used, so an idle component stays small.
///
/// A connection's two components each have one: parents and linkages (a few of each, grown one
/// slot at a time, see [`push_small`]), no children, no resources (both boxed away, so the part
/// is 64 bytes).
#[derive(Default)]
pub(crate) struct Extra {
    /// Boxed: most components have none, and a server's list keeps an index.
    pub(crate) children: Option<Box<Children>>,
    pub(crate) parents: Vec<Weak<ComponentCell>>,
    pub(crate) postoffice: Vec<Linkage>,
    pub(crate) resources: Option<Box<Resources>>,
}

/// The resources tracked against inbox names ([`Core::track_resource`]).
#[derive(Default)]
pub(crate) struct Resources(Vec<(String, Box<dyn Any>)>);

/// Pushes onto a list that usually stays short: the first push makes room for as many items as
/// the allocator's smallest block holds ([`SMALLEST_BLOCK`]; at least one: most such lists hold
/// one item, and three 8-byte items cost no more memory than one), a push past that for four (a
/// handler wired by a chassis gets four or five linkages at once: one allocation, not four), and
/// beyond that the list doubles. A chassis that knows how many it will add reserves them first
/// ([`Core::reserve_links`]): growing a block in place or moving it costs glibc's `realloc` a few
/// hundred instructions, more than a fresh allocation.
pub(crate) fn push_small<T>(list: &mut Vec<T>, item: T) {
    if list.len() == list.capacity() && list.len() < 4 {
        let first = (SMALLEST_BLOCK / std::mem::size_of::<T>().max(1)).clamp(1, 4);
        list.reserve_exact(if list.is_empty() {
            first
        } else {
            4 - list.len()
        });
    }
    list.push(item);
}

/// The capacity to shrink a collection to, if any: only one that could hold four times what it
/// `needs` gives memory back, and then down to twice that. A collection whose size hovers around
/// a number (a server's children, its armed timers) then keeps its memory instead of giving it
/// back at each compaction and growing into it again, which cost a `realloc` (a few hundred
/// instructions in glibc) every few connections.
pub(crate) fn shrink_target(capacity: usize, needs: usize) -> Option<usize> {
    (capacity > 4 * needs).then_some(2 * needs)
}

/// The bytes glibc's smallest block holds (a 32-byte chunk less its 8-byte header): a first
/// allocation of up to this many costs no more memory than one of a single byte.
const SMALLEST_BLOCK: usize = 24;

impl ComponentCell {
    /// Makes the component runnable if it is asleep (or re-runs it if it is being polled).
    #[inline]
    pub(crate) fn wake(self: &Rc<Self>) {
        match self.state.get() {
            State::Sleeping => {
                if let Some(q) = self.runq.get() {
                    self.state.set(State::Queued);
                    q.wake(self.clone());
                }
            }
            State::Running => self.state.set(State::Woken),
            State::Queued => {
                // Already queued, say after yielding: a hand-off still brings it forward.
                if let Some(q) = self.runq.get() {
                    q.promote(self);
                }
            }
            State::Woken | State::Inactive | State::Finished => {}
        }
    }

    /// Wakes the component for a collection, if it asked for that.
    #[inline]
    pub(crate) fn wake_for_collection(self: &Rc<Self>) {
        if self.wants_collection.get() {
            self.wake();
        }
    }

    pub(crate) fn name(&self) -> String {
        format!("{}_{}", self.kind, self.id.0)
    }

    /// Goes to sleep wanting a collection from any box one of its outboxes feeds: registers with
    /// each of those boxes (Axon's "producer woken by collection").
    pub(crate) fn want_collection(self: &Rc<Self>) {
        self.wants_collection.set(true);
        let me = Rc::downgrade(self);
        for b in self.boxes.borrow().iter() {
            if b.direction() == Direction::Out {
                b.wait_for_collection(&me);
            }
        }
    }

    pub(crate) fn with_extra<R>(&self, f: impl FnOnce(&mut Extra) -> R) -> R {
        let mut extra = self.extra.borrow_mut();
        f(extra.get_or_insert_with(Box::default))
    }

    /// As [`ComponentCell::with_extra`] for reading and removing: `None`, with nothing allocated,
    /// when the component has no extra part (most handlers never get parents, children or
    /// linkages of their own, and every component's end looks for them).
    pub(crate) fn if_extra<R>(&self, f: impl FnOnce(&mut Extra) -> R) -> Option<R> {
        self.extra.borrow_mut().as_deref_mut().map(f)
    }
}

/// A component's identity, boxes, children and linkages: the part of a component the rest of the
/// graph can see.
///
/// `Core` is a cheap handle (an `Rc`); clones refer to the same component. It is `!Send`: a
/// component lives on the scheduler that activated it.
///
/// ```compile_fail
/// fn is_send<T: Send>() {}
/// is_send::<axon::Core>();
/// ```
///
/// # Examples
///
/// ```
/// use axon::{Core, Inbox, Outbox};
///
/// let core = Core::new("Doubler");
/// let inbox: Inbox<u32> = core.inbox("inbox", "numbers to double");
/// let outbox: Outbox<u32> = core.outbox("outbox", "doubled numbers");
/// assert_eq!(core.box_names(), ["inbox", "outbox"]);
/// assert!(core.name().starts_with("Doubler_"));
/// # drop((inbox, outbox));
/// ```
#[derive(Clone)]
pub struct Core {
    pub(crate) cell: Rc<ComponentCell>,
}

impl Core {
    /// Creates the core of a new, inactive component of kind `kind` (used in its name), with no boxes.
    pub fn new(kind: &'static str) -> Self {
        Self::with_capacity(kind, 0)
    }

    /// As [`Core::new`], with room for `boxes` boxes allocated at once: a component that declares
    /// more than four boxes (a socket adapter declares ten) saves the registry's re-allocations,
    /// which matter when one is made per connection.
    ///
    /// # Examples
    ///
    /// ```
    /// let core = axon::Core::with_capacity("Adapter", 6);
    /// let inbox: axon::Inbox<u8> = core.inbox("inbox", "data");
    /// assert_eq!(core.box_names(), ["inbox"]);
    /// # drop(inbox);
    /// ```
    pub fn with_capacity(kind: &'static str, boxes: usize) -> Self {
        Self {
            cell: Rc::new(ComponentCell {
                id: next_id(),
                kind,
                state: Cell::new(State::Inactive),
                wants_collection: Cell::new(false),
                stop_requested: Cell::new(false),
                daemon: Cell::new(false),
                runq: OnceCell::new(),
                future: RefCell::new(None),
                waker: OnceCell::new(),
                boxes: RefCell::new(Vec::with_capacity(boxes)),
                extra: RefCell::new(None),
                delivered: Cell::new(0),
                declared: Cell::new(None),
                made: Cell::new(0),
            }),
        }
    }

    /// The component's unique id.
    pub fn id(&self) -> ComponentId {
        self.cell.id
    }

    /// Which of this component's inboxes were delivered to since the last call (see
    /// [`Deliveries`](crate::Deliveries)), and starts the record afresh.
    ///
    /// For the component itself: the record is taken, so anyone else taking it would hide
    /// deliveries from a component that relies on it.
    ///
    /// # Examples
    ///
    /// ```
    /// use axon::{Core, Inbox};
    ///
    /// let core = Core::new("Reader");
    /// let data: Inbox<u8> = core.inbox("inbox", "data");
    /// let control: Inbox<u8> = core.inbox("control", "signals");
    /// data.deliver(1).unwrap();
    /// let d = core.take_deliveries();
    /// assert!(data.delivered_in(d));
    /// assert!(!control.delivered_in(d), "nothing for control: no need to look");
    /// assert!(!data.delivered_in(core.take_deliveries()), "taken");
    /// assert_eq!(data.recv_now(), Some(1));
    /// ```
    #[inline]
    pub fn take_deliveries(&self) -> crate::Deliveries {
        crate::Deliveries(self.cell.delivered.take())
    }

    /// The flags [`Core::take_deliveries`] would return now, left in place: for a component that
    /// wants to know whether anything arrived without taking on the work of looking.
    ///
    /// ```
    /// use axon::{Core, Inbox};
    ///
    /// let core = Core::new("Reader");
    /// let data: Inbox<u8> = core.inbox("inbox", "data");
    /// data.deliver(1).unwrap();
    /// assert!(data.delivered_in(core.deliveries()));
    /// assert!(!data.others_delivered_in(core.deliveries()), "nothing else");
    /// assert!(data.delivered_in(core.take_deliveries()), "still there to take");
    /// ```
    #[inline]
    pub fn deliveries(&self) -> crate::Deliveries {
        crate::Deliveries(self.cell.delivered.get())
    }

    /// The component's name, `Kind_id`, unique in the process (Axon's `name`).
    pub fn name(&self) -> String {
        self.cell.name()
    }

    /// The kind given to [`Core::new`].
    pub fn kind(&self) -> &'static str {
        self.cell.kind
    }

    /// Creates and registers an inbox with a static name and description.
    ///
    /// # Panics
    ///
    /// In debug builds, if the component already has a box called `name`: declared box names are
    /// fixed by the component's author, so a clash is a bug, and tests find it. (Release builds skip
    /// the check, a string comparison per existing box, paid for every box of every connection.)
    /// Use [`Core::add_inbox`] for run-time boxes.
    pub fn inbox<T: 'static>(&self, name: &'static str, description: &'static str) -> Inbox<T> {
        self.assert_free(name);
        let node = Inbox::new_node(&self.cell, BoxSpec::Static { name, description });
        self.register(node.node.clone());
        node
    }

    /// Creates and registers an outbox with a static name and description.
    ///
    /// # Panics
    ///
    /// In debug builds, if the component already has a box called `name` (see [`Core::inbox`]).
    pub fn outbox<T: 'static>(&self, name: &'static str, description: &'static str) -> Outbox<T> {
        self.assert_free(name);
        let node = Outbox::new_node(&self.cell, BoxSpec::Static { name, description });
        self.register(node.node.clone());
        node
    }

    /// Adds an inbox at run time (Axon's `AdaptiveCommsComponent.addInbox`). If `name` is taken, a
    /// numeric suffix makes it unique; the name actually used is returned with the box.
    pub fn add_inbox<T: 'static>(&self, name: &str, description: &str) -> (String, Inbox<T>) {
        let name = self.unique_name(name);
        let spec = BoxSpec::dynamic(&name, description);
        let node = Inbox::new_node(&self.cell, spec);
        self.register(node.node.clone());
        (name, node)
    }

    /// Adds an outbox at run time (Axon's `addOutbox`), with the same naming rule as
    /// [`Core::add_inbox`].
    pub fn add_outbox<T: 'static>(&self, name: &str, description: &str) -> (String, Outbox<T>) {
        let name = self.unique_name(name);
        let spec = BoxSpec::dynamic(&name, description);
        let node = Outbox::new_node(&self.cell, spec);
        self.register(node.node.clone());
        (name, node)
    }

    /// Removes a box by name (Axon's `deleteInbox`/`deleteOutbox`). Messages still in it are lost;
    /// links to and from it are cut.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchBox`] if there is no such box (it may already have been deleted).
    pub fn delete_box(&self, name: &str) -> Result<(), Error> {
        let node = {
            let mut boxes = self.cell.boxes.borrow_mut();
            match boxes.iter().position(|b| b.name() == name) {
                Some(pos) => boxes.remove(pos),
                None => {
                    drop(boxes);
                    // A declared box never made: deleted by never making it.
                    let (i, _) = self.unmade(name).ok_or_else(|| self.no_such_box(name))?;
                    self.cell.made.set(self.cell.made.get() | (1 << i));
                    return Ok(());
                }
            }
        };
        node.detach();
        Ok(())
    }

    /// The inbox called `name`, if it carries `T`.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchBox`] if there is no box of that name, [`Error::WrongBoxType`] if it is an
    /// outbox or carries another type.
    pub fn inbox_named<T: 'static>(&self, name: &str) -> Result<Inbox<T>, Error> {
        let node = self.box_for::<T>(name, Direction::In)?;
        if node.direction() != Direction::In {
            return Err(Error::WrongBoxType {
                name: node.label(),
                actual: "an outbox",
                requested: "an inbox",
            });
        }
        Inbox::from_erased(node)
    }

    /// Whether the component has a box (inbox or outbox) called `name`.
    pub fn has_box(&self, name: &str) -> bool {
        self.registered_box(name).is_some() || self.unmade(name).is_some()
    }

    /// The inbox called `name` if there is one and it carries `T`, else `None`: the lookup for an
    /// optional box (a chassis wiring whatever a handler happens to have), which builds no error
    /// when the box is absent, an outbox, or of another type.
    ///
    /// # Examples
    ///
    /// ```
    /// let core = axon::Core::new("Handler");
    /// let _inbox: axon::Inbox<u8> = core.inbox("sslready", "");
    /// assert!(core.find_inbox::<u8>("sslready").is_some());
    /// assert!(core.find_inbox::<String>("sslready").is_none()); // another type
    /// assert!(core.find_outbox::<u8>("sslready").is_none()); // an inbox
    /// assert!(core.find_inbox::<u8>("makessl").is_none()); // absent
    /// ```
    pub fn find_inbox<T: 'static>(&self, name: &str) -> Option<Inbox<T>> {
        Inbox::downcast(self.find_box(name, Direction::In, TypeId::of::<T>())?)
    }

    /// The outbox called `name` if there is one and it carries `T`, else `None` (as
    /// [`Core::find_inbox`]).
    pub fn find_outbox<T: 'static>(&self, name: &str) -> Option<Outbox<T>> {
        Outbox::downcast(self.find_box(name, Direction::Out, TypeId::of::<T>())?)
    }

    /// The box called `name` facing `dir`; a declared box is made only if it carries `ty`.
    fn find_box(&self, name: &str, dir: Direction, ty: TypeId) -> Option<Rc<dyn ErasedBox>> {
        match self.registered_box(name) {
            Some(b) => Some(b).filter(|b| b.direction() == dir),
            None => {
                let (i, decl) = self.unmade(name)?;
                decl.fits(dir, Some(ty)).then(|| self.make_declared(i))
            }
        }
    }

    /// The box called `name` among those made (names are unique within a component).
    fn registered_box(&self, name: &str) -> Option<Rc<dyn ErasedBox>> {
        self.cell
            .boxes
            .borrow()
            .iter()
            .find(|b| b.name() == name)
            .cloned()
    }

    /// The box called `name`, made now if it is declared and not made yet.
    fn box_called(&self, name: &str) -> Option<Rc<dyn ErasedBox>> {
        self.registered_box(name)
            .or_else(|| self.unmade(name).map(|(i, _)| self.make_declared(i)))
    }

    /// The box called `name` for a lookup of `dir` carrying `T`: a declared box is made only if it
    /// fits; if it does not, the error says why, as it would for a made box.
    fn box_for<T: 'static>(&self, name: &str, dir: Direction) -> Result<Rc<dyn ErasedBox>, Error> {
        if let Some(b) = self.registered_box(name) {
            return Ok(b);
        }
        let (i, decl) = self.unmade(name).ok_or_else(|| self.no_such_box(name))?;
        if decl.fits(dir, Some(TypeId::of::<T>())) {
            return Ok(self.make_declared(i));
        }
        let (actual, requested) = match (decl.dir, dir) {
            (Direction::In, Direction::Out) => ("an inbox", "an outbox"),
            (Direction::Out, Direction::In) => ("an outbox", "an inbox"),
            _ => ((decl.type_name)(), std::any::type_name::<T>()),
        };
        Err(Error::WrongBoxType {
            name: format!("{}.{name}", self.name()),
            actual,
            requested,
        })
    }

    /// Declares boxes made on first use (see [`BoxDecl`]), at most 16; their names must not be
    /// taken by the component's other boxes. A component declares once; a second call replaces the
    /// list (boxes already made stay).
    ///
    /// # Panics
    ///
    /// In debug builds, if a name is taken or there are more than 16.
    pub fn declare_boxes(&self, decls: &'static &'static [BoxDecl]) {
        debug_assert!(decls.len() <= 16, "at most 16 declared boxes");
        for decl in decls.iter() {
            self.assert_free(decl.name);
        }
        self.cell.declared.set(Some(decls));
        self.cell.made.set(0);
    }

    /// The declared inbox at `index` of the list given to [`Core::declare_boxes`], made now if it
    /// is not yet (by this call or a lookup by name: either way the same box). Cheap to keep: the
    /// handle stays good.
    ///
    /// # Panics
    ///
    /// If no boxes are declared, `index` is out of range, or the declaration is not an inbox of
    /// `T`: the component's author wrote both, so this is a bug.
    pub fn declared_inbox<T: 'static>(&self, index: usize) -> Inbox<T> {
        let node = self.declared_box(index, Direction::In, TypeId::of::<T>());
        Inbox::downcast(node).expect("a declared inbox carries its declared type")
    }

    /// The declared outbox at `index` (as [`Core::declared_inbox`]).
    ///
    /// # Panics
    ///
    /// As [`Core::declared_inbox`].
    pub fn declared_outbox<T: 'static>(&self, index: usize) -> Outbox<T> {
        let node = self.declared_box(index, Direction::Out, TypeId::of::<T>());
        Outbox::downcast(node).expect("a declared outbox carries its declared type")
    }

    /// Whether the declared box at `index` has been made (by its owner or by a lookup), without
    /// making it.
    pub fn declared_is_made(&self, index: usize) -> bool {
        index < 16 && self.cell.made.get() & (1 << index) != 0
    }

    fn declared_box(&self, index: usize, dir: Direction, ty: TypeId) -> Rc<dyn ErasedBox> {
        let decls = self.cell.declared.get().expect("boxes declared");
        let decl = &decls[index];
        assert!(decl.fits(dir, Some(ty)), "{decl:?} is not of that kind");
        if self.cell.made.get() & (1 << index) != 0 {
            if let Some(b) = self.registered_box(decl.name) {
                return b;
            }
            // Deleted, and wanted again by its owner: made anew.
        }
        self.make_declared(index)
    }

    /// The declared box called `name` that is not made yet, with its place in the list.
    fn unmade(&self, name: &str) -> Option<(usize, &'static BoxDecl)> {
        let decls: &'static [BoxDecl] = self.cell.declared.get()?;
        let made = self.cell.made.get();
        decls
            .iter()
            .enumerate()
            .find(|&(i, d)| made & (1 << i) == 0 && d.name == name)
    }

    /// Makes declared box `index` and registers it: it takes the next flag in the record of
    /// deliveries ([`crate::Deliveries::any_after`]).
    fn make_declared(&self, index: usize) -> Rc<dyn ErasedBox> {
        let decls: &'static [BoxDecl] = self.cell.declared.get().expect("boxes declared");
        let decl = &decls[index];
        self.cell.made.set(self.cell.made.get() | (1 << index));
        let spec = BoxSpec::Static {
            name: decl.name,
            description: decl.description,
        };
        let node = (decl.make)(&self.cell, spec);
        self.register(node.clone());
        node
    }

    /// The outbox called `name`, if it carries `T`.
    ///
    /// # Errors
    ///
    /// As [`Core::inbox_named`].
    pub fn outbox_named<T: 'static>(&self, name: &str) -> Result<Outbox<T>, Error> {
        let node = self.box_for::<T>(name, Direction::Out)?;
        if node.direction() != Direction::Out {
            return Err(Error::WrongBoxType {
                name: node.label(),
                actual: "an inbox",
                requested: "an outbox",
            });
        }
        Outbox::from_erased(node)
    }

    /// The names of every box, inboxes and outboxes, in the order they were created.
    pub fn box_names(&self) -> Vec<String> {
        let made = self.cell.boxes.borrow();
        let made = made.iter().map(|b| b.name().to_owned());
        made.chain(self.unmade_decls().map(|d| d.name.to_owned()))
            .collect()
    }

    /// The declared boxes not made yet, in the order declared.
    fn unmade_decls(&self) -> impl Iterator<Item = &'static BoxDecl> {
        let decls: &'static [BoxDecl] = self.cell.declared.get().map_or(&[], |d| d);
        let made = self.cell.made.get();
        decls
            .iter()
            .enumerate()
            .filter(move |&(i, _)| made & (1 << i) == 0)
            .map(|(_, d)| d)
    }

    /// The names of the inboxes, with their descriptions (Kamaelia's `Inboxes` dict).
    pub fn inboxes(&self) -> Vec<(String, String)> {
        self.describe(Direction::In)
    }

    /// The names of the outboxes, with their descriptions (Kamaelia's `Outboxes` dict).
    pub fn outboxes(&self) -> Vec<(String, String)> {
        self.describe(Direction::Out)
    }

    /// Whether the inbox called `name` holds a message (Axon's `dataReady`). Counts only the box's
    /// own storage: an inbox forwarded elsewhere by a passthrough reads empty. An unknown name reads
    /// empty too.
    pub fn data_ready(&self, name: &str) -> bool {
        self.cell
            .boxes
            .borrow()
            .iter()
            .any(|b| b.name() == name && b.local_len() > 0)
    }

    /// The name of the first inbox that holds a message, if any (Axon's `anyReady`).
    pub fn any_ready(&self) -> Option<String> {
        self.cell
            .boxes
            .borrow()
            .iter()
            .find(|b| b.direction() == Direction::In && b.local_len() > 0)
            .map(|b| b.name().to_owned())
    }

    /// Kamaelia's `pause()`: sleeps until something wakes this component — a delivery to any of
    /// its inboxes, a collection from an inbox one of its outboxes feeds, a child ending, a timer,
    /// or a remote wake. As in Axon, it does not look at the inboxes: check them first (a delivery
    /// while the component runs makes it runnable again, so nothing is missed).
    ///
    /// Must be awaited from this component's own `main`.
    pub fn pause(&self) -> Pause<'_> {
        Pause {
            core: self,
            slept: false,
            collection: Collection::AnyOutbox,
        }
    }

    /// Like [`Core::pause`], but a collection downstream does not wake the component. For hot loops
    /// that only wait for deliveries, timers or remote wakes.
    pub fn pause_for_delivery(&self) -> Pause<'_> {
        Pause {
            core: self,
            slept: false,
            collection: Collection::None,
        }
    }

    /// Like [`Core::pause_for_delivery`], and a collection from the box `outbox` feeds wakes the
    /// component too (collections from the boxes its other outboxes feed do not): for a producer
    /// holding a message for one full consumer while it still serves its inboxes and timers.
    ///
    /// Must be awaited from this component's own `main`.
    pub fn pause_for_collection<T: 'static>(&self, outbox: &Outbox<T>) -> Pause<'_> {
        Pause {
            core: self,
            slept: false,
            collection: Collection::One(outbox.node.clone()),
        }
    }

    /// Marks the component as a daemon (or not): [`Scheduler::run`](crate::Scheduler::run)
    /// returns once only daemons are left, stopping them. Services such as a selector are daemons,
    /// so a program ends when its real work does.
    pub fn set_daemon(&self, daemon: bool) {
        if self.cell.daemon.replace(daemon) != daemon && self.cell.state.get() != State::Finished {
            if let Some(q) = self.cell.runq.get() {
                q.adjust_daemons(daemon);
            }
        }
    }

    /// Whether the component is a daemon (see [`Core::set_daemon`]).
    pub fn is_daemon(&self) -> bool {
        self.cell.daemon.get()
    }

    /// Waits until some inbox of this component holds a message, then returns its name.
    pub async fn wait_any(&self) -> String {
        loop {
            if let Some(name) = self.any_ready() {
                return name;
            }
            self.pause().await;
        }
    }

    /// Links two boxes and records the linkage in this component's postoffice, so it is removed
    /// when this component ends (Axon's `component.link`).
    ///
    /// The allowed pairs are checked at compile time: outbox→inbox (mode 0), inbox→inbox (mode 1,
    /// passthrough into a child) and outbox→outbox (mode 2, passthrough out of a child).
    ///
    /// # Errors
    ///
    /// [`Error::BoxAlreadyLinked`] if `source` already feeds a box; [`Error::LinkCycle`] if the link
    /// would close a loop.
    pub fn link<S, D>(&self, source: &S, sink: &D) -> Result<Linkage, Error>
    where
        S: Linkable<D>,
    {
        let linkage = crate::linkage::link(source, sink)?;
        self.cell
            .with_extra(|e| push_small(&mut e.postoffice, linkage.clone()));
        Ok(linkage)
    }

    /// Makes room in this component's postoffice for `additional` more linkages: a chassis that
    /// wires several of a handler's boxes at once (through [`Core::link`] or
    /// [`Core::link_named`] on the handler's core) reserves them first, so the list is allocated
    /// once at its final size instead of regrown as each linkage arrives.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = (axon::Core::new("A"), axon::Core::new("B"));
    /// let (out, inbox) = (a.outbox::<u8>("outbox", ""), b.inbox::<u8>("inbox", ""));
    /// let (sig, control) = (a.outbox::<u8>("signal", ""), b.inbox::<u8>("control", ""));
    /// a.reserve_links(2);
    /// a.link(&out, &inbox)?;
    /// a.link(&sig, &control)?;
    /// assert_eq!(a.linkages().len(), 2);
    /// # Ok::<(), axon::Error>(())
    /// ```
    pub fn reserve_links(&self, additional: usize) {
        self.cell
            .with_extra(|e| e.postoffice.reserve_exact(additional));
    }

    /// Links two boxes named at run time and records the linkage (as [`Core::link`]).
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchBox`] for an unknown box, [`Error::TypeMismatch`] naming both ends and both
    /// types when the boxes carry different types, [`Error::InvalidDirection`] for inbox→outbox,
    /// and the errors of [`Core::link`].
    pub fn link_named(&self, source: (&Core, &str), sink: (&Core, &str)) -> Result<Linkage, Error> {
        let src = source.0.erased_box(source.1)?;
        let dst = sink.0.erased_box(sink.1)?;
        let linkage = crate::linkage::link_erased(src, dst)?;
        self.cell
            .with_extra(|e| push_small(&mut e.postoffice, linkage.clone()));
        Ok(linkage)
    }

    /// Removes one linkage this component made (Axon's `unlink(thelinkage=…)`). Messages already
    /// delivered stay where they are.
    pub fn unlink(&self, linkage: &Linkage) {
        linkage.unlink();
        self.cell
            .if_extra(|e| e.postoffice.retain(|l| l != linkage));
    }

    /// Removes every linkage this component made that has `other` at either end (Axon's
    /// `unlink(thecomponent=…)`).
    pub fn unlink_component(&self, other: &Core) {
        let removed: Vec<Linkage> = self
            .cell
            // One pass, and no allocation when nothing involves `other` (the usual case).
            .if_extra(|e| {
                e.postoffice
                    .extract_if(.., |l| l.involves(other.id()))
                    .collect()
            })
            .unwrap_or_default();
        for l in removed {
            l.unlink();
        }
    }

    /// Removes every linkage this component made (Axon's `postoffice.unlinkAll`). The scheduler does
    /// this when the component ends.
    pub fn unlink_all(&self) {
        let all = self.cell.if_extra(|e| std::mem::take(&mut e.postoffice));
        for l in all.into_iter().flatten() {
            l.unlink();
        }
    }

    /// The linkages this component made and has not removed.
    pub fn linkages(&self) -> Vec<Linkage> {
        self.cell
            .if_extra(|e| e.postoffice.clone())
            .unwrap_or_default()
    }

    /// Makes `child` a child of this component: when the child ends, this component is woken
    /// (Axon's `addChildren`). The child is *not* activated.
    /// Adding a child it already has changes nothing.
    pub fn add_child(&self, child: &Core) {
        let added = self
            .cell
            .with_extra(|e| e.children.get_or_insert_with(Box::default).add(child));
        if !added {
            return;
        }
        let parent = Rc::downgrade(&self.cell);
        child
            .cell
            .with_extra(|e| push_small(&mut e.parents, parent));
    }

    /// Adds several children (see [`Core::add_child`]).
    pub fn add_children<'a>(&self, children: impl IntoIterator<Item = &'a Core>) {
        for c in children {
            self.add_child(c);
        }
    }

    /// Forgets a child: it no longer wakes this component, and every linkage this component made
    /// that involves the child is removed (Axon's `removeChild`). Costs the same however many
    /// children there are.
    pub fn remove_child(&self, child: &Core) {
        self.cell.if_extra(|e| {
            if let Some(children) = &mut e.children {
                children.remove(child.id());
            }
        });
        let me = Rc::as_ptr(&self.cell);
        child
            .cell
            .if_extra(|e| e.parents.retain(|p| p.as_ptr() != me));
        self.unlink_component(child);
    }

    /// The current children (Axon's `childComponents`).
    pub fn children(&self) -> Vec<Core> {
        self.cell
            .if_extra(|e| e.children.as_ref().map(|c| c.iter().cloned().collect()))
            .flatten()
            .unwrap_or_default()
    }

    /// Whether the component's `main` has ended or it was stopped.
    pub fn is_finished(&self) -> bool {
        self.cell.state.get() == State::Finished
    }

    /// Whether the component has been activated on a scheduler.
    pub fn is_activated(&self) -> bool {
        self.cell.state.get() != State::Inactive
    }

    /// Whether the component is paused (asleep until something wakes it). Inactive and finished
    /// components are not paused.
    pub fn is_paused(&self) -> bool {
        self.cell.state.get() == State::Sleeping
    }

    /// Remembers a resource against a name (a reduced form of Axon's `trackResource`): typically
    /// which inbox belongs to which client in an adaptive component.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchBox`] if `inbox` is not a box of this component.
    pub fn track_resource<R: Any>(&self, resource: R, inbox: &str) -> Result<(), Error> {
        self.erased_box(inbox)?;
        self.cell.with_extra(|e| {
            let resources = e.resources.get_or_insert_with(Box::default);
            resources.0.retain(|(n, _)| n != inbox);
            resources.0.push((inbox.to_owned(), Box::new(resource)));
        });
        Ok(())
    }

    /// Takes back the resource tracked against `inbox` (Axon's `retrieveTrackedResource` followed
    /// by `ceaseTrackingResource`).
    pub fn untrack_resource<R: Any>(&self, inbox: &str) -> Option<R> {
        self.cell
            .if_extra(|e| {
                let resources = e.resources.as_mut()?;
                let pos = resources
                    .0
                    .iter()
                    .position(|(n, r)| n == inbox && r.is::<R>())?;
                let (_, r) = resources.0.remove(pos);
                r.downcast::<R>().ok().map(|b| *b)
            })
            .flatten()
    }

    pub(crate) fn erased_box(&self, name: &str) -> Result<Rc<dyn ErasedBox>, Error> {
        self.box_called(name).ok_or_else(|| self.no_such_box(name))
    }

    /// Creates a box carrying the same type as `like`, registers it and returns it. Chassis use this
    /// to give themselves boxes that match their children's.
    pub(crate) fn add_box_like(
        &self,
        like: &Rc<dyn ErasedBox>,
        name: &str,
        description: &str,
        dir: Direction,
    ) -> Rc<dyn ErasedBox> {
        let name = self.unique_name(name);
        let node = like.new_like(self, BoxSpec::dynamic(&name, description), dir);
        self.register(node.clone());
        node
    }

    pub(crate) fn register(&self, node: Rc<dyn ErasedBox>) {
        let mut boxes = self.cell.boxes.borrow_mut();
        if boxes.len() == boxes.capacity() && (4..EXACT_BOX_REGISTRY).contains(&boxes.len()) {
            // A component declares a handful of boxes, once: past the first four (the defaults,
            // allocated at once), room for exactly one more keeps an idle component's registry
            // tight (doubling would give a 10-box adapter 16 slots).
            boxes.reserve_exact(1);
        }
        boxes.push(node);
    }

    fn no_such_box(&self, name: &str) -> Error {
        Error::NoSuchBox {
            component: self.name(),
            name: name.to_owned(),
        }
    }

    fn assert_free(&self, name: &str) {
        debug_assert!(
            !self.cell.boxes.borrow().iter().any(|b| b.name() == name)
                && self.unmade(name).is_none(),
            "component {} already has a box named {name:?}",
            self.name()
        );
    }

    fn unique_name(&self, name: &str) -> String {
        let boxes = self.cell.boxes.borrow();
        let taken = |n: &str| boxes.iter().any(|b| b.name() == n) || self.unmade(n).is_some();
        if !taken(name) {
            return name.to_owned();
        }
        (1..)
            .map(|i| format!("{name}{i}"))
            .find(|n| !taken(n))
            .unwrap_or_else(|| name.to_owned())
    }

    fn describe(&self, dir: Direction) -> Vec<(String, String)> {
        let made = self.cell.boxes.borrow();
        let made = made
            .iter()
            .filter(|b| b.direction() == dir)
            .map(|b| (b.name().to_owned(), b.description().to_owned()));
        let unmade = self
            .unmade_decls()
            .filter(|d| d.dir == dir)
            .map(|d| (d.name.to_owned(), d.description.to_owned()));
        made.chain(unmade).collect()
    }
}

impl PartialEq for Core {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.cell, &other.cell)
    }
}

impl Eq for Core {}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("name", &self.name())
            .field("state", &self.cell.state.get())
            .finish()
    }
}

impl fmt::Display for Core {
    /// `Component Kind_id [ inboxes : [...] outboxes : [...] ]`, in the spirit of Axon's `__str__`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = |dir| -> Vec<String> { self.describe(dir).into_iter().map(|p| p.0).collect() };
        write!(
            f,
            "Component {} [ inboxes : {:?} outboxes : {:?} ]",
            self.name(),
            names(Direction::In),
            names(Direction::Out)
        )
    }
}

/// Which collections wake a [`Pause`].
enum Collection {
    None,
    AnyOutbox,
    One(Rc<dyn ErasedBox>),
}

/// The future returned by [`Core::pause`], [`Core::pause_for_delivery`] and
/// [`Core::pause_for_collection`].
#[must_use = "pausing does nothing unless awaited"]
pub struct Pause<'a> {
    core: &'a Core,
    slept: bool,
    collection: Collection,
}

impl fmt::Debug for Pause<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let collection = match &self.collection {
            Collection::None => "none",
            Collection::AnyOutbox => "any outbox",
            Collection::One(_) => "one outbox",
        };
        f.debug_struct("Pause")
            .field("core", self.core)
            .field("slept", &self.slept)
            .field("collection", &collection)
            .finish()
    }
}

impl Future for Pause<'_> {
    type Output = ();

    #[inline]
    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        if self.slept {
            return Poll::Ready(());
        }
        self.slept = true;
        let cell = &self.core.cell;
        match &self.collection {
            Collection::None => {}
            Collection::AnyOutbox => cell.want_collection(),
            Collection::One(outbox) => {
                cell.wants_collection.set(true);
                outbox.wait_for_collection(&Rc::downgrade(cell));
            }
        }
        Poll::Pending
    }
}

/// A component: something with a [`Core`] and a `main` the scheduler runs (Axon's `component`).
///
/// Write the boxes as fields (created from the core with [`Core::inbox`] / [`Core::outbox`], or use
/// [`Boxes`] for the four defaults) and the behaviour in [`Component::main`]. The
/// component ends when `main` returns; the scheduler then wakes its parents and removes the
/// linkages it made.
///
/// # Examples
///
/// ```
/// use axon::{Boxes, Component, Core, Scheduler};
///
/// /// Doubles every number it receives; stops on any control message.
/// struct Doubler {
///     boxes: Boxes<u64, u64>,
/// }
///
/// impl Component for Doubler {
///     fn core(&self) -> &Core {
///         &self.boxes.core
///     }
///
///     async fn main(self) {
///         let b = self.boxes;
///         loop {
///             while let Some(n) = b.inbox.recv_now() {
///                 let _ = b.outbox.send(n * 2);
///             }
///             if b.control.recv_now().is_some() {
///                 return;
///             }
///             b.core.pause().await;
///         }
///     }
/// }
///
/// let doubler = Doubler { boxes: Boxes::new("Doubler") };
/// let results = doubler.core().inbox::<u64>("results", "test sink");
/// doubler.boxes.outbox.link_to(&results).unwrap();
/// doubler.boxes.inbox.deliver(21).unwrap();
/// doubler.boxes.control.deliver(axon::Ipc::producer_finished()).unwrap();
///
/// let sched = Scheduler::new();
/// sched.activate(doubler);
/// sched.run();
/// assert_eq!(results.recv_now(), Some(42));
/// ```
pub trait Component: 'static {
    /// The component's core: identity, boxes, children, linkages.
    fn core(&self) -> &Core;

    /// The component's behaviour. It runs until it returns.
    fn main(self) -> impl Future<Output = ()> + 'static
    where
        Self: Sized;
}

/// A type-erased component, so chassis can hold components of different types.
///
/// Its method is not called `core`, so types that implement [`Component`] do not get two methods
/// of the same name.
pub trait AnyComponent {
    /// The component's core.
    fn component_core(&self) -> &Core;

    /// Turns the component into its `main` future.
    fn into_main(self: Box<Self>) -> Pin<Box<dyn Future<Output = ()>>>;

    /// The component as [`Any`](std::any::Any), so a chassis that knows a component type can
    /// reach its typed boxes instead of looking them up by name. Every [`Component`] gives
    /// itself; a hand-written implementation gives `None` unless it says otherwise.
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }
}

impl<C: Component> AnyComponent for C {
    fn component_core(&self) -> &Core {
        Component::core(self)
    }

    fn into_main(self: Box<Self>) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin((*self).main())
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}

impl fmt::Debug for dyn AnyComponent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.component_core(), f)
    }
}

/// Kamaelia's default boxes: `inbox` and `control` in, `outbox` and `signal` out.
///
/// Embed it in a component to get the defaults with one line; `control` and `signal` carry the
/// system messages ([`Ipc`](crate::Ipc)).
pub struct Boxes<I: 'static, O: 'static> {
    /// The component's core.
    pub core: Core,
    /// `inbox`: data to work on.
    pub inbox: Inbox<I>,
    /// `control`: shutdown requests and other system messages.
    pub control: Inbox<crate::Ipc>,
    /// `outbox`: results.
    pub outbox: Outbox<O>,
    /// `signal`: `producerFinished` / `shutdownMicroprocess` when this component ends.
    pub signal: Outbox<crate::Ipc>,
}

impl<I: 'static, O: 'static> Boxes<I, O> {
    /// Creates a core of kind `kind` with the four default boxes.
    pub fn new(kind: &'static str) -> Self {
        let core = Core::new(kind);
        Self {
            inbox: core.inbox("inbox", "data to work on"),
            control: core.inbox("control", "shutdown requests and other system messages"),
            outbox: core.outbox("outbox", "results"),
            signal: core.outbox(
                "signal",
                "producerFinished / shutdownMicroprocess when this ends",
            ),
            core,
        }
    }
}

impl<I: 'static, O: 'static> Boxes<I, O> {
    /// Waits for the next message: data on `inbox` first, then a message on `control`. Data queued
    /// before a `producerFinished` is therefore seen before it.
    pub async fn next(&self) -> Msg<I> {
        loop {
            if let Some(d) = self.inbox.recv_now() {
                return Msg::Data(d);
            }
            if let Some(c) = self.control.recv_now() {
                return Msg::Control(c);
            }
            self.core.pause_for_delivery().await;
        }
    }
}

/// What [`Boxes::next`] found.
#[derive(Debug, Clone)]
pub enum Msg<I> {
    /// A message from `inbox`.
    Data(I),
    /// A message from `control`.
    Control(crate::Ipc),
}

impl<I, O> fmt::Debug for Boxes<I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.core, f)
    }
}

/// A component made from a closure over [`Boxes`]: the quickest way to write a small component.
///
/// # Examples
///
/// ```
/// use axon::{FnComponent, Scheduler};
///
/// use axon::{Ipc, Msg};
///
/// let upper = FnComponent::<String, String, _>::new("Upper", |b| async move {
///     while let Msg::Data(s) = b.next().await {
///         let _ = b.outbox.send(s.to_uppercase());
///     }
/// });
/// let out = upper.core().inbox::<String>("results", "test sink");
/// upper.boxes().outbox.link_to(&out).unwrap();
/// upper.boxes().inbox.deliver("hi".to_owned()).unwrap();
/// upper.boxes().control.deliver(Ipc::producer_finished()).unwrap();
/// let sched = Scheduler::new();
/// sched.activate(upper);
/// sched.run();
/// assert_eq!(out.recv_now().as_deref(), Some("HI"));
/// ```
pub struct FnComponent<I: 'static, O: 'static, F> {
    boxes: Boxes<I, O>,
    body: F,
}

impl<I, O, F, Fut> FnComponent<I, O, F>
where
    F: FnOnce(Boxes<I, O>) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    /// Creates a component of kind `kind` whose `main` is `body(boxes)`.
    pub fn new(kind: &'static str, body: F) -> Self {
        Self {
            boxes: Boxes::new(kind),
            body,
        }
    }

    /// The component's boxes, for wiring before activation.
    pub fn boxes(&self) -> &Boxes<I, O> {
        &self.boxes
    }

    /// The component's core.
    pub fn core(&self) -> &Core {
        &self.boxes.core
    }
}

impl<I, O, F> fmt::Debug for FnComponent<I, O, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.boxes.core, f)
    }
}

impl<I, O, F, Fut> Component for FnComponent<I, O, F>
where
    F: FnOnce(Boxes<I, O>) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    fn core(&self) -> &Core {
        &self.boxes.core
    }

    fn main(self) -> impl Future<Output = ()> + 'static {
        (self.body)(self.boxes)
    }
}
