//! Group commit: many writers, one write + fdatasync per group.
//!
//! A writer queues its item and then either waits or, if no commit is in
//! progress, becomes the leader: it takes everything queued so far, commits
//! it with one call (one write and one fdatasync for the whole group), then
//! wakes every waiter. Items queued while a leader works form the next
//! group, so the fsync cost is shared by all writers that arrive during it.
//!
//! A std mutex is right here: the critical sections only move vectors and
//! flags; the slow I/O happens with the lock released.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use crate::error::Error;

struct State<T> {
    queue: Vec<T>,
    /// Generation the current queue will be committed as.
    queue_gen: u64,
    /// Every generation up to this one is finished.
    done_gen: u64,
    /// A leader (or an exclusive section) is running.
    busy: bool,
    /// Failed generations: the error and how many waiters still need it.
    failures: HashMap<u64, (Error, usize)>,
}

pub(crate) struct CommitQueue<T> {
    state: Mutex<State<T>>,
    cond: Condvar,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T> CommitQueue<T> {
    pub(crate) fn new() -> CommitQueue<T> {
        CommitQueue {
            state: Mutex::new(State {
                queue: Vec::new(),
                queue_gen: 1,
                done_gen: 0,
                busy: false,
                failures: HashMap::new(),
            }),
            cond: Condvar::new(),
        }
    }

    /// Queues `item` and returns once the group holding it was committed by
    /// `commit` (run here or in another writer's thread), with that group's
    /// result.
    pub(crate) fn submit(
        &self,
        item: T,
        commit: &dyn Fn(Vec<T>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut st = lock(&self.state);
        st.queue.push(item);
        let my_gen = st.queue_gen;
        loop {
            if st.done_gen >= my_gen {
                return take_result(&mut st, my_gen);
            }
            if !st.busy {
                let group = std::mem::take(&mut st.queue);
                let gen = st.queue_gen;
                st.queue_gen += 1;
                st.busy = true;
                drop(st);
                let mut guard = Finish {
                    q: self,
                    gen,
                    n: group.len(),
                    result: None,
                };
                guard.result = Some(commit(group));
                drop(guard);
                st = lock(&self.state);
                continue;
            }
            st = self.cond.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Runs `f` while no group is being committed and none can start.
    /// Queued items wait and are committed afterwards.
    pub(crate) fn exclusive<R>(&self, f: impl FnOnce() -> R) -> R {
        let mut st = lock(&self.state);
        while st.busy {
            st = self.cond.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
        st.busy = true;
        drop(st);
        let _release = Release(self);
        f()
    }
}

fn take_result<T>(st: &mut State<T>, gen: u64) -> Result<(), Error> {
    let Some((err, left)) = st.failures.get_mut(&gen) else {
        return Ok(());
    };
    *left -= 1;
    let out = err.duplicate();
    if *left == 0 {
        st.failures.remove(&gen);
    }
    Err(out)
}

/// Marks a leader's generation finished even if `commit` panicked.
struct Finish<'a, T> {
    q: &'a CommitQueue<T>,
    gen: u64,
    n: usize,
    result: Option<Result<(), Error>>,
}

impl<T> Drop for Finish<'_, T> {
    fn drop(&mut self) {
        let mut st = lock(&self.q.state);
        let res = self
            .result
            .take()
            .unwrap_or_else(|| Err(Error::Poisoned("a WAL commit panicked".into())));
        if let Err(e) = res {
            st.failures.insert(self.gen, (e, self.n));
        }
        st.done_gen = self.gen;
        st.busy = false;
        drop(st);
        self.q.cond.notify_all();
    }
}

struct Release<'a, T>(&'a CommitQueue<T>);

impl<T> Drop for Release<'_, T> {
    fn drop(&mut self) {
        lock(&self.0.state).busy = false;
        self.0.cond.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn groups_share_commits_and_errors_reach_every_member() {
        let q = Arc::new(CommitQueue::<u32>::new());
        let commits = Arc::new(AtomicUsize::new(0));
        let committed = Arc::new(Mutex::new(Vec::new()));
        let mut handles = Vec::new();
        for t in 0..8u32 {
            let (q, commits, committed) = (q.clone(), commits.clone(), committed.clone());
            handles.push(std::thread::spawn(move || {
                for i in 0..50u32 {
                    let item = t * 1000 + i;
                    let r = q.submit(item, &|group: Vec<u32>| {
                        commits.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_micros(200));
                        if group.contains(&7013) {
                            return Err(Error::DiskFull {
                                context: "test".into(),
                            });
                        }
                        lock(&committed).extend(group);
                        Ok(())
                    });
                    assert_eq!(r.is_err(), !lock(&committed).contains(&item));
                }
            }));
        }
        for h in handles {
            h.join().unwrap();
        }
        let c = lock(&committed).clone();
        let mut unique = c.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), c.len(), "no item committed twice");
        assert!(c.len() >= 390, "only the failed group is missing");
        assert!(
            commits.load(Ordering::SeqCst) < 400,
            "group commit should batch"
        );
        assert!(!lock(&committed).contains(&7013));
    }
}
