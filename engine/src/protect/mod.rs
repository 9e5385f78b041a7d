//! Protection management: enabling, onboarding and disabling protection as
//! jobs of the same engine, replication health, recovery points and a
//! capacity estimate.
//!
//! A protect (or unprotect) job is an ordinary job over a *synthetic plan*
//! built here: one group named `protect` (`unprotect`) with the chosen VMs,
//! compiled for [`Operation::EnableProtection`] into the per-VM chain
//! `prerequisites-check → create-replica → initial-replication →
//! finalize-protection` (or [`Operation::DisableProtection`]: one
//! `disable-protection` step). So `drplan show`, progress, operator actions,
//! leases, crash recovery and the audit trail work unchanged.
//!
//! - A scheduled initial replication (the policy's `start`, or the
//!   operator's `--start-at`) is a `wait` step in front of the chain
//!   (`protect/pre/scheduled-start`): a durable timer in the store's timer
//!   index that the job visibly waits on and that survives restarts.
//! - A VM the inventory marks `replicated-externally` is onboarded by the
//!   same chain: the fabric adopts its replica and copies nothing.
//! - Where protection state lives: the journal's replicated-item records are
//!   the truth for *readiness* (a failover is refused unless every VM is
//!   `protected`); the persisted fabric world holds the replica, the
//!   replication and its recovery points. Both change only through job
//!   events, written with the fabric's delta in one store batch, so they
//!   agree after any crash. A VM no job has touched takes the state the
//!   inventory declares ([`default_item`]). See docs/protection.md.

pub mod capacity;
pub mod health;
pub mod status;

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::core::Millis;
use crate::core::item::ItemState;
use crate::fabric::points::fmt_time;
use crate::fabric::sim::vm_policy;
use crate::plan::compile::{Operation, RecoveryPoint};
use crate::plan::model::{
    CloudRef, CommitPolicy, Direction, Group, GroupVm, InitialReplication, Inventory,
    MAX_TEST_DURATION, Plan, ProtectionState, Step, StepAction, TestSettings, When,
};

/// The group of a synthetic protect plan (step keys `protect/...`).
pub const PROTECT_GROUP: &str = "protect";
/// The group of a synthetic unprotect plan.
pub const UNPROTECT_GROUP: &str = "unprotect";
/// The wait step of a scheduled initial replication.
pub const SCHEDULED_STEP: &str = "scheduled-start";

/// Why a protect or unprotect request cannot become a job. Every message
/// names the VM (or cloud) and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtectError {
    #[error("no VM given: name VMs, or choose a source cloud (`--cloud SITE/CLOUD`) or `--all`")]
    NoVms,
    #[error("VM `{vm}` is not in the inventory{}", hint.as_ref().map(|h| format!(" (did you mean `{h}`?)")).unwrap_or_default())]
    UnknownVm { vm: String, hint: Option<String> },
    #[error("cloud `{cloud}` is not a source cloud of any pairing in the inventory")]
    UnknownCloud { cloud: String },
    #[error(
        "VM `{vm}` runs in cloud {cloud}, which is paired with no cloud: add a pairing (and a policy) to the inventory"
    )]
    NoPairing { vm: String, cloud: String },
    #[error("VM `{vm}`: the pairing of {cloud} has no replication policy")]
    NoPolicy { vm: String, cloud: String },
    #[error(
        "the VMs are in different source clouds ({first} and {second}): protect one cloud per job"
    )]
    MixedClouds { first: String, second: String },
    #[error(
        "the VMs' policies disagree on deleting the replica ({keep} keep it, {delete} delete it): say --delete-replica or --keep-replica"
    )]
    MixedDeleteDefault { keep: String, delete: String },
    #[error(
        "every VM named is already protected: {}", vms.join(", ")
    )]
    AllProtected { vms: Vec<String> },
}

/// When an enable job's initial replication starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// As the policy says (`start: now`, or its scheduled time).
    Policy,
    /// Now, whatever the policy says.
    Now,
    /// At this time (Unix ms), whatever the policy says.
    At(Millis),
}

/// A job ready to submit: the synthetic plan, its audit text and operation.
#[derive(Debug, Clone)]
pub struct ProtectJob {
    pub plan: Plan,
    /// What the job was asked to do, kept with the job for audits (the
    /// synthetic plan has no file).
    pub text: String,
    pub operation: Operation,
    /// When the initial replication is scheduled to start (enable jobs
    /// whose start is in the future).
    pub scheduled_at: Option<Millis>,
    /// Each VM and how it will be protected (or unprotected), for the
    /// operator: `sql-01: initial replication of 500 GB over the network`.
    pub notes: Vec<String>,
}

/// The replicated-item state a VM takes when no job has touched it yet:
/// the state the inventory declares (`protected` → protected forward;
/// `unprotected` and `replicated-externally` → unprotected, the latter
/// onboarded by a protect job). A VM unknown to the inventory is treated
/// as protected, the journal's historical default, so that plans run over
/// an inventory-less engine keep working.
pub fn default_item(inventory: &Inventory, vm: &str) -> ItemState {
    item_declared(inventory.vm(vm).map(|v| v.protection))
}

