//! Embedding the drplan engine: your own fabric, an in-memory store, a
//! small inline plan, a test failover run to "awaiting cleanup" and then
//! completed. Run it with `cargo run --example embed`.
//!
//! A real embedding implements [`Fabric`] over its VMM API (SCVMM, vSphere,
//! ...). The contract to honour: every call is idempotent by its `key` (the
//! engine re-issues in-flight operations after a restart under the same
//! key), and dropping a call's future before it completes must leave the
//! fabric as if it had never been made.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use drplan_engine::core::JobStatus;
use drplan_engine::fabric::{Fabric, OpContext, OpKey, OpKind, OpReport, OpResult};
use drplan_engine::plan::compile::{Operation, RecoveryPoint};
use drplan_engine::plan::model::FailoverKind;
use drplan_engine::runtime::{Engine, EngineConfig, Submission, SystemClock, Update};
use drplan_engine::script::ScriptRunner;
use drplan_engine::store::mem::MemStore;

/// A fabric that logs each operation and succeeds, remembering results by
/// key so that a repeated key is answered without acting twice.
#[derive(Default)]
struct LoggingFabric {
    done: Mutex<HashMap<OpKey, OpReport>>,
}

impl LoggingFabric {
    fn act(&self, key: &OpKey, vm: &str, op: OpKind, what: String) -> OpResult {
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = done.get(key) {
            println!("  [fabric] {op} {vm}: repeat of {key}, answered from the record");
            return Ok(r.clone());
        }
        println!("  [fabric] {op} {vm} ({key})");
        let report = OpReport {
            op,
            vm: vm.to_string(),
            summary: what,
            warnings: Vec::new(),
            attachments: Vec::new(),
            recovery_point: None,
            host: None,
            test_vm: None,
            remaining: Vec::new(),
            duration_ms: 0,
        };
        done.insert(key.clone(), report.clone());
        Ok(report)
    }
}

#[async_trait]
impl Fabric for LoggingFabric {
    async fn shutdown_primary(&self, k: &OpKey, vm: &str, _: bool, _: &OpContext) -> OpResult {
        self.act(k, vm, OpKind::ShutdownPrimary, format!("shut {vm} down"))
    }
    async fn sync_final_delta(&self, k: &OpKey, vm: &str, _: &OpContext) -> OpResult {
        self.act(k, vm, OpKind::SyncFinalDelta, format!("synced {vm}"))
    }
    async fn failover(&self, k: &OpKey, vm: &str, p: RecoveryPoint, _: &OpContext) -> OpResult {
        self.act(k, vm, OpKind::Failover, format!("failed {vm} over to {p}"))
    }
    async fn start_replica(&self, k: &OpKey, vm: &str, _: &OpContext) -> OpResult {
        self.act(k, vm, OpKind::StartReplica, format!("started {vm}"))
    }
    async fn create_test_vm(
        &self,
        k: &OpKey,
        vm: &str,
        network: Option<&str>,
        _: &OpContext,
    ) -> OpResult {
        let on = network.unwrap_or("no network");
        let what = format!("created the test VM of {vm} on {on}");
        self.act(k, vm, OpKind::CreateTestVm, what)
    }
    async fn start_test_vm(&self, k: &OpKey, vm: &str, _: &OpContext) -> OpResult {
        self.act(
            k,
            vm,
            OpKind::StartTestVm,
            format!("started the test VM of {vm}"),
        )
    }
    async fn delete_test_vm(&self, k: &OpKey, vm: &str, _: &OpContext) -> OpResult {
        self.act(
            k,
            vm,
            OpKind::DeleteTestVm,
            format!("deleted the test VM of {vm}"),
        )
    }
    async fn commit(&self, k: &OpKey, vm: &str, _: &OpContext) -> OpResult {
        self.act(k, vm, OpKind::Commit, format!("committed {vm}"))
    }
    async fn change_recovery_point(
        &self,
        k: &OpKey,
        vm: &str,
        p: RecoveryPoint,
        _: &OpContext,
    ) -> OpResult {
        let what = format!("moved {vm} to {p}");
        self.act(k, vm, OpKind::ChangeRecoveryPoint, what)
    }
    async fn reverse_replicate(&self, k: &OpKey, vm: &str, _: &OpContext) -> OpResult {
        self.act(k, vm, OpKind::ReverseReplicate, format!("reversed {vm}"))
    }
    async fn stop_replication(&self, k: &OpKey, vm: &str, _: &OpContext) -> OpResult {
        self.act(k, vm, OpKind::StopReplication, format!("stopped {vm}"))
    }
    async fn disable_protection(&self, k: &OpKey, vm: &str, _: bool, _: &OpContext) -> OpResult {
        self.act(
            k,
            vm,
            OpKind::DisableProtection,
            format!("unprotected {vm}"),
        )
    }
    async fn rollback(&self, k: &OpKey, vm: &str, _: &OpContext) -> OpResult {
        self.act(k, vm, OpKind::Rollback, format!("rolled {vm} back"))
    }
}

