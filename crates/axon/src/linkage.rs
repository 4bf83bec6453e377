//! Linkages: the wires between boxes (Axon's `Linkage.py` and `Postoffice.py`).
//!
//! Three kinds exist, named by Axon's passthrough modes:
//!
//! | mode | from | to | used for |
//! |---|---|---|---|
//! | 0 | outbox | inbox | the ordinary link between two components |
//! | 1 | inbox | inbox | a parent forwarding its inbox to a child |
//! | 2 | outbox | outbox | a child's outbox exposed as the parent's |
//!
//! Linking typed handles is checked at compile time through [`Linkable`]; linking by name
//! ([`Core::link_named`](crate::Core::link_named)) is checked when the link is made and fails with
//! an [`Error`] naming both ends and both types.

use std::fmt;
use std::rc::Rc;

use crate::boxes::{Direction, ErasedBox, Inbox, Outbox};
use crate::component::ComponentId;
use crate::error::Error;

/// The pairs of boxes that may be linked: `Outbox<T>`→`Inbox<T>`, `Inbox<T>`→`Inbox<T>` and
/// `Outbox<T>`→`Outbox<T>`. Anything else does not compile:
///
/// ```compile_fail
/// let core = axon::Core::new("X");
/// let i: axon::Inbox<u8> = core.inbox("inbox", "");
/// let o: axon::Outbox<u8> = core.outbox("outbox", "");
/// axon::link(&i, &o).unwrap(); // inbox -> outbox: no such linkage
/// ```
///
/// ```compile_fail
/// let core = axon::Core::new("X");
/// let o: axon::Outbox<u8> = core.outbox("outbox", "");
/// let i: axon::Inbox<String> = core.inbox("inbox", "");
/// axon::link(&o, &i).unwrap(); // u8 -> String: types differ
/// ```
pub trait Linkable<D> {
    /// The type-erased ends of the linkage.
    #[doc(hidden)]
    fn ends(&self, sink: &D) -> LinkEnds;
}

/// The type-erased ends of a linkage; an implementation detail of [`Linkable`].
#[doc(hidden)]
#[allow(missing_debug_implementations)]
pub struct LinkEnds(Rc<dyn ErasedBox>, Rc<dyn ErasedBox>);

impl<T: 'static> Linkable<Inbox<T>> for Outbox<T> {
    fn ends(&self, sink: &Inbox<T>) -> LinkEnds {
        LinkEnds(self.erased(), sink.erased())
    }
}

impl<T: 'static> Linkable<Inbox<T>> for Inbox<T> {
    fn ends(&self, sink: &Inbox<T>) -> LinkEnds {
        LinkEnds(self.erased(), sink.erased())
    }
}

impl<T: 'static> Linkable<Outbox<T>> for Outbox<T> {
    fn ends(&self, sink: &Outbox<T>) -> LinkEnds {
        LinkEnds(self.erased(), sink.erased())
    }
}

/// Links `source` to `sink` (see [`Linkable`] for the allowed pairs). The linkage is not recorded in
/// any component's postoffice; use [`Core::link`](crate::Core::link) for that.
///
/// # Errors
///
/// [`Error::BoxAlreadyLinked`] if `source` already feeds a box; [`Error::LinkCycle`] if the chain
/// would loop.
///
/// # Examples
///
/// ```
/// use axon::{Core, Inbox, Outbox};
///
/// let a = Core::new("A");
/// let b = Core::new("B");
/// let out: Outbox<&str> = a.outbox("outbox", "");
/// let inb: Inbox<&str> = b.inbox("inbox", "");
/// let link = axon::link(&out, &inb)?;
/// out.send("hello").unwrap();
/// assert_eq!(inb.recv_now(), Some("hello"));
/// assert_eq!(link.to_string(), format!("Link( source:[{},outbox], sink:[{},inbox] )", a.name(), b.name()));
/// # Ok::<(), axon::Error>(())
/// ```
pub fn link<S, D>(source: &S, sink: &D) -> Result<Linkage, Error>
where
    S: Linkable<D>,
{
    let LinkEnds(src, dst) = source.ends(sink);
    link_erased(src, dst)
}

pub(crate) fn link_erased(
    source: Rc<dyn ErasedBox>,
    sink: Rc<dyn ErasedBox>,
) -> Result<Linkage, Error> {
    source.clone().link_to(&sink)?;
    let epoch = source.link_epoch();
    Ok(Linkage {
        source,
        sink,
        epoch,
    })
}

/// A handle to one link between two boxes (Axon's `linkage`). Clones refer to the same link.
///
/// Dropping the handle does not cut the link; [`Linkage::unlink`] does.
#[derive(Clone)]
pub struct Linkage {
    // Held by value, not behind one more `Rc`: a connection makes a dozen links, and each would
    // otherwise be an allocation of its own.
    source: Rc<dyn ErasedBox>,
    sink: Rc<dyn ErasedBox>,
    /// The source's link epoch when this link was made: a later link between the same boxes is
    /// another linkage.
    epoch: u64,
}

impl Linkage {
    /// Cuts the link. Messages already delivered stay where they are. Cutting a link twice, or one
    /// that was replaced, does nothing.
    pub fn unlink(&self) {
        if self.is_live() {
            self.source.clone().unlink();
        }
    }

    /// Whether the link is still in place.
    pub fn is_live(&self) -> bool {
        self.source.feeds(&*self.sink) && self.source.link_epoch() == self.epoch
    }

    /// The passthrough mode: 0 outbox→inbox, 1 inbox→inbox, 2 outbox→outbox.
    pub fn passthrough(&self) -> u8 {
        match (self.source.direction(), self.sink.direction()) {
            (Direction::Out, Direction::In) => 0,
            (Direction::In, Direction::In) => 1,
            _ => 2,
        }
    }

    /// The source end, as `(component id, box name)` (Axon's `sourcePair`).
    pub fn source_pair(&self) -> (Option<ComponentId>, String) {
        (self.source.owner_id(), self.source.name().to_owned())
    }

    /// The sink end, as `(component id, box name)` (Axon's `sinkPair`).
    pub fn sink_pair(&self) -> (Option<ComponentId>, String) {
        (self.sink.owner_id(), self.sink.name().to_owned())
    }

    /// Whether the component `id` owns either end.
    pub fn involves(&self, id: ComponentId) -> bool {
        self.source.owner_id() == Some(id) || self.sink.owner_id() == Some(id)
    }
}

impl PartialEq for Linkage {
    fn eq(&self, other: &Self) -> bool {
        // The same two boxes and the same epoch: the same act of linking.
        Rc::ptr_eq(&self.source, &other.source)
            && Rc::ptr_eq(&self.sink, &other.sink)
            && self.epoch == other.epoch
    }
}

impl Eq for Linkage {}

impl fmt::Display for Linkage {
    /// `Link( source:[A_1,signal], sink:[B_2,control] )`, as Axon prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let end = |b: &Rc<dyn ErasedBox>| {
            let owner = b
                .owner_core()
                .map(|c| c.name())
                .unwrap_or_else(|| "<gone>".to_owned());
            format!("{owner},{}", b.name())
        };
        write!(
            f,
            "Link( source:[{}], sink:[{}] )",
            end(&self.source),
            end(&self.sink)
        )
    }
}

impl fmt::Debug for Linkage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
