//! Server selection: priority (first live server in list order) or round robin (live servers in
//! turn). The caller walks the candidates lazily, so a connect failure moves the same request on
//! to the next live server.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::ArcSwap;

use crate::model::{Scheduling, ServiceModel};

/// Round-robin positions per service name (kept across reloads; one atomic add per request).
#[derive(Default)]
pub struct RoundRobin {
    map: ArcSwap<HashMap<String, Arc<AtomicUsize>>>,
    write: parking_lot::Mutex<()>,
}

impl RoundRobin {
    fn next(&self, service: &str) -> usize {
        if let Some(c) = self.map.load().get(service) {
            return c.fetch_add(1, Ordering::Relaxed);
        }
        let _g = self.write.lock();
        let cur = self.map.load_full();
        let c = match cur.get(service) {
            Some(c) => c.clone(),
            None => {
                let mut next = (*cur).clone();
                let c = Arc::new(AtomicUsize::new(0));
                next.insert(service.to_string(), c.clone());
                self.map.store(Arc::new(next));
                c
            }
        };
        c.fetch_add(1, Ordering::Relaxed)
    }

    /// Server indexes of `svc` in the order to try them. Liveness is checked by the caller while
    /// walking, so a server that dies mid-request is skipped.
    pub fn order(&self, svc: &ServiceModel, scheduling: Scheduling) -> Order {
        let n = svc.servers.len();
        let start = match scheduling {
            Scheduling::Priority => 0,
            Scheduling::RoundRobin if n > 1 => self.next(&svc.name) % n,
            Scheduling::RoundRobin => 0,
        };
        Order { start, n, i: 0 }
    }
}

/// Indexes `start, start+1, ...` modulo `n`, each once.
#[derive(Debug, Clone)]
pub struct Order {
    start: usize,
    n: usize,
    i: usize,
}

impl Iterator for Order {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.i >= self.n {
            return None;
        }
        let v = (self.start + self.i) % self.n;
        self.i += 1;
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ServerAddr;

    #[test]
    fn orders() {
        let svc = ServiceModel {
            name: "default".into(),
            servers: (1..=3)
                .map(|p| ServerAddr {
                    host: "h".into(),
                    port: p,
                })
                .collect(),
        };
        let rr = RoundRobin::default();
        assert_eq!(
            rr.order(&svc, Scheduling::Priority).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert_eq!(
            rr.order(&svc, Scheduling::RoundRobin).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert_eq!(
            rr.order(&svc, Scheduling::RoundRobin).collect::<Vec<_>>(),
            [1, 2, 0]
        );
        assert_eq!(
            rr.order(&svc, Scheduling::RoundRobin).collect::<Vec<_>>(),
            [2, 0, 1]
        );
    }
}
