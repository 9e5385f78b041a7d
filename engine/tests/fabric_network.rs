//! The network-mapping rules as the simulated fabric applies them at start
//! replica and create test VM.

mod fabric_support;

use drplan_engine::fabric::{Attachment, Fabric, OpKey};
use drplan_engine::plan::compile::VmOp;
use drplan_engine::plan::model::{FailoverKind, Mapping, Network};
use fabric_support::*;

fn att(a: &Attachment) -> (Option<&str>, Option<&str>) {
    (a.network.as_deref(), a.subnet.as_deref())
}

#[tokio::test]
async fn replica_attaches_to_the_same_named_subnet_of_the_mapped_network() {
    let inv = shipped();
    let f = instant(&inv);
    let cx = ctx(FailoverKind::Planned);
    let r = run_ok(&f, "j1", "web-01", &planned_chain(), &cx).await;
    let start = r.last().unwrap();
    assert_eq!(start.attachments.len(), 1);
    assert_eq!(att(&start.attachments[0]), (Some("corp-dr"), Some("web")));
    assert_eq!(start.attachments[0].site, "secondary-vmm");
    assert!(start.warnings.is_empty(), "{:?}", start.warnings);
    // Two NICs on two subnets keep their own subnet each.
    let r = run_ok(&f, "j1", "front-01", &planned_chain(), &cx).await;
    let a: Vec<_> = r.last().unwrap().attachments.iter().map(att).collect();
    assert_eq!(
        a,
        vec![
            (Some("corp-dr"), Some("web")),
            (Some("corp-dr"), Some("app"))
        ]
    );
    // The replica's state records the attachment too.
    let vm = f.vm("front-01").unwrap();
    let replica = vm.replica.unwrap();
    assert!(replica.running);
    assert_eq!(replica.nics[1].subnet.as_deref(), Some("app"));
}

#[tokio::test]
async fn replica_attaches_to_the_first_subnet_when_no_name_matches() {
    let mut inv = shipped();
    let dr = inv
        .networks
        .iter_mut()
        .find(|n| n.name == "corp-dr")
        .unwrap();
    dr.subnets = vec!["flat".into(), "spare".into()];
    let f = instant(&inv);
    let r = run_ok(
        &f,
        "j1",
        "sql-01",
        &planned_chain(),
        &ctx(FailoverKind::Planned),
    )
    .await;
    assert_eq!(
        att(&r.last().unwrap().attachments[0]),
        (Some("corp-dr"), Some("flat"))
    );
}

#[tokio::test]
async fn no_mapping_attaches_to_no_network_with_a_warning() {
    let mut inv = shipped();
    inv.network_mappings.retain(|m| m.source != "corp");
    let f = instant(&inv);
    let r = run_ok(
        &f,
        "j1",
        "web-01",
        &planned_chain(),
        &ctx(FailoverKind::Planned),
    )
    .await;
    let start = r.last().unwrap();
    assert_eq!(att(&start.attachments[0]), (None, None));
    assert_eq!(
        start.warnings,
        vec!["no network mapping for primary-vmm/corp: web-01 attached to no network"]
    );
    assert!(start.summary.contains("no network"), "{}", start.summary);
    // Two NICs: one warning per NIC, naming it.
    let r = run_ok(
        &f,
        "j1",
        "front-02",
        &planned_chain(),
        &ctx(FailoverKind::Planned),
    )
    .await;
    let w = &r.last().unwrap().warnings;
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[1].contains("front-02 NIC 2 of 2"), "{w:?}");
}

