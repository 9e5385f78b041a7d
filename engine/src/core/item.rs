//! The replicated-item (protected VM) lifecycle, one machine per VM.
//!
//! ```text
//! Unprotected ─EnableStarted→ EnablingProtection ─EnableSucceeded→ Protected{Forward}
//! Protected{d} ─TestFailoverStarted→ TestFailoverInProgress ─TestFailoverFinished→
//!     TestAwaitingCleanup ─TestCleanedUp→ Protected{d}
//! Protected{d} ─FailoverStarted→ FailoverInProgress{d} ─FailoverSucceeded→ FailedOver{d, rp}
//!     FailoverInProgress{d} ─FailoverFailed→ FailoverFailed{d} (retry: FailoverStarted;
//!     or RolledBack → Protected{d})
//! FailedOver ─RecoveryPointChanged→ FailedOver ─Committed→ Committed{d}
//!     FailedOver ─RolledBack→ Protected{d}
//! Committed{d} ─ReverseReplicationStarted→ ReverseReplicating{d}
//!     ─ReverseReplicationSucceeded→ Protected{d reversed}
//! Protected ─ProtectionDisabled→ Unprotected
//! Protected ─RolledBack→ Protected (a cancelled failover may have shut its primary down)
//! any in-progress state ─Aborted→ the stable state it came from
//! ```
//!
//! A failback is a planned failover with direction Reverse from
//! `Protected{Reverse}`; the same path then leads back to `Protected{Forward}`.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::plan::compile::{Operation, RecoveryPoint};
use crate::plan::model::{Direction, FailoverKind};

/// Where a protected VM is in its lifecycle. `direction` is the way
/// replication runs (Forward: primary → secondary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ItemState {
    Unprotected,
    EnablingProtection,
    Protected {
        direction: Direction,
    },
    TestFailoverInProgress {
        direction: Direction,
    },
    /// Test VMs may exist: a cleanup must run before anything else.
    TestAwaitingCleanup {
        direction: Direction,
    },
    FailoverInProgress {
        direction: Direction,
    },
    FailoverFailed {
        direction: Direction,
    },
    /// Failed over, commit pending: other recovery points are still kept.
    FailedOver {
        direction: Direction,
        recovery_point: RecoveryPoint,
    },
    Committed {
        direction: Direction,
    },
    ReverseReplicating {
        direction: Direction,
    },
}

impl ItemState {
    pub fn name(&self) -> &'static str {
        match self {
            ItemState::Unprotected => "unprotected",
            ItemState::EnablingProtection => "enabling protection",
            ItemState::Protected { .. } => "protected",
            ItemState::TestFailoverInProgress { .. } => "test failover in progress",
            ItemState::TestAwaitingCleanup { .. } => "test failover awaiting cleanup",
            ItemState::FailoverInProgress { .. } => "failover in progress",
            ItemState::FailoverFailed { .. } => "failover failed",
            ItemState::FailedOver { .. } => "failed over (commit pending)",
            ItemState::Committed { .. } => "committed",
            ItemState::ReverseReplicating { .. } => "reverse replicating",
        }
    }
}

impl fmt::Display for ItemState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ItemState::Unprotected | ItemState::EnablingProtection => f.write_str(self.name()),
            ItemState::Protected { direction }
            | ItemState::TestFailoverInProgress { direction }
            | ItemState::TestAwaitingCleanup { direction }
            | ItemState::FailoverInProgress { direction }
            | ItemState::FailoverFailed { direction }
            | ItemState::FailedOver { direction, .. }
            | ItemState::Committed { direction }
            | ItemState::ReverseReplicating { direction } => {
                write!(f, "{} ({direction})", self.name())
            }
        }
    }
}

/// What happens to a replicated item. Jobs emit these as
/// [`super::Effect::Item`]; they are persisted in item records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ItemEvent {
    EnableStarted,
    EnableSucceeded,
    ProtectionDisabled,
    TestFailoverStarted,
    /// The test part of the job is over (test VMs may exist).
    TestFailoverFinished,
    TestCleanedUp,
    FailoverStarted,
    FailoverSucceeded {
        recovery_point: RecoveryPoint,
    },
    FailoverFailed,
    RecoveryPointChanged {
        recovery_point: RecoveryPoint,
    },
    Committed,
    ReverseReplicationStarted,
    ReverseReplicationSucceeded,
    RolledBack,
    /// An in-progress operation was cancelled or failed without effect: back
    /// to the stable state it started from.
    Aborted,
}