/// [`default_item`] of a VM the inventory declares with `protection`
/// (`None`: not in the inventory).
pub fn item_declared(protection: Option<ProtectionState>) -> ItemState {
    match protection {
        Some(ProtectionState::Unprotected | ProtectionState::ReplicatedExternally) => {
            ItemState::Unprotected
        }
        Some(ProtectionState::Protected) | None => ItemState::Protected {
            direction: Direction::Forward,
        },
    }
}

/// The VMs a request names: `vms` as given (checked), or every VM of the
/// source cloud `cloud` (`SITE/CLOUD`), or every VM of the inventory in a
/// paired cloud when `all`.
pub fn select_vms(
    inventory: &Inventory,
    vms: &[String],
    cloud: Option<&str>,
    all: bool,
) -> Result<Vec<String>, ProtectError> {
    let mut out: Vec<String> = Vec::new();
    for name in vms {
        if inventory.vm(name).is_none() {
            let hint = inventory
                .vms
                .iter()
                .map(|v| (strsim::normalized_levenshtein(name, &v.name), &v.name))
                .filter(|(s, _)| *s > 0.5)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, n)| n.clone());
            return Err(ProtectError::UnknownVm {
                vm: name.clone(),
                hint,
            });
        }
        if !out.contains(name) {
            out.push(name.clone());
        }
    }
    if let Some(c) = cloud {
        let Some(pairing) = inventory
            .pairings
            .iter()
            .find(|p| p.source.to_string() == c)
        else {
            return Err(ProtectError::UnknownCloud {
                cloud: c.to_string(),
            });
        };
        for v in inventory
            .vms
            .iter()
            .filter(|v| v.site == pairing.source.site && v.cloud == pairing.source.cloud)
        {
            if !out.contains(&v.name) {
                out.push(v.name.clone());
            }
        }
    }
    if all {
        for v in inventory.vms.iter().filter(|v| {
            inventory
                .pairings
                .iter()
                .any(|p| p.source.site == v.site && p.source.cloud == v.cloud)
        }) {
            if !out.contains(&v.name) {
                out.push(v.name.clone());
            }
        }
    }
    if out.is_empty() {
        return Err(ProtectError::NoVms);
    }
    Ok(out)
}

/// The pairing's source and target of `vms` (all in one source cloud).
fn clouds(inventory: &Inventory, vms: &[String]) -> Result<(CloudRef, CloudRef), ProtectError> {
    let mut found: Option<(CloudRef, CloudRef)> = None;
    for name in vms {
        let v = inventory.vm(name).ok_or_else(|| ProtectError::UnknownVm {
            vm: name.clone(),
            hint: None,
        })?;
        let src = CloudRef {
            site: v.site.clone(),
            cloud: v.cloud.clone(),
        };
        let pairing = inventory
            .pairing(&src)
            .ok_or_else(|| ProtectError::NoPairing {
                vm: name.clone(),
                cloud: src.to_string(),
            })?;
        if vm_policy(inventory, v).is_none() {
            return Err(ProtectError::NoPolicy {
                vm: name.clone(),
                cloud: src.to_string(),
            });
        }
        match &found {
            Some((s, _)) if *s != src => {
                return Err(ProtectError::MixedClouds {
                    first: s.to_string(),
                    second: src.to_string(),
                });
            }
            Some(_) => {}
            None => found = Some((src, pairing.target.clone())),
        }
    }
    found.ok_or(ProtectError::NoVms)
}

fn synthetic_plan(
    name: &str,
    group: &str,
    source: CloudRef,
    target: CloudRef,
    vms: &[String],
    pre: Vec<Step>,
    fabric_path: Option<PathBuf>,
) -> Plan {
    Plan {
        name: name.to_string(),
        description: None,
        source,
        target,
        base_dir: PathBuf::from("."),
        fabric_path,
        layout: crate::plan::model::CompileLayout::default(),
        groups: vec![Group {
            name: group.to_string(),
            after: Vec::new(),
            vms: vms
                .iter()
                .map(|v| GroupVm {
                    name: v.clone(),
                    optional: false,
                })
                .collect(),
            pre,
            post: Vec::new(),
        }],
        test: TestSettings {
            network: None,
            max_duration: MAX_TEST_DURATION,
            cleanup: Vec::new(),
        },
        commit: CommitPolicy::Manual,
    }
}

