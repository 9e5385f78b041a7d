//! Unit tests of the synthetic protect / unprotect plans.

use super::*;
use crate::plan::compile::NodeKind;
use crate::plan::compile::{VmOp, compile};

const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plans/fabric.yaml");

fn inventory(edit: impl Fn(&mut Inventory)) -> Inventory {
    let (inv, _, diags) = crate::plan::load_fabric(std::path::Path::new(SHIPPED));
    let mut inv = inv.unwrap_or_else(|| panic!("shipped inventory: {diags:?}"));
    edit(&mut inv);
    inv
}

const NOW: Millis = 1_800_000_000_000;

#[test]
fn enable_compiles_to_the_four_steps_per_vm() {
    let inv = inventory(|_| {});
    let vms = vec!["web-01".to_string(), "web-02".to_string()];
    let job = enable_job(&inv, &vms, Schedule::Now, NOW, None).unwrap();
    assert_eq!(job.operation, Operation::EnableProtection);
    assert_eq!(job.scheduled_at, None);
    let exec = compile(&job.plan, job.operation);
    let keys: Vec<&str> = exec.nodes.iter().map(|n| n.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "protect/vm/web-01/prerequisites-check",
            "protect/vm/web-01/create-replica",
            "protect/vm/web-01/initial-replication",
            "protect/vm/web-01/finalize-protection",
            "protect/vm/web-02/prerequisites-check",
            "protect/vm/web-02/create-replica",
            "protect/vm/web-02/initial-replication",
            "protect/vm/web-02/finalize-protection",
        ]
    );
    assert!(
        job.notes[0].contains("60 GB over the network"),
        "{:?}",
        job.notes
    );
}

#[test]
fn a_scheduled_start_is_a_wait_step_in_front_of_every_chain() {
    let inv = inventory(|_| {});
    let at = NOW + 3_600_000;
    let job = enable_job(&inv, &["web-01".into()], Schedule::At(at), NOW, None).unwrap();
    assert_eq!(job.scheduled_at, Some(at));
    let exec = compile(&job.plan, job.operation);
    assert_eq!(exec.nodes[0].key, "protect/pre/scheduled-start");
    match &job.plan.groups[0].pre[0].action {
        StepAction::Wait { duration } => assert_eq!(*duration, Duration::from_secs(3600)),
        other => panic!("not a wait: {other:?}"),
    }
    assert_eq!(exec.nodes[1].deps, vec![0]);
    // A time already past starts at once.
    let past = enable_job(&inv, &["web-01".into()], Schedule::At(NOW - 1), NOW, None).unwrap();
    assert_eq!(past.scheduled_at, None);
    assert!(past.plan.groups[0].pre.is_empty());
}

#[test]
fn the_policys_scheduled_start_applies_unless_overridden() {
    let at_s = NOW / 1000 + 7200;
    let inv = inventory(|inv| {
        inv.policies[0].initial_replication = InitialReplication::Network {
            start_at: Some(at_s),
        }
    });
    let job = enable_job(&inv, &["web-01".into()], Schedule::Policy, NOW, None).unwrap();
    assert_eq!(job.scheduled_at, Some(at_s * 1000));
    let now = enable_job(&inv, &["web-01".into()], Schedule::Now, NOW, None).unwrap();
    assert_eq!(now.scheduled_at, None);
}

#[test]
fn disable_takes_the_policy_default_unless_told() {
    let inv = inventory(|_| {});
    let vms = vec!["web-01".to_string()];
    let keep = disable_job(&inv, &vms, None, NOW, None).unwrap();
    assert_eq!(
        keep.operation,
        Operation::DisableProtection {
            delete_replica: false
        }
    );
    let del = disable_job(&inv, &vms, Some(true), NOW, None).unwrap();
    let exec = compile(&del.plan, del.operation);
    assert!(matches!(
        &exec.nodes[0].kind,
        NodeKind::Vm {
            op: VmOp::DisableProtection {
                delete_replica: true
            },
            ..
        }
    ));
    assert_eq!(exec.nodes[0].key, "unprotect/vm/web-01/disable-protection");
}

#[test]
fn bad_requests_name_what_is_wrong() {
    let inv = inventory(|_| {});
    let e = select_vms(&inv, &["web-1".into()], None, false).unwrap_err();
    assert_eq!(
        e.to_string(),
        "VM `web-1` is not in the inventory (did you mean `web-01`?)"
    );
    let e = select_vms(&inv, &[], Some("primary-vmm/nope"), false).unwrap_err();
    assert!(e.to_string().contains("primary-vmm/nope"), "{e}");
    assert_eq!(
        select_vms(&inv, &[], None, false).unwrap_err(),
        ProtectError::NoVms
    );
    let all = select_vms(&inv, &[], Some("primary-vmm/gold"), false).unwrap();
    assert_eq!(all.len(), inv.vms.len());
    let unpaired = inventory(|inv| inv.pairings.clear());
    let e = enable_job(&unpaired, &["web-01".into()], Schedule::Now, NOW, None).unwrap_err();
    assert!(matches!(e, ProtectError::NoPairing { .. }), "{e}");
    assert!(e.to_string().contains("web-01"), "{e}");
}

#[test]
fn the_inventory_declaration_is_the_default_item_state() {
    let inv = inventory(|inv| {
        inv.vms[0].protection = ProtectionState::Unprotected;
        inv.vms[1].protection = ProtectionState::ReplicatedExternally;
    });
    assert_eq!(default_item(&inv, &inv.vms[0].name), ItemState::Unprotected);
    assert_eq!(default_item(&inv, &inv.vms[1].name), ItemState::Unprotected);
    assert_eq!(
        default_item(&inv, &inv.vms[2].name),
        ItemState::Protected {
            direction: Direction::Forward
        }
    );
}