/// An item event that does not apply to the item's state.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("a replicated item that is {state} cannot take `{event:?}`")]
pub struct IllegalItemTransition {
    pub state: ItemState,
    pub event: ItemEvent,
}

/// A VM that is not in a state the operation needs.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("VM `{vm}` is {state}; {operation} needs it to be {needs}")]
pub struct NotReady {
    pub vm: String,
    pub state: ItemState,
    pub operation: Operation,
    /// What the operation needs, in words.
    pub needs: &'static str,
}

fn flip(d: Direction) -> Direction {
    match d {
        Direction::Forward => Direction::Reverse,
        Direction::Reverse => Direction::Forward,
    }
}

/// The item machine: the next state, or why the event does not apply.
pub fn transition(
    state: &ItemState,
    event: &ItemEvent,
) -> Result<ItemState, IllegalItemTransition> {
    use ItemEvent as E;
    use ItemState as S;
    let next = match (*state, *event) {
        (S::Unprotected, E::EnableStarted) => Some(S::EnablingProtection),
        (S::EnablingProtection, E::EnableSucceeded) => Some(S::Protected {
            direction: Direction::Forward,
        }),
        (S::EnablingProtection, E::Aborted) => Some(S::Unprotected),
        (S::Protected { .. }, E::ProtectionDisabled) => Some(S::Unprotected),

        (S::Protected { direction }, E::TestFailoverStarted) => {
            Some(S::TestFailoverInProgress { direction })
        }
        (S::TestFailoverInProgress { direction }, E::TestFailoverFinished) => {
            Some(S::TestAwaitingCleanup { direction })
        }
        (S::TestFailoverInProgress { direction }, E::Aborted) => Some(S::Protected { direction }),
        (S::TestAwaitingCleanup { direction }, E::TestCleanedUp) => {
            Some(S::Protected { direction })
        }

        (S::Protected { direction } | S::FailoverFailed { direction }, E::FailoverStarted) => {
            Some(S::FailoverInProgress { direction })
        }
        (S::FailoverInProgress { direction }, E::FailoverSucceeded { recovery_point }) => {
            Some(S::FailedOver {
                direction,
                recovery_point,
            })
        }
        (S::FailoverInProgress { direction }, E::FailoverFailed) => {
            Some(S::FailoverFailed { direction })
        }
        (S::FailoverInProgress { direction }, E::Aborted) => Some(S::Protected { direction }),
        (S::FailedOver { direction, .. }, E::RecoveryPointChanged { recovery_point }) => {
            Some(S::FailedOver {
                direction,
                recovery_point,
            })
        }
        (S::FailedOver { direction, .. }, E::Committed) => Some(S::Committed { direction }),
        (
            S::FailedOver { direction, .. }
            | S::FailoverFailed { direction }
            | S::Protected { direction },
            E::RolledBack,
        ) => Some(S::Protected { direction }),

        (S::Committed { direction }, E::ReverseReplicationStarted) => {
            Some(S::ReverseReplicating { direction })
        }
        (S::ReverseReplicating { direction }, E::ReverseReplicationSucceeded) => {
            Some(S::Protected {
                direction: flip(direction),
            })
        }
        (S::ReverseReplicating { direction }, E::Aborted) => Some(S::Committed { direction }),
        _ => None,
    };
    next.ok_or(IllegalItemTransition {
        state: *state,
        event: *event,
    })
}

/// Whether `vm` in `state` may take part in a job running `operation`
/// (checked at submit, for every VM of the plan).
pub fn check_operation(vm: &str, state: &ItemState, operation: &Operation) -> Result<(), NotReady> {
    use ItemState as S;
    let (ok, needs) = match *operation {
        Operation::Failover {
            kind: FailoverKind::Test,
            direction,
            ..
        } => (
            *state == S::Protected { direction },
            "protected (replicating in the failover's direction)",
        ),
        Operation::Failover { direction, .. } => (
            matches!(*state, S::Protected { direction: d } | S::FailoverFailed { direction: d } if d == direction),
            "protected in the failover's direction (or after a failed failover, to retry it)",
        ),
        Operation::TestCleanup => (
            matches!(
                state,
                S::TestAwaitingCleanup { .. } | S::TestFailoverInProgress { .. }
            ),
            "in a test failover",
        ),
        Operation::Commit | Operation::ChangeRecoveryPoint { .. } => (
            matches!(state, S::FailedOver { .. }),
            "failed over and not yet committed",
        ),
        Operation::ReverseReplicate => (matches!(state, S::Committed { .. }), "committed"),
        // A VM still protected takes part too: a cancelled planned
        // failover may have shut its primary down, and the rollback starts
        // it again (the fabric reports "nothing to roll back" otherwise).
        Operation::Rollback => (
            matches!(
                state,
                S::FailedOver { .. } | S::FailoverFailed { .. } | S::Protected { .. }
            ),
            "failed over (not committed), after a failed failover, or still protected",
        ),
        Operation::EnableProtection => (*state == S::Unprotected, "unprotected"),
        Operation::DisableProtection { .. } => (
            matches!(state, S::Protected { .. }),
            "protected, with no failover or test failover in progress",
        ),
    };
    if ok {
        Ok(())
    } else {
        Err(NotReady {
            vm: vm.to_string(),
            state: *state,
            operation: *operation,
            needs,
        })
    }
}

