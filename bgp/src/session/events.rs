//! The channel from the peer tasks to the daemon, bounded by event count
//! *and* by the memory the decoded events hold.
//!
//! A count alone does not bound memory: one UPDATE with the Extended
//! Message capability (RFC 8654) carries up to ~2,000 EVPN routes, so 1,024
//! queued UPDATEs can hold most of a table decoded. Each event is charged
//! its approximate heap size ([`event_cost`]) against a byte budget shared
//! by every peer of the speaker; a peer task waits for budget before it
//! queues an event, and stops reading its socket while it waits (TCP flow
//! control then slows the peer). Nothing is ever dropped.

use std::mem::size_of;
use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::SpeakerEvent;
use crate::attr::PathAttributes;
use crate::message::{Nlri, Update};

/// Approximate bytes an event holds: the event itself plus the heap parts
/// of an UPDATE (NLRI vectors and attribute lists). NLRI types are counted
/// by their inline size (heap they may own is not seen).
pub fn event_cost<N: Nlri>(ev: &SpeakerEvent<N>) -> usize {
    let base = size_of::<SpeakerEvent<N>>();
    match ev {
        SpeakerEvent::Update { update, .. } => base + update_heap_bytes(update),
        _ => base,
    }
}

fn update_heap_bytes<N: Nlri>(u: &Update<N>) -> usize {
    let nlri = u.mp_reach.as_ref().map_or(0, |r| r.nlri.capacity())
        + u.mp_unreach.as_ref().map_or(0, |r| r.withdrawn.capacity());
    let v4 = u.withdrawn.capacity() + u.nlri.capacity();
    nlri * size_of::<N>()
        + v4 * size_of::<ipnet::Ipv4Net>()
        + attrs_heap_bytes(&u.attributes)
        + u.errors.capacity() * size_of::<crate::error::AttrErrorReport>()
}

fn attrs_heap_bytes(a: &PathAttributes) -> usize {
    let as_path = a.as_path.as_ref().map_or(0, |p| {
        p.segments.capacity() * size_of::<crate::attr::AsSegment>()
            + p.segments
                .iter()
                .map(|s| match s {
                    crate::attr::AsSegment::Set(v)
                    | crate::attr::AsSegment::Sequence(v)
                    | crate::attr::AsSegment::ConfedSequence(v)
                    | crate::attr::AsSegment::ConfedSet(v) => v.capacity() * 4,
                })
                .sum::<usize>()
    });
    as_path
        + a.communities.capacity() * 4
        + a.cluster_list.capacity() * 4
        + a.ext_communities.capacity() * 8
        + a.unknown
            .iter()
            .map(|r| size_of::<crate::attr::RawAttribute>() + r.value.len())
            .sum::<usize>()
}

/// The byte budget of one channel.
#[derive(Debug)]
struct Budget {
    sem: Arc<Semaphore>,
    /// Total permits; an event is charged at most this much so that one
    /// event larger than the whole budget still gets through (alone).
    max: usize,
}

impl Budget {
    fn charge(&self, cost: usize) -> u32 {
        // `max` fits in u32 (checked in `event_channel`).
        u32::try_from(cost.min(self.max)).unwrap_or(u32::MAX)
    }
}

/// The speaker's end of the event channel. Cheap to clone.
pub struct EventSender<N: Nlri> {
    tx: mpsc::Sender<SpeakerEvent<N>>,
    budget: Option<Arc<Budget>>,
}

impl<N: Nlri> Clone for EventSender<N> {
    fn clone(&self) -> Self {
        EventSender {
            tx: self.tx.clone(),
            budget: self.budget.clone(),
        }
    }
}

/// A plain channel: bounded by its count only (tests, tools).
impl<N: Nlri> From<mpsc::Sender<SpeakerEvent<N>>> for EventSender<N> {
    fn from(tx: mpsc::Sender<SpeakerEvent<N>>) -> Self {
        EventSender { tx, budget: None }
    }
}

/// The receiver is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

/// Room for one event of a given cost: a channel slot and its bytes.
pub(super) struct EventPermit<'a, N: Nlri> {
    slot: mpsc::Permit<'a, SpeakerEvent<N>>,
    bytes: Option<OwnedSemaphorePermit>,
}

impl<N: Nlri> EventPermit<'_, N> {
    /// Queue `ev`, whose cost must be the one the permit was taken for.
    pub(super) fn send(self, ev: SpeakerEvent<N>) {
        if let Some(p) = self.bytes {
            // Handed back by the receiver when it takes the event.
            p.forget();
        }
        self.slot.send(ev);
    }
}

impl<N: Nlri> EventSender<N> {
    /// Wait for room for an event of `cost` bytes (see [`event_cost`]):
    /// bytes first, then a slot. Cancel-safe: dropping the future returns
    /// whatever it took.
    pub(super) async fn reserve(&self, cost: usize) -> Result<EventPermit<'_, N>, Closed> {
        let bytes = match &self.budget {
            Some(b) => Some(
                b.sem
                    .clone()
                    .acquire_many_owned(b.charge(cost))
                    .await
                    .map_err(|_| Closed)?,
            ),
            None => None,
        };
        let slot = self.tx.reserve().await.map_err(|_| Closed)?;
        Ok(EventPermit { slot, bytes })
    }

    /// Queue one event, waiting for room.
    pub(super) async fn send(&self, ev: SpeakerEvent<N>) -> Result<(), Closed> {
        let permit = self.reserve(event_cost(&ev)).await?;
        permit.send(ev);
        Ok(())
    }
}