#[tokio::test]
async fn a_changed_mapping_reattaches_at_the_next_start() {
    let mut inv = shipped();
    inv.networks.push(Network {
        site: "secondary-vmm".into(),
        name: "corp-dr2".into(),
        subnets: vec!["other".into(), "web".into()],
    });
    let f = instant(&inv);
    let cx = ctx(FailoverKind::Planned);
    let r = run_ok(&f, "j1", "web-01", &planned_chain(), &cx).await;
    assert_eq!(
        att(&r.last().unwrap().attachments[0]),
        (Some("corp-dr"), Some("web"))
    );
    let mut mappings = inv.network_mappings.clone();
    mappings[0] = Mapping {
        source_site: "primary-vmm".into(),
        source: "corp".into(),
        target_site: "secondary-vmm".into(),
        target: "corp-dr2".into(),
    };
    f.set_network_mappings(mappings);
    // The same key is the same operation: it does not re-attach.
    let same = f
        .run(
            &key("j1", "web-01", &VmOp::StartReplica, 1),
            "web-01",
            &VmOp::StartReplica,
            &cx,
        )
        .await
        .unwrap();
    assert_eq!(att(&same.attachments[0]), (Some("corp-dr"), Some("web")));
    // The next start does.
    let again = f
        .start_replica(&OpKey::from("j2/web-01/start-replica/1"), "web-01", &cx)
        .await
        .unwrap();
    assert_eq!(att(&again.attachments[0]), (Some("corp-dr2"), Some("web")));
    assert!(again.summary.contains("re-attached"), "{}", again.summary);
    let nic = &f.vm("web-01").unwrap().replica.unwrap().nics[0];
    assert_eq!(nic.network.as_deref(), Some("corp-dr2"));
}

#[tokio::test]
async fn test_vms_attach_to_the_test_network_or_to_none() {
    let mut inv = shipped();
    let f = instant(&inv);
    let cx = ctx(FailoverKind::Test);
    // test-bubble has one subnet, `isolated`: no same name, so the first.
    let r = run_ok(&f, "t1", "web-01", &test_chain(Some("test-bubble")), &cx).await;
    assert_eq!(
        att(&r[0].attachments[0]),
        (Some("test-bubble"), Some("isolated"))
    );
    assert_eq!(r[0].attachments[0].site, "secondary-vmm");
    // No test network: every NIC on none, and that is by design (no warning).
    let r = run_ok(&f, "t1", "front-01", &test_chain(None), &cx).await;
    assert!(r[0].attachments.iter().all(|a| a.network.is_none()));
    assert_eq!(r[0].attachments.len(), 2);
    assert!(r[0].warnings.is_empty());
    assert!(r[0].summary.contains("no network"), "{}", r[0].summary);

    // A same-named subnet on the test network wins.
    inv.networks
        .iter_mut()
        .find(|n| n.name == "test-bubble")
        .unwrap()
        .subnets
        .push("web".into());
    let f = instant(&inv);
    let r = run_ok(&f, "t1", "web-02", &test_chain(Some("test-bubble")), &cx).await;
    assert_eq!(
        att(&r[0].attachments[0]),
        (Some("test-bubble"), Some("web"))
    );
    // A test network the target site does not have: none, with a warning.
    let r = run_ok(&f, "t1", "app-01", &test_chain(Some("nowhere")), &cx).await;
    assert_eq!(att(&r[0].attachments[0]), (None, None));
    assert!(
        r[0].warnings[0].contains("`nowhere`"),
        "{:?}",
        r[0].warnings
    );
}

#[tokio::test]
async fn failback_maps_back_with_the_reverse_mapping() {
    use drplan_engine::plan::model::Direction;
    let inv = shipped();
    let f = instant(&inv);
    run_ok(
        &f,
        "j1",
        "app-02",
        &planned_chain(),
        &ctx(FailoverKind::Planned),
    )
    .await;
    run_ok(
        &f,
        "c1",
        "app-02",
        &[VmOp::Commit, VmOp::ReverseReplicate],
        &plain(),
    )
    .await;
    let back = ctx_dir(FailoverKind::Planned, Direction::Reverse, NOW + 3_600_000);
    let r = run_ok(&f, "j2", "app-02", &planned_chain(), &back).await;
    let start = r.last().unwrap();
    assert_eq!(att(&start.attachments[0]), (Some("corp"), Some("app")));
    assert_eq!(start.attachments[0].site, "primary-vmm");
    assert_eq!(start.host.as_deref(), Some("hv-p02"));
}
