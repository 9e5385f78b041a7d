//! What `drplan vms` shows: every VM of the inventory with its protection
//! state (the journal's replicated-item record, else the inventory's
//! declaration), the job holding it, its replica and its health.

use serde::{Deserialize, Serialize};

use crate::core::Millis;
use crate::core::item::ItemState;
use crate::fabric::SimFabric;
use crate::fabric::sim::{Protection, Replication, SimVm};
use crate::plan::model::{Inventory, ProtectionState};
use crate::store::JobId;

use super::health::{self, Health, Level, Replicating};

/// One VM's protection, as `drplan vms` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmStatus {
    pub vm: String,
    /// `site/cloud`.
    pub cloud: String,
    pub disk_gb: u64,
    /// What the inventory declares.
    pub declared: ProtectionState,
    /// The replicated-item state (what a failover is checked against).
    pub item: ItemState,
    /// The item state in words, with what the fabric adds (e.g.
    /// `unprotected (replicated outside drplan: onboard with drplan protect)`).
    pub state: String,
    /// The unfinished job that holds the VM, if any.
    pub job: Option<JobId>,
    /// `host (site)` of the replica, if one exists.
    pub replica: Option<String>,
    /// How protection got its data when drplan enabled it: `network`,
    /// `offline` or `onboarded`.
    pub initial_replication: Option<String>,
    pub health: Health,
}

/// Whether replication of `v` runs, is paused by a fault, stopped or off.
fn replicating(fabric: &SimFabric, v: &SimVm) -> Replicating {
    let faults = fabric.faults();
    match v.replication {
        Replication::Off => Replicating::Off,
        Replication::Stopped { at, .. } => Replicating::Stopped { at },
        Replication::Active { since, .. } => {
            let down = [v.source(), v.target()]
                .into_iter()
                .flatten()
                .find_map(|c| {
                    if faults.site_down(&c.site) {
                        Some(format!("site {} is down", c.site))
                    } else if faults.host_down(&c.host) {
                        Some(format!("host {} ({}) is down", c.host, c.site))
                    } else {
                        None
                    }
                });
            match down {
                Some(why) => Replicating::Paused { since, why },
                None => Replicating::Active { since },
            }
        }
    }
}

fn not_applicable(reason: &str, copy_every_ms: u64) -> Health {
    Health {
        level: Level::NotApplicable,
        latest: None,
        latest_app_consistent: None,
        lag_ms: None,
        copy_every_ms,
        points: 0,
        reason: reason.to_string(),
    }
}

/// Every VM of the inventory, in inventory order. `item` gives a VM's
/// replicated-item state (the journal's record, else the inventory's
/// declaration); `leases` the VMs held by unfinished jobs.
pub fn vm_statuses(
    inventory: &Inventory,
    fabric: &SimFabric,
    item: &dyn Fn(&str) -> ItemState,
    leases: &[(String, JobId)],
    now: Millis,
) -> Vec<VmStatus> {
    inventory
        .vms
        .iter()
        .map(|inv_vm| {
            let name = inv_vm.name.as_str();
            let item_state = item(name);
            let sim = fabric.vm(name);
            let job = leases.iter().find(|(v, _)| v == name).map(|(_, j)| *j);
            let copy_every = sim.as_ref().map_or(0, |v| v.policy.copy_every_ms);
            let (state, health) = match &sim {
                None => (
                    item_state.to_string(),
                    not_applicable("not in the simulated fabric", copy_every),
                ),
                Some(v) => match v.protection {
                    Protection::External => (
                        format!(
                            "{item_state} (replicated outside drplan: onboard it with `drplan protect {name}`)"
                        ),
                        not_applicable("replicated outside drplan", copy_every),
                    ),
                    Protection::Enabling => (
                        item_state.to_string(),
                        not_applicable("initial replication not finished", copy_every),
                    ),
                    Protection::Unprotected => (
                        item_state.to_string(),
                        not_applicable("not protected", copy_every),
                    ),
                    Protection::Protected => {
                        let points = fabric.recovery_points(name, now).unwrap_or_default();
                        (
                            item_state.to_string(),
                            health::assess(&v.policy, &replicating(fabric, v), &points, now),
                        )
                    }
                },
            };
            let replica = sim.as_ref().and_then(|v| {
                let r = if matches!(v.protection, Protection::Protected) {
                    v.target()
                } else {
                    v.replica.as_ref()
                };
                r.map(|c| format!("{} ({})", c.host, c.site))
            });
            VmStatus {
                vm: name.to_string(),
                cloud: format!("{}/{}", inv_vm.site, inv_vm.cloud),
                disk_gb: inv_vm.disk_gb,
                declared: inv_vm.protection,
                item: item_state,
                state,
                job,
                replica,
                initial_replication: sim
                    .as_ref()
                    .and_then(|v| v.initial.as_ref())
                    .map(|i| match i.finished_at {
                        Some(_) => i.method.clone(),
                        None => format!("{} (in progress)", i.method),
                    }),
                health,
            }
        })
        .collect()
}