/// An enable-protection job over `vms` at `now` (Unix ms). `fabric_path`
/// is the inventory file, kept with the job so that later commands find it.
/// Submission then checks each VM's replicated-item state (it must be
/// unprotected) and leases it.
pub fn enable_job(
    inventory: &Inventory,
    vms: &[String],
    schedule: Schedule,
    now: Millis,
    fabric_path: Option<PathBuf>,
) -> Result<ProtectJob, ProtectError> {
    if vms.is_empty() {
        return Err(ProtectError::NoVms);
    }
    let (source, target) = clouds(inventory, vms)?;
    let mut notes = Vec::new();
    let mut policy_start: Option<Millis> = None;
    for name in vms {
        let v = inventory.vm(name).expect("checked by clouds()");
        let policy = vm_policy(inventory, v).expect("checked by clouds()");
        let how = match (&v.protection, &policy.initial_replication) {
            (ProtectionState::ReplicatedExternally, _) => {
                "onboard its existing replica (nothing copied)".to_string()
            }
            (
                _,
                InitialReplication::Offline {
                    export_path,
                    import_path,
                },
            ) => format!(
                "offline initial replication of {} GB (export to {export_path}, import from {import_path})",
                v.disk_gb
            ),
            (_, InitialReplication::Network { start_at }) => {
                if let Some(s) = start_at {
                    let s = s.saturating_mul(1000);
                    policy_start = Some(policy_start.map_or(s, |p: Millis| p.max(s)));
                }
                format!("initial replication of {} GB over the network", v.disk_gb)
            }
        };
        notes.push(format!("{name}: {how}, policy {} -> {target}", policy.name));
    }
    let start = match schedule {
        Schedule::Now => None,
        Schedule::At(t) => Some(t),
        Schedule::Policy => policy_start,
    };
    // A scheduled time already past starts at once: waiting for yesterday's
    // 02:00 would mean waiting forever.
    let scheduled_at = start.filter(|&t| t > now);
    let pre = match scheduled_at {
        Some(t) => vec![Step {
            name: SCHEDULED_STEP.to_string(),
            action: StepAction::Wait {
                duration: Duration::from_millis(t - now),
            },
            when: When::default(),
            optional: false,
        }],
        None => Vec::new(),
    };
    let mut text = format!(
        "# drplan protect: a synthetic plan (no file)\noperation: enable protection\nsource: {source}\ntarget: {target}\nvms: [{}]\n",
        vms.join(", ")
    );
    match scheduled_at {
        Some(t) => text.push_str(&format!("initial_replication_start: {}\n", fmt_time(t))),
        None => text.push_str("initial_replication_start: now\n"),
    }
    text.push_str(&format!("requested_at: {}\n", fmt_time(now)));
    Ok(ProtectJob {
        plan: synthetic_plan(
            "protect",
            PROTECT_GROUP,
            source,
            target,
            vms,
            pre,
            fabric_path,
        ),
        text,
        operation: Operation::EnableProtection,
        scheduled_at,
        notes,
    })
}

/// A disable-protection job over `vms`. `delete_replica`: the operator's
/// choice, else each VM's policy default (which must then agree).
pub fn disable_job(
    inventory: &Inventory,
    vms: &[String],
    delete_replica: Option<bool>,
    now: Millis,
    fabric_path: Option<PathBuf>,
) -> Result<ProtectJob, ProtectError> {
    if vms.is_empty() {
        return Err(ProtectError::NoVms);
    }
    let (source, target) = clouds(inventory, vms)?;
    let delete = match delete_replica {
        Some(d) => d,
        None => {
            let (mut keep, mut delete) = (Vec::new(), Vec::new());
            for name in vms {
                let v = inventory.vm(name).expect("checked by clouds()");
                let p = vm_policy(inventory, v).expect("checked by clouds()");
                if p.delete_replica_on_disable {
                    delete.push(name.clone());
                } else {
                    keep.push(name.clone());
                }
            }
            if !keep.is_empty() && !delete.is_empty() {
                return Err(ProtectError::MixedDeleteDefault {
                    keep: keep.join(", "),
                    delete: delete.join(", "),
                });
            }
            !delete.is_empty()
        }
    };
    let notes = vms
        .iter()
        .map(|v| {
            format!(
                "{v}: disable protection, {} its replica",
                if delete { "delete" } else { "keep" }
            )
        })
        .collect();
    let text = format!(
        "# drplan unprotect: a synthetic plan (no file)\noperation: disable protection\ndelete_replica: {delete}\nsource: {source}\nvms: [{}]\nrequested_at: {}\n",
        vms.join(", "),
        fmt_time(now)
    );
    Ok(ProtectJob {
        plan: synthetic_plan(
            "unprotect",
            UNPROTECT_GROUP,
            source,
            target,
            vms,
            Vec::new(),
            fabric_path,
        ),
        text,
        operation: Operation::DisableProtection {
            delete_replica: delete,
        },
        scheduled_at: None,
        notes,
    })
}

/// Checks an operator's recovery point for every VM before a job is
/// submitted: each VM must keep a point the request selects. Returns one
/// line per VM that has none (`VM `x`: no recovery point at or before ...`).
pub fn check_recovery_point(
    fabric: &crate::fabric::SimFabric,
    vms: &[&str],
    requested: RecoveryPoint,
    now: Millis,
) -> Result<(), Vec<String>> {
    let problems: Vec<String> = vms
        .iter()
        .filter_map(|vm| {
            fabric
                .select_point(vm, now, requested)
                .err()
                .map(|why| format!("VM `{vm}`: {why}"))
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests;
