//! The plan against the fabric inventory: do its clouds, VMs and test
//! network exist, are the clouds paired, are the VMs protected, will each
//! NIC land on a network after failover.

use std::collections::HashMap;

use serde_saphyr::Spanned;

use super::super::diag::{Pos, codes};
use super::super::model::{CloudRef, Inventory, ProtectionState, Vm};
use super::{Ctx, pos};

/// Whether `r` names a cloud of the inventory; reports it if not.
fn cloud_exists(ctx: &mut Ctx, inv: &Inventory, field: &str, r: &CloudRef, at: Pos) -> bool {
    let Some(site) = inv.sites.iter().find(|s| s.name == r.site) else {
        let sites: Vec<&str> = inv.sites.iter().map(|s| s.name.as_str()).collect();
        ctx.error(
            codes::UNKNOWN_SITE_CLOUD,
            at,
            format!(
                "`{field}` names site `{}`, which is not in the inventory",
                r.site
            ),
        )
        .did_you_mean(
            &r.site,
            sites.iter().copied(),
            Some(format!("the inventory's sites are {}", ticked(&sites))),
        );
        return false;
    };
    if site.clouds.iter().any(|c| c.name == r.cloud) {
        return true;
    }
    let clouds: Vec<&str> = site.clouds.iter().map(|c| c.name.as_str()).collect();
    ctx.error(
        codes::UNKNOWN_SITE_CLOUD,
        at,
        format!(
            "`{field}` names cloud `{}`, but site `{}` has no such cloud",
            r.cloud, r.site
        ),
    )
    .did_you_mean(
        &r.cloud,
        clouds.iter().copied(),
        Some(format!(
            "the clouds of `{}` are {}",
            r.site,
            ticked(&clouds)
        )),
    );
    false
}

fn ticked(names: &[&str]) -> String {
    if names.is_empty() {
        return "none".to_string();
    }
    let v: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    super::and_list(&v)
}

/// The plan's clouds: both exist and are paired. Returns whether the source
/// cloud exists.
pub(super) fn source_target(
    ctx: &mut Ctx,
    inv: &Inventory,
    source: &CloudRef,
    source_at: Pos,
    target: &CloudRef,
    target_at: Pos,
) -> bool {
    let s = cloud_exists(ctx, inv, "source", source, source_at);
    let t = cloud_exists(ctx, inv, "target", target, target_at);
    if !(s && t) {
        return s;
    }
    if inv
        .pairings
        .iter()
        .any(|p| &p.source == source && &p.target == target)
    {
        return true;
    }
    let note = ctx.error(
        codes::NOT_PAIRED,
        target_at,
        format!("`{source}` is not paired with `{target}`: its VMs do not replicate there"),
    );
    match inv.pairing(source) {
        Some(p) => note.hint(format!(
            "`{source}` is paired with `{}`; did you mean `target: {}`?",
            p.target, p.target
        )),
        None => note.hint(format!(
            "no cloud pairing has `{source}` as its source; pair it with `{target}` in the inventory first"
        )),
    }
    true
}

/// The inventory's VMs by name: plans of thousands of VMs are checked
/// against inventories of thousands, so no linear search per VM.
pub(super) struct VmIndex<'a>(HashMap<&'a str, &'a Vm>);

impl<'a> VmIndex<'a> {
    pub(super) fn new(inv: &'a Inventory) -> Self {
        VmIndex(inv.vms.iter().map(|v| (v.name.as_str(), v)).collect())
    }
}