/// A two-group plan over VMs of the shipped inventory (`plans/fabric.yaml`).
const PLAN: &str = r#"
drplan: 1
name: embed-demo
source: primary-vmm/gold
target: secondary-vmm/gold-dr
test:
  network: test-bubble
groups:
  - name: database
    vms: [sql-01]
  - name: web
    vms: [web-01]
    post:
      - name: hello
        shell: echo "hello from $DRPLAN_STEP of job $DRPLAN_JOB_ID ($DRPLAN_FAILOVER_KIND)"
"#;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The plan lives in a folder of its own (scripts run there).
    let dir = tempfile::tempdir()?;
    let plan_path = dir.path().join("embed-demo.yaml");
    std::fs::write(&plan_path, PLAN)?;
    let fabric_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/fabric.yaml");
    let loaded = drplan_engine::plan::load(&plan_path, Some(&fabric_path));
    if loaded.failed(false) {
        for d in &loaded.diagnostics {
            eprintln!("{d:?}");
        }
        return Err("the inline plan does not validate".into());
    }
    let (Some(plan), Some(text)) = (loaded.plan, loaded.plan_text) else {
        return Err("the inline plan did not load".into());
    };

    let engine = Engine::start(EngineConfig {
        store: Arc::new(MemStore::new()),
        fabric: Arc::new(LoggingFabric::default()),
        scripts: ScriptRunner::default(),
        clock: Arc::new(SystemClock),
        max_concurrent_vm_ops: 8,
        inventory: loaded.inventory,
    })
    .await?;

    // Print what happens to every job.
    let mut updates = engine.subscribe_all();
    tokio::spawn(async move {
        while let Some(u) = updates.next().await {
            if let Update::Recorded(event) = &u.update {
                let status = u.status.map_or("?".into(), |s| s.to_string());
                println!("job {} [{status}]: {}", u.job, describe(event));
            }
        }
    });

    let op = Operation::failover(FailoverKind::Test);
    let job = engine
        .submit(Submission::new(plan, text, op, "embed-example"))
        .await?;
    let bounded = Duration::from_secs(60);
    let st = tokio::time::timeout(
        bounded,
        engine.wait_until(job, |s| s == JobStatus::AwaitingCleanup || s.is_terminal()),
    )
    .await??;
    if st != JobStatus::AwaitingCleanup {
        return Err(format!("the test ended as {st}").into());
    }
    println!("test failover {job} is open: complete it");
    engine
        .complete_test(job, "demo drill: all VMs came up", "embed-example")
        .await?;
    let st =
        tokio::time::timeout(bounded, engine.wait_until(job, JobStatus::is_terminal)).await??;
    println!("job {job}: {st}");
    engine.shutdown().await;
    if st == JobStatus::TestCompleted {
        Ok(())
    } else {
        Err(format!("the test ended as {st}").into())
    }
}

fn describe(event: &drplan_engine::core::JobEvent) -> String {
    use drplan_engine::core::JobEvent;
    match event {
        JobEvent::Submitted { spec, .. } => {
            format!("submitted {} of `{}`", spec.operation, spec.plan_name)
        }
        JobEvent::Started { .. } => "started".into(),
        JobEvent::StepFinished {
            step,
            outcome,
            output_tail,
            ..
        } => format!(
            "step {step}: {outcome:?}{}",
            output_tail
                .as_deref()
                .map(|t| format!(" — {}", t.lines().last().unwrap_or("")))
                .unwrap_or_default()
        ),
        other => format!("{other:?}"),
    }
}
