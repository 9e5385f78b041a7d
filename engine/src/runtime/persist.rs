//! Persistence of a stateful (simulated) fabric's world in the engine's
//! store, atomically with the events it explains.
//!
//! Every event the engine records carries, in its own store batch, the
//! fabric's delta since the previous one (`fabric/delta/<20-digit seq>`).
//! The delta is taken while the batch is queued, under the journal's
//! extra-write order lock, so the store applies deltas in the order they
//! were taken: after a crash, a durable delta always has every earlier one.
//! Hence an operation whose outcome is durable has its world change durable
//! too; a world change durable without its outcome is fine, since the
//! re-issued operation (same key) is answered from the fabric's key record.
//!
//! Once more than `compact_after` deltas are stored, the batch also carries
//! the whole world (`fabric/full`) and deletes the deltas it covers.

use std::sync::{Arc, Mutex};

use crate::fabric::FabricState;
use crate::journal::JournalError;
use crate::store::{Store, StoreError, Write};

use super::lock;

/// The key of the whole saved world.
pub const FULL_KEY: &str = "fabric/full";
/// The prefix of the deltas' keys (then a 20-digit, zero-padded sequence
/// number, so that key order is the order they were taken).
pub const DELTA_PREFIX: &str = "fabric/delta/";
/// Deltas kept before they are folded into a full snapshot, by default.
pub const DEFAULT_COMPACT_AFTER: u64 = 256;

/// What [`super::Engine::start_persisting`] needs to persist a fabric's
/// world.
#[derive(Clone)]
pub struct FabricPersistence {
    /// The fabric's state hook (for the simulated fabric: the same
    /// `Arc<SimFabric>` as [`super::EngineConfig::fabric`], freshly built
    /// from the inventory: its world is replaced by the saved one).
    pub state: Arc<dyn FabricState>,
    /// Deltas kept before a full snapshot replaces them (at least 1).
    pub compact_after: u64,
}

impl FabricPersistence {
    /// Persistence of `state`, compacting after
    /// [`DEFAULT_COMPACT_AFTER`] deltas.
    pub fn new(state: Arc<dyn FabricState>) -> FabricPersistence {
        FabricPersistence {
            state,
            compact_after: DEFAULT_COMPACT_AFTER,
        }
    }
}

impl std::fmt::Debug for FabricPersistence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FabricPersistence")
            .field("compact_after", &self.compact_after)
            .finish_non_exhaustive()
    }
}

/// The store key of delta `seq`.
pub fn delta_key(seq: u64) -> String {
    format!("{DELTA_PREFIX}{seq:020}")
}

fn delta_seq(key: &str) -> Result<u64, StoreError> {
    key.strip_prefix(DELTA_PREFIX)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| StoreError::corrupt(format!("fabric delta key `{key}`"), "no sequence"))
}

/// The live persister of an engine.
pub(super) struct Persister {
    state: Arc<dyn FabricState>,
    compact_after: u64,
    /// Stored deltas are `first..next`.
    seqs: Mutex<(u64, u64)>,
}

impl Persister {
    /// Restores the fabric's world from the store (full + deltas in key
    /// order) and returns the persister that continues the sequence.
    pub(super) fn restore(
        p: FabricPersistence,
        store: &dyn Store,
    ) -> Result<Persister, super::EngineError> {
        let full = store.blob(FULL_KEY).map_err(JournalError::from)?;
        let deltas = store
            .blobs_with_prefix(DELTA_PREFIX)
            .map_err(JournalError::from)?;
        let mut seqs = Vec::with_capacity(deltas.len());
        for (key, _) in &deltas {
            seqs.push(delta_seq(key).map_err(JournalError::from)?);
        }
        let mut first = seqs.first().copied().unwrap_or(0);
        let next = seqs.last().map_or(0, |s| s + 1);
        let had_full = full.is_some();
        p.state
            .restore_from(full, deltas.into_iter().map(|(_, d)| d).collect())?;
        // Whatever the fabric tracked as changed before the restore belongs
        // to the world just replaced.
        let _ = p.state.take_delta();
        if !had_full {
            // Without a full snapshot the deltas were applied to the world
            // the fabric was built with, which the store does not hold: the
            // CLI builds it from its `sim-state.json`, which a killed
            // process may have saved AHEAD of the store (a test VM deleted
            // in memory, its outcome and delta never durable). Deltas carry
            // only what changes from now on, so that base would never reach
            // the store: a repeated delete answered from its key record
            // changes no VM, and the store's world would keep test VMs the
            // job reports cleaned up. Record the base now, durably, before
            // any job resumes: from here on the store alone describes the
            // world (and a full snapshot, once there, replaces the base).
            let mut batch = vec![Write::Blob {
                key: FULL_KEY.to_string(),
                payload: Some(p.state.full()),
            }];
            batch.extend((first..next).map(|s| Write::Blob {
                key: delta_key(s),
                payload: None,
            }));
            store
                .apply(&batch)
                .and_then(|()| store.flush())
                .map_err(JournalError::from)?;
            first = next;
        }
        tracing::info!(deltas = next - first, "restored the fabric's world");
        Ok(Persister {
            state: p.state,
            compact_after: p.compact_after.max(1),
            seqs: Mutex::new((first, next)),
        })
    }

    /// The writes that persist what changed since the last call (called by
    /// the journal under its extra-write order lock).
    pub(super) fn writes(&self) -> Result<Vec<Write>, JournalError> {
        let mut seqs = lock(&self.seqs);
        let (first, next) = &mut *seqs;
        let mut out = Vec::new();
        if let Some(delta) = self.state.take_delta() {
            out.push(Write::Blob {
                key: delta_key(*next),
                payload: Some(delta),
            });
            *next += 1;
        }
        if *next - *first > self.compact_after {
            // The full state is at least as new as every delta taken (it is
            // read after them), so it replaces them all.
            out.push(Write::Blob {
                key: FULL_KEY.to_string(),
                payload: Some(self.state.full()),
            });
            out.extend((*first..*next).map(|s| Write::Blob {
                key: delta_key(s),
                payload: None,
            }));
            *first = *next;
        }
        Ok(out)
    }

    /// Forgets a finished job's key records (see `SimFabric::forget_keys`).
    pub(super) fn forget_job(&self, job: crate::store::JobId) -> usize {
        self.state.forget_keys(&format!("{job}/"))
    }
}