/// One VM of the plan against the inventory.
pub(super) fn vm(
    ctx: &mut Ctx,
    inv: &Inventory,
    index: &VmIndex,
    name: &str,
    at: Pos,
    source: Option<&CloudRef>,
) {
    let Some(vm) = index.0.get(name) else {
        ctx.error(
            codes::UNKNOWN_VM,
            at,
            format!("VM `{name}` is not in the inventory"),
        )
        .did_you_mean(name, inv.vms.iter().map(|v| v.name.as_str()), None);
        return;
    };
    match vm.protection {
        ProtectionState::Protected => {}
        // A warning, not an error: the inventory declares the state drplan
        // starts from, and `drplan protect` changes it at run time. Whether
        // every VM is protected is checked when a failover is submitted,
        // against the replicated-item records (docs/protection.md).
        ProtectionState::Unprotected => {
            ctx.warning(
                codes::VM_NOT_PROTECTED,
                at,
                format!("VM `{name}` is declared unprotected in the inventory: it has no replica to fail over to unless protection was enabled since"),
            )
            .hint(format!("enable protection (`drplan protect {name}`) and let initial replication finish before a failover of this plan"));
        }
        ProtectionState::ReplicatedExternally => {
            ctx.warning(
                codes::VM_NOT_PROTECTED,
                at,
                format!("VM `{name}` is replicated outside drplan"),
            )
            .hint(format!("onboard its replica into drplan (`drplan protect {name}`) before any failover of this plan"));
        }
    }
    if let Some(src) = source
        && (vm.site != src.site || vm.cloud != src.cloud)
    {
        ctx.error(
            codes::VM_WRONG_CLOUD,
            at,
            format!(
                "VM `{name}` runs in `{}/{}`, not in the plan's source `{src}`",
                vm.site, vm.cloud
            ),
        )
        .hint("a plan fails over the VMs of one cloud; move the VM to a plan for its cloud");
    }
    let mut warned: Vec<&str> = Vec::new();
    for nic in &vm.nics {
        if warned.contains(&nic.network.as_str()) {
            continue;
        }
        if inv.mapped_network(&vm.site, &nic.network).is_none() {
            warned.push(&nic.network);
            ctx.warning(
                codes::NO_NETWORK_MAPPING,
                at,
                format!(
                    "after failover `{name}` would be attached to no network: `{}/{}` has no network mapping",
                    vm.site, nic.network
                ),
            )
            .hint("add a network mapping for it to the inventory");
        }
    }
}

pub(super) fn test_network(
    ctx: &mut Ctx,
    inv: &Inventory,
    network: &Spanned<String>,
    target: &CloudRef,
) {
    let name = network.value.as_str();
    if !inv.sites.iter().any(|s| s.name == target.site) {
        // The unknown target site is reported on its own.
        return;
    }
    if inv.network(&target.site, name).is_some() {
        // A drill must not disturb production: test VMs are copies of the
        // production VMs (same names, same addresses), so they belong on an
        // isolated network, not on the one real failovers attach to.
        if let Some(m) = inv
            .network_mappings
            .iter()
            .find(|m| m.target_site == target.site && m.target == name)
        {
            ctx.warning(
                codes::TEST_NETWORK_NOT_ISOLATED,
                pos(network),
                format!(
                    "test network `{name}` is where failed-over VMs go (`{}/{}` maps to it): test VMs there would run with the same names and addresses as production",
                    m.source_site, m.source
                ),
            )
            .hint("use an isolated network for drills, or omit `network` to attach test VMs to none");
        }
        return;
    }
    let candidates: Vec<&str> = inv
        .networks
        .iter()
        .filter(|n| n.site == target.site)
        .map(|n| n.name.as_str())
        .collect();
    let note = ctx.error(
        codes::UNKNOWN_TEST_NETWORK,
        pos(network),
        format!(
            "test network `{name}` is not a VM network of the target site `{}`",
            target.site
        ),
    );
    if inv.networks.iter().any(|n| n.name == name) {
        note.hint(format!(
            "`{name}` is at another site; test VMs are created at the target site, so pick one of its networks: {}",
            ticked(&candidates)
        ));
    } else {
        note.did_you_mean(
            name,
            candidates.iter().copied(),
            Some(format!(
                "the networks of `{}` are {}; omit `network` to attach test VMs to none",
                target.site,
                ticked(&candidates)
            )),
        );
    }
}
