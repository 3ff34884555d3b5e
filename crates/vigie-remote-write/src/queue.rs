//! The batches waiting for an endpoint, bounded in bytes: while the
//! endpoint is down, a new batch pushes the oldest out (they are counted
//! as dropped), so that an hour without it never grows the daemon.

use std::collections::VecDeque;

/// One collection, encoded and compressed: the body of one request.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Its place in the order of batches, to remove it once sent.
    pub id: u64,
    /// The snappy-compressed `WriteRequest`.
    pub body: Vec<u8>,
    pub samples: usize,
}

/// Batches in the order they were collected, at most `limit` bytes
/// (always at least the newest one).
#[derive(Debug)]
pub struct Queue {
    batches: VecDeque<(u64, Vec<u8>, usize)>,
    bytes: usize,
    limit: usize,
    next: u64,
}

impl Queue {
    pub fn new(limit: usize) -> Self {
        Self {
            batches: VecDeque::new(),
            bytes: 0,
            limit,
            next: 0,
        }
    }

    /// Add a batch of `samples` samples; returns the samples of the
    /// oldest batches dropped to make room.
    pub fn push(&mut self, body: Vec<u8>, samples: usize) -> usize {
        self.bytes += body.len();
        self.batches.push_back((self.next, body, samples));
        self.next += 1;
        let mut dropped = 0;
        while self.bytes > self.limit && self.batches.len() > 1 {
            if let Some((_, body, n)) = self.batches.pop_front() {
                self.bytes -= body.len();
                dropped += n;
            }
        }
        dropped
    }

    /// The oldest batch, left in the queue until [`Queue::remove`].
    pub fn front(&self) -> Option<Batch> {
        self.batches.front().map(|(id, body, samples)| Batch {
            id: *id,
            body: body.clone(),
            samples: *samples,
        })
    }

    /// Forget batch `id` (sent, or refused), if it is still there.
    pub fn remove(&mut self, id: u64) {
        if let Some(i) = self.batches.iter().position(|(b, _, _)| *b == id)
            && let Some((_, body, _)) = self.batches.remove(i)
        {
            self.bytes -= body.len();
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.batches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_go_first_and_the_bound_holds() {
        let mut q = Queue::new(250);
        assert_eq!(q.push(vec![0; 100], 1), 0);
        assert_eq!(q.push(vec![0; 100], 2), 0);
        // 300 bytes: the first batch (1 sample) goes.
        assert_eq!(q.push(vec![0; 100], 3), 1);
        assert_eq!((q.len(), q.bytes()), (2, 200));
        assert_eq!(q.front().map(|b| (b.id, b.samples)), Some((1, 2)));
        // A batch larger than the bound alone is kept (the newest always is).
        assert_eq!(q.push(vec![0; 400], 4), 5);
        assert_eq!((q.len(), q.bytes()), (1, 400));
        let id = q.front().map(|b| b.id);
        assert_eq!(id, Some(3));
        q.remove(3);
        q.remove(3);
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
    }

    /// A day of pushes while nothing is sent stays within the bound.
    #[test]
    fn an_endpoint_down_for_long_never_grows_it() {
        let mut q = Queue::new(16 << 20);
        let mut dropped = 0;
        for _ in 0..5760 {
            dropped += q.push(vec![0; 30_000], 1000);
        }
        assert!(q.bytes() <= 16 << 20);
        assert_eq!(dropped + q.len() * 1000, 5760 * 1000);
    }
}
