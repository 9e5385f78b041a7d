//! [`OnFlush`]: a store that behaves like another in everything but its
//! durability barrier. Benchmarks use it to build fixtures without a sync per
//! commit, tests to make a flush slow, failing or panicking, without each
//! re-implementing the whole [`Store`] trait.

use std::sync::Arc;

use super::{EventVisitor, JobId, Store, StoreError, TimerEntry, Write};

type FlushFn<S> = dyn Fn(&S) -> Result<(), StoreError> + Send + Sync;

/// Delegates every call to `inner`, except [`Store::flush`], which calls the
/// given function (it may call `inner.flush()` itself).
pub struct OnFlush<S> {
    inner: Arc<S>,
    on_flush: Box<FlushFn<S>>,
}

impl<S: Store> OnFlush<S> {
    /// `inner` may be shared (`Arc<S>`), e.g. to flush it for real later.
    pub fn new(
        inner: impl Into<Arc<S>>,
        on_flush: impl Fn(&S) -> Result<(), StoreError> + Send + Sync + 'static,
    ) -> Self {
        OnFlush {
            inner: inner.into(),
            on_flush: Box::new(on_flush),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: Store> Store for OnFlush<S> {
    fn apply(&self, batch: &[Write]) -> Result<(), StoreError> {
        self.inner.apply(batch)
    }
    fn apply_group(&self, batches: &[&[Write]]) -> Vec<Result<(), StoreError>> {
        self.inner.apply_group(batches)
    }
    fn flush(&self) -> Result<(), StoreError> {
        (self.on_flush)(&self.inner)
    }
    fn allocate_job_id(&self) -> Result<JobId, StoreError> {
        self.inner.allocate_job_id()
    }
    fn acquire_leases(&self, job: JobId, vms: &[String]) -> Result<(), StoreError> {
        self.inner.acquire_leases(job, vms)
    }
    fn leases(&self) -> Result<Vec<(String, JobId)>, StoreError> {
        self.inner.leases()
    }
    fn for_each_event(
        &self,
        job: JobId,
        from_seq: u64,
        f: &mut EventVisitor<'_>,
    ) -> Result<(), StoreError> {
        self.inner.for_each_event(job, from_seq, f)
    }
    fn events(&self, job: JobId, from_seq: u64) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.inner.events(job, from_seq)
    }
    fn last_seq(&self, job: JobId) -> Result<Option<u64>, StoreError> {
        self.inner.last_seq(job)
    }
    fn jobs(&self) -> Result<Vec<(JobId, Vec<u8>)>, StoreError> {
        self.inner.jobs()
    }
    fn job_meta(&self, job: JobId) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.job_meta(job)
    }
    fn snapshot(&self, job: JobId) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        self.inner.snapshot(job)
    }
    fn timers(&self) -> Result<Vec<TimerEntry>, StoreError> {
        self.inner.timers()
    }
    fn timers_due(&self, now_ms: u64) -> Result<Vec<TimerEntry>, StoreError> {
        self.inner.timers_due(now_ms)
    }
    fn items(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.inner.items()
    }
    fn item(&self, vm: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.item(vm)
    }
    fn text(&self, hash: &str) -> Result<Option<String>, StoreError> {
        self.inner.text(hash)
    }
    fn blob(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.blob(key)
    }
    fn blobs_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.inner.blobs_with_prefix(prefix)
    }
    fn for_each_record(&self, f: &mut super::RecordVisitor<'_>) -> Result<(), StoreError> {
        self.inner.for_each_record(f)
    }
}
