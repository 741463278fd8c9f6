//! A one-shot, shard-local event: tasks wait until it fires (used for "drain started"). Not for
//! the request path: waiting registers a waker in a `Vec`.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
pub struct LocalEvent {
    fired: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl LocalEvent {
    pub fn fire(&self) {
        self.fired.set(true);
        // The woken tasks become runnable without a ring completion: tell the I/O driver.
        crate::io::note_local_wake();
        for waker in self.waiters.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    pub fn has_fired(&self) -> bool {
        self.fired.get()
    }

    /// Resolves once [`LocalEvent::fire`] was called.
    pub fn wait(&self) -> Wait<'_> {
        Wait { event: self }
    }
}

pub struct Wait<'a> {
    event: &'a LocalEvent,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.event.fired.get() {
            return Poll::Ready(());
        }
        let mut waiters = self.event.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