/// Whether a VM that `operation` does not act on may stay as it is while
/// the job acts on the plan's other VMs: it is already where the operation
/// would take it, or the operation does not concern it. These rules let a
/// plan whose VMs are on different sides (a failover cancelled or halted
/// midway) move on; docs/operator.md "A way forward from every stop":
///
/// - planned / unplanned failover in direction `d`: a VM already failed
///   over in `d` (commit pending or committed) is left alone; the job
///   fails over the others (continues the failover);
/// - commit / change recovery point: a VM that is protected (never failed
///   over, or rolled back) or whose failover failed is left alone (and for
///   commit one already committed);
/// - reverse replication: a VM that is protected is left alone;
/// - test failover, test cleanup, protection changes and rollback leave no
///   VM alone (rollback already takes every VM not committed).
pub fn leaves_alone(state: &ItemState, operation: &Operation) -> bool {
    use ItemState as S;
    match *operation {
        Operation::Failover {
            kind: FailoverKind::Planned | FailoverKind::Unplanned,
            direction,
            ..
        } => matches!(
            *state,
            S::FailedOver { direction: d, .. } | S::Committed { direction: d } if d == direction
        ),
        Operation::Commit => matches!(
            state,
            S::Protected { .. } | S::FailoverFailed { .. } | S::Committed { .. }
        ),
        Operation::ChangeRecoveryPoint { .. } => {
            matches!(state, S::Protected { .. } | S::FailoverFailed { .. })
        }
        Operation::ReverseReplicate => matches!(state, S::Protected { .. }),
        _ => false,
    }
}

/// The VMs of a job split by what the job does with them (see
/// [`check_job`]): `acting` take part (leased, operated on), `left_alone`
/// stay as they are. Both keep the order they were given in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selection {
    pub acting: Vec<String>,
    pub left_alone: Vec<String>,
}

/// [`check_operation`] for every VM of a job at once: the VMs the job acts
/// on and those it leaves alone ([`leaves_alone`]), or every VM that is not
/// ready, not just the first (an operator fixes them all in one go). A job
/// that would act on no VM at all is refused too, naming each VM and its
/// state (there is nothing to do), unless the plan has no VMs.
pub fn check_job<'a>(
    operation: &Operation,
    items: impl IntoIterator<Item = (&'a str, &'a ItemState)>,
) -> Result<Selection, Vec<NotReady>> {
    let mut sel = Selection::default();
    let mut problems = Vec::new();
    let mut alone_states = Vec::new();
    for (vm, state) in items {
        match check_operation(vm, state, operation) {
            Ok(()) => sel.acting.push(vm.to_string()),
            Err(_) if leaves_alone(state, operation) => {
                sel.left_alone.push(vm.to_string());
                alone_states.push(*state);
            }
            Err(e) => problems.push(e),
        }
    }
    if problems.is_empty() && sel.acting.is_empty() && !sel.left_alone.is_empty() {
        // Nothing to act on: say why for each VM (they all stay as they are).
        problems = sel
            .left_alone
            .iter()
            .zip(alone_states)
            .map(|(vm, state)| NotReady {
                vm: vm.clone(),
                state,
                operation: *operation,
                needs: nothing_left_needs(operation),
            })
            .collect();
    }
    if problems.is_empty() {
        Ok(sel)
    } else {
        Err(problems)
    }
}

/// What a job that found nothing to do needed, in words.
fn nothing_left_needs(operation: &Operation) -> &'static str {
    match operation {
        Operation::Failover { .. } => {
            "still to fail over (every VM of the plan already failed over: commit or roll back)"
        }
        Operation::Commit => "failed over (no VM of the plan waits for a commit)",
        Operation::ChangeRecoveryPoint { .. } => "failed over and not yet committed",
        Operation::ReverseReplicate => "committed (no VM of the plan waits to reverse replicate)",
        _ => "ready for the operation",
    }
}
