//! Read buffers on loan. A connection takes one when bytes arrive and drops it (back to this
//! thread's free list) before it waits again, so waiting connections hold no buffer. The free
//! list is per thread (no lock) and bounded.

use std::cell::RefCell;

/// Size of a pooled buffer: a request or response head plus a typical ActiveSync body in one read.
pub const BUF_SIZE: usize = 16 * 1024;

/// Buffers kept per thread; more are freed.
const MAX_FREE: usize = 64;

thread_local! {
    static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer on loan; dropping it returns it (if it kept its pooled size).
pub struct Loan(Vec<u8>);

impl Loan {
    /// An empty buffer of at least [`BUF_SIZE`] capacity.
    pub fn take() -> Self {
        let v = FREE
            .with(|f| f.borrow_mut().pop())
            .unwrap_or_else(|| Vec::with_capacity(BUF_SIZE));
        Loan(v)
    }

    pub fn vec(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Makes room for at least `min` more bytes, never growing past `max` in total; false when
    /// the buffer is already `max` long.
    pub fn room(&mut self, min: usize, max: usize) -> bool {
        let v = &mut self.0;
        if v.len() >= max {
            return false;
        }
        if v.capacity() - v.len() < min {
            let want = (v.len() + min).max(v.capacity() * 2).min(max);
            v.reserve_exact(want.saturating_sub(v.len()));
        }
        true
    }

    /// The first `n` bytes as `Bytes` without copying them: the buffer goes back to the free
    /// list when the last `Bytes` pointing into it is dropped. For a response body that is
    /// written and dropped at once: holding it for long would keep a whole buffer.
    pub fn into_bytes(self, n: usize) -> bytes::Bytes {
        let n = n.min(self.0.len());
        bytes::Bytes::from_owner(self).slice(..n)
    }

    /// Drops the first `n` bytes (consumed), keeping the rest at the front.
    pub fn consume(&mut self, n: usize) {
        if n >= self.0.len() {
            self.0.clear();
        } else {
            self.0.drain(..n);
        }
    }
}

impl AsRef<[u8]> for Loan {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Loan {
    fn drop(&mut self) {
        if self.0.capacity() != BUF_SIZE {
            return;
        }
        let mut v = std::mem::take(&mut self.0);
        v.clear();
        let _ = FREE.try_with(|f| {
            let mut f = f.borrow_mut();
            if f.len() < MAX_FREE {
                f.push(v);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loans_are_reused_and_bounded() {
        let mut a = Loan::take();
        a.vec().extend_from_slice(b"abc");
        let p = a.bytes().as_ptr();
        drop(a);
        let b = Loan::take();
        assert!(b.is_empty(), "a returned buffer comes back empty");
        assert_eq!(b.bytes().as_ptr(), p, "the same allocation is lent again");
        let mut c = Loan::take();
        assert!(c.room(100, 20_000));
        c.vec().resize(20_000, 0);
        assert!(!c.room(1, 20_000), "never past max");
        drop(c); // grown: freed, not pooled
        let many: Vec<Loan> = (0..100).map(|_| Loan::take()).collect();
        drop(many);
        assert!(FREE.with(|f| f.borrow().len()) <= MAX_FREE);
    }

    #[test]
    fn bytes_of_a_loan_share_its_buffer_and_return_it_when_dropped() {
        let mut a = Loan::take();
        a.vec().extend_from_slice(b"bodyextra");
        let p = a.bytes().as_ptr();
        let body = a.into_bytes(4);
        assert_eq!(&body[..], b"body");
        assert_eq!(body.as_ptr(), p, "no copy");
        let clone = body.clone();
        drop(body);
        assert_ne!(
            Loan::take().bytes().as_ptr(),
            p,
            "still lent while a clone lives"
        );
        drop(clone);
        assert_eq!(Loan::take().bytes().as_ptr(), p, "back on the free list");
    }

    #[test]
    fn consume_keeps_the_tail() {
        let mut a = Loan::take();
        a.vec().extend_from_slice(b"headbody");
        a.consume(4);
        assert_eq!(a.bytes(), b"body");
        a.consume(10);
        assert!(a.is_empty());
    }
}
