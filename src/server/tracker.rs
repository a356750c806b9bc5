//! The connections a replica holds: how many in all and per client address, which are idle, and
//! which to close when a new one needs the room.
//!
//! Rules:
//! - A connection is busy from the moment a request reaches the router until its response body
//!   is dropped (a blob download in progress is busy); otherwise it is idle, since it was accepted
//!   or since its last response ended.
//! - When the replica (`server.max_connections`) or the client's address
//!   (`server.max_connections_per_address`) is full, the oldest idle connection (of that address,
//!   when that is what is full) is closed for the new one; a busy one never is. With none idle, the
//!   new connection is refused. So a crowd of connections that never send anything pushes out only
//!   itself, and honest requests in flight are never cut.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

#[derive(Debug)]
struct Conn {
    addr: IpAddr,
    in_flight: usize,
    idle_since: Instant,
    close: CancellationToken,
}

#[derive(Debug, Default)]
struct State {
    next: u64,
    conns: HashMap<u64, Conn>,
    per_addr: HashMap<IpAddr, usize>,
}

/// The registry of open connections.
#[derive(Debug)]
pub struct Tracker {
    state: Mutex<State>,
    max_total: usize,
    /// 0: no cap per address.
    max_per_addr: usize,
}

/// Why a connection was not admitted.
#[derive(Debug, PartialEq)]
pub enum Refused {
    /// Every connection of the replica is busy.
    Full,
    /// Every connection of this client address is busy.
    AddressFull,
}

impl Tracker {
    pub fn new(max_total: usize, max_per_addr: usize) -> Arc<Self> {
        Arc::new(Tracker { state: Mutex::default(), max_total: max_total.max(1), max_per_addr })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes the oldest idle connection (of `addr`, if given); false if none is idle.
    fn evict(state: &mut State, addr: Option<IpAddr>) -> bool {
        let victim = state
            .conns
            .iter()
            .filter(|(_, c)| c.in_flight == 0 && addr.is_none_or(|a| c.addr == a))
            .min_by_key(|(_, c)| c.idle_since)
            .map(|(id, _)| *id);
        let Some(id) = victim else { return false };
        let conn = state.conns.remove(&id).expect("present");
        conn.close.cancel();
        if let Some(n) = state.per_addr.get_mut(&conn.addr) {
            *n -= 1;
            if *n == 0 {
                state.per_addr.remove(&conn.addr);
            }
        }
        true
    }

    /// Makes room for and registers a connection from `addr`.
    pub fn admit(self: &Arc<Self>, addr: IpAddr) -> Result<Admission, Refused> {
        let mut state = self.lock();
        let address_full =
            self.max_per_addr > 0 && state.per_addr.get(&addr).copied().unwrap_or(0) >= self.max_per_addr;
        if address_full && !Self::evict(&mut state, Some(addr)) {
            return Err(Refused::AddressFull);
        }
        if state.conns.len() >= self.max_total && !Self::evict(&mut state, None) {
            return Err(Refused::Full);
        }
        state.next += 1;
        let id = state.next;
        let close = CancellationToken::new();
        state.conns.insert(id, Conn { addr, in_flight: 0, idle_since: Instant::now(), close: close.clone() });
        *state.per_addr.entry(addr).or_default() += 1;
        Ok(Admission { id, tracker: self.clone(), close, served: Arc::new(AtomicBool::new(false)) })
    }

    /// Closes the oldest idle connection anywhere (the process ran out of descriptors).
    pub fn evict_oldest_idle(&self) -> bool {
        Self::evict(&mut self.lock(), None)
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.lock().conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Asks every connection to close (on shutdown): idle ones at once, busy ones after their response.
    pub fn close_all(&self) {
        for c in self.lock().conns.values() {
            c.close.cancel();
        }
    }
}

/// A connection's place in the [`Tracker`]; [`Admission::release`] frees it when the connection ends.
#[derive(Debug, Clone)]
pub struct Admission {
    id: u64,
    tracker: Arc<Tracker>,
    close: CancellationToken,
    served: Arc<AtomicBool>,
}

impl Admission {
    /// A request reached the router.
    pub fn started(&self) {
        self.served.store(true, Ordering::Relaxed);
        if let Some(c) = self.tracker.lock().conns.get_mut(&self.id) {
            c.in_flight += 1;
        }
    }

    /// A response body was dropped (sent, or abandoned).
    pub fn finished(&self) {
        if let Some(c) = self.tracker.lock().conns.get_mut(&self.id) {
            c.in_flight = c.in_flight.saturating_sub(1);
            if c.in_flight == 0 {
                c.idle_since = Instant::now();
            }
        }
    }

    /// Whether any request has reached the router on this connection.
    pub fn served_any(&self) -> bool {
        self.served.load(Ordering::Relaxed)
    }

    /// How long the connection has been idle; `None` while a request is in flight.
    pub fn idle_for(&self) -> Option<Duration> {
        let state = self.tracker.lock();
        let c = state.conns.get(&self.id)?;
        (c.in_flight == 0).then(|| c.idle_since.elapsed())
    }

    /// Resolves when the tracker wants this connection closed (evicted, or shutting down).
    pub fn closing(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.close.cancelled()
    }

    /// Frees the place now (the connection ended).
    pub fn release(&self) {
        let mut state = self.tracker.lock();
        if let Some(conn) = state.conns.remove(&self.id) {
            if let Some(n) = state.per_addr.get_mut(&conn.addr) {
                *n -= 1;
                if *n == 0 {
                    state.per_addr.remove(&conn.addr);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn the_oldest_idle_connection_makes_room_and_busy_ones_stay() {
        let t = Tracker::new(3, 2);
        let a1 = t.admit(ip(1)).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        let a2 = t.admit(ip(1)).unwrap();
        // The address is full: its oldest idle one (a1) goes.
        let a3 = t.admit(ip(1)).unwrap();
        assert!(a1.close.is_cancelled() && !a2.close.is_cancelled());
        // Busy connections are never closed: with both busy, the address is refused.
        a2.started();
        a3.started();
        assert_eq!(t.admit(ip(1)).unwrap_err(), Refused::AddressFull);
        // The replica is full (a2, a3, b1); the oldest idle anywhere goes, else refused.
        let b1 = t.admit(ip(2)).unwrap();
        let b2 = t.admit(ip(3)).unwrap();
        assert!(b1.close.is_cancelled(), "the only idle connection made room");
        b2.started();
        assert_eq!(t.admit(ip(4)).unwrap_err(), Refused::Full);
        a2.finished();
        assert!(a2.idle_for().is_some() && a3.idle_for().is_none());
        assert!(t.admit(ip(4)).is_ok());
        assert!(a2.close.is_cancelled());
        for a in [&a2, &a3, &b2] {
            a.release();
        }
        assert_eq!(t.len(), 1);
    }
}