/// The daemon's end of the event channel.
pub struct EventReceiver<N: Nlri> {
    rx: mpsc::Receiver<SpeakerEvent<N>>,
    budget: Arc<Budget>,
}

impl<N: Nlri> EventReceiver<N> {
    /// The next event; `None` when every sender is gone.
    pub async fn recv(&mut self) -> Option<SpeakerEvent<N>> {
        let ev = self.rx.recv().await?;
        self.release(&ev);
        Some(ev)
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Result<SpeakerEvent<N>, mpsc::error::TryRecvError> {
        let ev = self.rx.try_recv()?;
        self.release(&ev);
        Ok(ev)
    }

    /// Bytes charged for the events now queued.
    pub fn queued_bytes(&self) -> usize {
        self.budget
            .max
            .saturating_sub(self.budget.sem.available_permits())
    }

    fn release(&self, ev: &SpeakerEvent<N>) {
        self.budget
            .sem
            .add_permits(self.budget.charge(event_cost(ev)) as usize);
    }
}

/// A channel for [`Speaker::start`](super::Speaker::start) that holds at
/// most `max_events` events and about `max_bytes` bytes of them (one event
/// larger than `max_bytes` is let through alone). `max_bytes` is capped at
/// `u32::MAX`.
pub fn event_channel<N: Nlri>(
    max_events: usize,
    max_bytes: usize,
) -> (EventSender<N>, EventReceiver<N>) {
    let max = max_bytes.clamp(1, u32::MAX as usize);
    let budget = Arc::new(Budget {
        sem: Arc::new(Semaphore::new(max)),
        max,
    });
    let (tx, rx) = mpsc::channel(max_events.max(1));
    (
        EventSender {
            tx,
            budget: Some(budget.clone()),
        },
        EventReceiver { rx, budget },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{MpReach, NextHop, RawNlri};
    use crate::types::AfiSafi;
    use bytes::Bytes;
    use std::net::IpAddr;
    use std::time::Duration;

    fn update(routes: usize) -> SpeakerEvent<RawNlri> {
        let peer: IpAddr = "192.0.2.1".parse().unwrap();
        SpeakerEvent::Update {
            peer,
            update: Update {
                mp_reach: Some(MpReach {
                    afi_safi: AfiSafi::L2VPN_EVPN,
                    next_hop: NextHop::Ip(peer),
                    nlri: vec![RawNlri(Bytes::from_static(b"x")); routes],
                }),
                ..Update::default()
            },
        }
    }

    #[test]
    fn cost_grows_with_routes() {
        let small = event_cost(&update(1));
        let big = event_cost(&update(1001));
        assert_eq!(big - small, 1000 * size_of::<RawNlri>());
    }

    #[tokio::test]
    async fn senders_wait_for_bytes_not_only_slots() {
        let one = event_cost(&update(100));
        // Room for 1,000 events by count, but only two by bytes.
        let (tx, mut rx) = event_channel::<RawNlri>(1000, 2 * one + one / 2);
        tx.send(update(100)).await.unwrap();
        tx.send(update(100)).await.unwrap();
        let third = tokio::time::timeout(Duration::from_millis(100), tx.send(update(100))).await;
        assert!(third.is_err(), "a third event must wait for bytes");
        assert_eq!(rx.queued_bytes(), 2 * one);
        assert!(rx.try_recv().is_ok());
        // The receiver handed the bytes of one event back.
        tokio::time::timeout(Duration::from_secs(5), tx.send(update(100)))
            .await
            .expect("room after a receive")
            .unwrap();
        assert!(rx.recv().await.is_some());
        assert!(rx.recv().await.is_some());
        assert_eq!(rx.queued_bytes(), 0);
    }

    #[tokio::test]
    async fn an_event_larger_than_the_budget_passes_alone() {
        let (tx, mut rx) = event_channel::<RawNlri>(10, 64);
        tx.send(update(1000)).await.unwrap();
        assert_eq!(rx.queued_bytes(), 64);
        let second = tokio::time::timeout(Duration::from_millis(50), tx.send(update(1))).await;
        assert!(second.is_err());
        assert!(rx.recv().await.is_some());
        assert_eq!(rx.queued_bytes(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_reserve_returns_its_bytes() {
        let (tx, rx) = event_channel::<RawNlri>(1, 1000);
        let hold = tx.reserve(10).await.unwrap();
        // Slot taken: this one gets its bytes, then waits for the slot.
        let r = tokio::time::timeout(Duration::from_millis(50), tx.reserve(500)).await;
        assert!(r.is_err());
        drop(hold);
        assert_eq!(rx.queued_bytes(), 0);
    }
}
