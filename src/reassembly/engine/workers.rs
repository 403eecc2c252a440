//! The read-ahead threads of a reader, and keeping them off the first CPU.
//!
//! Workers run whatever job they are given and know nothing of blocks; a job's errors are its
//! own. Idle threads block on the queue: a spinning pool (rayon's) would take CPU from the
//! readers it is meant to help, on a machine with few cores. The threads end when the reader
//! (the queue's sender) is dropped.

use std::sync::{mpsc, Arc, Mutex};

/// A unit of read-ahead work.
pub(super) type Job = Box<dyn FnOnce() + Send>;

/// Read-ahead threads fed from one queue.
pub(super) struct Workers {
    queue: mpsc::Sender<Job>,
    threads: usize,
}

impl Workers {
    /// Starts `threads` workers, off the first CPU if `spare_a_cpu`; `None` if a thread
    /// cannot be started.
    pub(super) fn start(threads: usize, spare_a_cpu: bool) -> Option<Workers> {
        let (queue, jobs) = mpsc::channel::<Job>();
        let jobs = Arc::new(Mutex::new(jobs));
        for i in 0..threads {
            let jobs = jobs.clone();
            let worker = move || {
                if spare_a_cpu {
                    leave_first_cpu();
                }
                loop {
                    let next = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    match next {
                        Ok(job) => job(),
                        Err(_) => return, // the reader is gone
                    }
                }
            };
            std::thread::Builder::new()
                .name(format!("synvault-ra-{i}"))
                .spawn(worker)
                .ok()?;
        }
        Some(Workers { queue, threads })
    }

    /// How many threads run jobs.
    pub(super) fn threads(&self) -> usize {
        self.threads
    }

    /// Queues `job` for the next idle worker.
    pub(super) fn spawn(&self, job: Job) {
        // Fails only once every worker has exited, which happens only after the reader is
        // dropped; then nobody waits for read-ahead.
        let _ = self.queue.send(job);
    }
}

/// Takes the calling thread off the first CPU it may run on, if it may run on others
/// (best effort: an affinity the system refuses leaves the thread where it was).
fn leave_first_cpu() {
    let Ok(mut cpus) = rustix::thread::sched_getaffinity(None) else {
        return;
    };
    if cpus.count() < 2 {
        return;
    }
    if let Some(first) = (0..rustix::thread::CpuSet::MAX_CPU).find(|&c| cpus.is_set(c)) {
        cpus.unset(first);
        let _ = rustix::thread::sched_setaffinity(None, &cpus);
    }
}
