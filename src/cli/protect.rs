//! Protection management: `drplan protect`, `unprotect`, `vms`,
//! `recovery-points` and `capacity` (docs/protection.md).
//!
//! `protect` and `unprotect` submit a job over a synthetic plan built by
//! `drplan_engine::protect` and follow it like `run` does, printing the
//! initial replication's progress as it goes. `vms` and `recovery-points`
//! only read: they open the data directory's store (never creating one),
//! rebuild the simulated world saved in it, and resume nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use clap::Args;
use drplan_engine::core::Millis;
use drplan_engine::fabric::points::fmt_time;
use drplan_engine::fabric::sim::vm_policy;
use drplan_engine::fabric::{FabricState, SimConfig, SimFabric};
use drplan_engine::journal::Journal;
use drplan_engine::plan::model::Inventory;
use drplan_engine::protect::capacity::{self, CapacityInput};
use drplan_engine::protect::status::{VmStatus, vm_statuses};
use drplan_engine::protect::{self, ProtectJob, Schedule};
use drplan_engine::runtime::{DELTA_PREFIX, FULL_KEY, Submission};
use drplan_engine::store::{JobId, Store};

use super::engine_host::{self, Host, SimOptions, SimWorld};
use super::progress::{FollowFormat, Follower, duration, now_ms};
use super::run::{EngineOpts, default_by};
use super::{Exit, emit};

/// Where the inventory comes from: `--fabric`, else `$DRPLAN_FABRIC`.
fn inventory_path(given: Option<&Path>) -> Result<PathBuf, Exit> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    match std::env::var_os("DRPLAN_FABRIC") {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => {
            eprintln!(
                "drplan: which inventory? pass --fabric FILE (e.g. --fabric plans/fabric.yaml) or set DRPLAN_FABRIC"
            );
            Err(Exit::CouldNotRun)
        }
    }
}

/// Load and validate the inventory; problems are printed located.
fn load_inventory(path: &Path) -> Result<Inventory, Exit> {
    let (inv, _, diags) = drplan_engine::plan::load_fabric(path);
    match inv {
        Some(inv) => Ok(inv),
        None => {
            eprintln!("drplan: cannot use the inventory `{}`:", path.display());
            for d in diags {
                eprintln!("  {}:{}:{}: {}", d.file, d.line, d.column, d.message);
            }
            Err(Exit::Problems)
        }
    }
}

fn parse_bandwidth(s: &str) -> Result<f64, String> {
    let lower = s.trim().to_ascii_lowercase();
    let (num, factor) = if let Some(n) = lower.strip_suffix("gbps") {
        (n, 1000.0)
    } else if let Some(n) = lower.strip_suffix("mbps") {
        (n, 1.0)
    } else {
        (lower.as_str(), 1.0)
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v * factor),
        _ => Err(format!(
            "expected a positive bandwidth in Mbit/s, e.g. 1000, 100mbps or 1gbps, not `{s}`"
        )),
    }
}

/// `+DURATION` from now, or an RFC 3339 time.
fn parse_start(s: &str) -> Result<Millis, String> {
    if let Some(d) = s.strip_prefix('+') {
        let d = humantime::parse_duration(d)
            .map_err(|e| format!("`{s}`: expected +DURATION (e.g. +10m): {e}"))?;
        return Ok(now_ms().saturating_add(d.as_millis() as u64));
    }
    humantime::parse_rfc3339_weak(s)
        .map_err(|e| {
            format!("`{s}`: expected an RFC 3339 time (2026-11-27T02:00:00Z) or +DURATION: {e}")
        })
        .and_then(|t| {
            t.duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .map_err(|_| "a time before 1970".to_string())
        })
}

#[derive(Debug, Args)]
pub struct ProtectArgs {
    /// VMs to protect (or onboard, when the inventory marks them
    /// `replicated-externally`).
    #[arg(value_name = "VM")]
    pub vms: Vec<String>,
    /// Every VM of this source cloud (`SITE/CLOUD`) not yet protected.
    #[arg(long, value_name = "SITE/CLOUD")]
    pub cloud: Option<String>,
    /// Every VM of the inventory in a paired cloud not yet protected.
    #[arg(long)]
    pub all: bool,
    /// Start the initial replication at this time (RFC 3339, or +DURATION
    /// from now) instead of the policy's; the job waits for it on a durable
    /// timer. Wall-clock time: never scaled by --time-scale.
    #[arg(long, value_name = "TIME", value_parser = parse_start, conflicts_with = "now")]
    pub start_at: Option<Millis>,
    /// Start the initial replication now, even if the policy schedules it.
    #[arg(long)]
    pub now: bool,
    /// The simulated replication link in Mbit/s (`100`, `100mbps`, `1gbps`);
    /// kept with the data directory for later commands. Default 1 Gbit/s.
    #[arg(long, value_name = "MBPS", value_parser = parse_bandwidth)]
    pub bandwidth: Option<f64>,
    /// Who requests the job (default: $USER).
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
    /// Submit, print the job id and exit; `drplan resume JOB` follows it.
    #[arg(long)]
    pub detach: bool,
    #[command(flatten)]
    pub engine: EngineOpts,
}

#[derive(Debug, Args)]
pub struct UnprotectArgs {
    /// VMs to stop protecting.
    #[arg(value_name = "VM", required = true)]
    pub vms: Vec<String>,
    /// Delete the replica VMs (default: the policy's `delete_replica_on_disable`).
    #[arg(long, conflicts_with = "keep_replica")]
    pub delete_replica: bool,
    /// Keep the replica VMs (default: the policy's `delete_replica_on_disable`).
    #[arg(long)]
    pub keep_replica: bool,
    /// Do not ask for confirmation (deleting replicas asks on a terminal;
    /// never elsewhere).
    #[arg(long, short)]
    pub yes: bool,
    /// Who requests the job (default: $USER).
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
    #[command(flatten)]
    pub engine: EngineOpts,
}

pub fn protect(a: &ProtectArgs) -> Exit {
    match protect_inner(a) {
        Ok(e) | Err(e) => e,
    }
}

pub fn unprotect(a: &UnprotectArgs) -> Exit {
    match unprotect_inner(a) {
        Ok(e) | Err(e) => e,
    }
}

fn protect_inner(a: &ProtectArgs) -> Result<Exit, Exit> {
    a.engine.check_time_scale()?;
    let fabric_path = inventory_path(a.engine.fabric.as_deref())?;
    let inventory = load_inventory(&fabric_path)?;
    let selected =
        protect::select_vms(&inventory, &a.vms, a.cloud.as_deref(), a.all).map_err(|e| {
            eprintln!("drplan: {e}");
            Exit::CouldNotRun
        })?;
    let schedule = match (a.start_at, a.now) {
        (Some(t), _) => Schedule::At(t),
        (None, true) => Schedule::Now,
        (None, false) => Schedule::Policy,
    };
    let by = a.by.clone().unwrap_or_else(default_by);
    let dir = engine_host::data_dir(a.engine.data_dir.as_deref())?;
    let store = engine_host::open_store(&dir)?;
    let opts = SimOptions {
        time_scale: a.engine.time_scale,
        faults: None,
    };
    let world = SimWorld::load_with_bandwidth(&dir, &inventory, &opts, a.bandwidth)?;
    let abs_fabric = std::path::absolute(&fabric_path).unwrap_or(fabric_path.clone());
    let mut printer = a.engine.printer();
    printer.fabric = Some(fabric_path.clone());
    let rt = engine_host::runtime()?;
    let named_only = a.cloud.is_none() && !a.all;
    let detach = a.detach;
    Ok(rt.block_on(async move {
        let host = match Host::start(&dir, store, inventory.clone(), world).await {
            Ok(h) => h,
            Err(e) => return e,
        };
        // A cloud or --all means "what is not protected yet": VMs already
        // protected are reported and left alone. Named VMs go to the
        // journal as they are, which refuses a protected one by name.
        let mut vms = selected.clone();
        if !named_only {
            let journal = host.engine.journal().clone();
            // By state, so that 16 protected VMs make one line.
            let mut already: std::collections::BTreeMap<String, Vec<String>> = Default::default();
            vms.retain(|vm| {
                let state = journal
                    .item(vm)
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| protect::default_item(&inventory, vm));
                let keep = state == drplan_engine::core::item::ItemState::Unprotected;
                if !keep {
                    already
                        .entry(state.to_string())
                        .or_default()
                        .push(vm.clone());
                }
                keep
            });
            if printer.format == FollowFormat::Human && !printer.quiet {
                for (state, names) in &already {
                    let _ = emit(&format!("left alone, {state}: {}\n", names.join(", ")));
                }
            }
            if vms.is_empty() {
                let _ = emit("nothing to protect: every VM selected is protected or busy\n");
                host.stop().await;
                return Exit::Ok;
            }
        }
        let job = match protect::enable_job(&inventory, &vms, schedule, now_ms(), Some(abs_fabric))
        {
            Ok(j) => j,
            Err(e) => {
                eprintln!("drplan: {e}");
                host.stop().await;
                return Exit::CouldNotRun;
            }
        };
        submit_and_follow(host, job, &by, printer, detach).await
    }))
}

fn unprotect_inner(a: &UnprotectArgs) -> Result<Exit, Exit> {
    a.engine.check_time_scale()?;
    let fabric_path = inventory_path(a.engine.fabric.as_deref())?;
    let inventory = load_inventory(&fabric_path)?;
    let vms = protect::select_vms(&inventory, &a.vms, None, false).map_err(|e| {
        eprintln!("drplan: {e}");
        Exit::CouldNotRun
    })?;
    let delete = match (a.delete_replica, a.keep_replica) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    let abs_fabric = std::path::absolute(&fabric_path).unwrap_or(fabric_path.clone());
    let job = protect::disable_job(&inventory, &vms, delete, now_ms(), Some(abs_fabric)).map_err(
        |e| {
            eprintln!("drplan: {e}");
            Exit::CouldNotRun
        },
    )?;
    if let Some(question) = super::prompt::delete_replica_question(&job)
        && !super::prompt::confirm(&question, a.yes)
    {
        eprintln!("drplan: nothing done: protection stays enabled");
        return Err(Exit::Problems);
    }
    let by = a.by.clone().unwrap_or_else(default_by);
    let dir = engine_host::data_dir(a.engine.data_dir.as_deref())?;
    let store = engine_host::open_store(&dir)?;
    let opts = SimOptions {
        time_scale: a.engine.time_scale,
        faults: None,
    };
    let world = SimWorld::load(&dir, &inventory, &opts)?;
    let mut printer = a.engine.printer();
    printer.fabric = Some(fabric_path);
    let rt = engine_host::runtime()?;
    Ok(rt.block_on(async move {
        let host = match Host::start(&dir, store, inventory, world).await {
            Ok(h) => h,
            Err(e) => return e,
        };
        submit_and_follow(host, job, &by, printer, false).await
    }))
}

/// Submit a protect/unprotect job and follow it, printing initial
/// replication progress every second. A job whose initial replication is
/// scheduled later is left waiting on its durable timer (the command
/// returns at once; any later command that opens the data directory,
/// e.g. `drplan resume JOB`, carries on with it).
async fn submit_and_follow(
    host: Host,
    job: ProtectJob,
    by: &str,
    printer: super::progress::Printer,
    detach: bool,
) -> Exit {
    let updates = host.engine.subscribe_all();
    let op = job.operation;
    let n = job.plan.groups.first().map_or(0, |g| g.vms.len());
    let sub = Submission::new(job.plan.clone(), job.text.clone(), op, by);
    let id = match host.engine.submit(sub).await {
        Ok(j) => j,
        Err(e) => {
            eprintln!("drplan: cannot submit: {e}");
            host.stop().await;
            return Exit::Problems;
        }
    };
    let suffix = printer_suffix(&printer);
    match printer.format {
        FollowFormat::Human => {
            let mut out = format!(
                "job {id}: {op} of {} ({} -> {})\n",
                super::text::count(n, "VM"),
                job.plan.source,
                job.plan.target
            );
            if !printer.quiet {
                for note in &job.notes {
                    out.push_str(&format!("  {note}\n"));
                }
            }
            let _ = emit(&out);
        }
        FollowFormat::Json => {
            let v = serde_json::json!({
                "job": id, "event": "submitted", "operation": op.to_string(),
                "vms": job.plan.groups.first().map(|g| g.vms.iter().map(|v| v.name.clone()).collect::<Vec<_>>()),
                "scheduled_at": job.scheduled_at, "requested_by": by,
            });
            let _ = emit(&format!("{v}\n"));
        }
    }
    if let Some(at) = job.scheduled_at {
        // Let the wait step start, so that its timer is durable before the
        // process leaves.
        for _ in 0..100 {
            let waiting = host.engine.job(id).await.ok().flatten().is_some_and(|st| {
                st.steps.first().is_some_and(|s| {
                    matches!(s.state, drplan_engine::core::StepState::Running { .. })
                })
            });
            if waiting {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let msg = format!(
            "initial replication scheduled at {} (in {}): job {id} waits for it on a durable timer\n  follow it: drplan resume {id}{suffix}\n",
            fmt_time(at),
            duration(at.saturating_sub(now_ms()))
        );
        if printer.format == FollowFormat::Human {
            let _ = emit(&msg);
        }
        host.stop().await;
        return Exit::Ok;
    }
    if detach {
        host.stop().await;
        return Exit::Ok;
    }
    let fabric = host.world.fabric.clone();
    let human = printer.format == FollowFormat::Human && !printer.quiet;
    let json = printer.format == FollowFormat::Json;
    let ticker = tokio::spawn(async move {
        let mut last: std::collections::BTreeMap<String, u64> = Default::default();
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            for t in fabric.transfers() {
                let pct = (t.fraction * 100.0).floor() as u64;
                if last.get(&t.vm) == Some(&pct) {
                    continue;
                }
                last.insert(t.vm.clone(), pct);
                if json {
                    let v = serde_json::json!({
                        "job": id, "event": "progress", "vm": t.vm, "method": t.method,
                        "done_bytes": t.done_bytes, "total_bytes": t.total_bytes,
                        "fraction": t.fraction, "remaining_ms": t.remaining_ms,
                    });
                    let _ = emit(&format!("{v}\n"));
                } else if human {
                    let _ = emit(&format!(
                        "  .. initial replication of {}: {pct}% ({} / {} GB, {}), {} left\n",
                        t.vm,
                        t.done_bytes / 1_000_000_000,
                        t.total_bytes / 1_000_000_000,
                        t.method,
                        duration(t.remaining_ms)
                    ));
                }
            }
        }
    });
    let world = &host.world;
    let exit = Follower::new(host.engine.as_ref(), printer.clone())
        .follow(&[id], drplan_engine::api::Updates::Local(updates), &|| {
            world.save()
        })
        .await;
    ticker.abort();
    if printer.format == FollowFormat::Human && !printer.quiet && exit == Exit::Ok {
        let _ = emit(&format!("see replication health: drplan vms{suffix}\n"));
    }
    host.stop().await;
    exit
}

fn printer_suffix(p: &super::progress::Printer) -> String {
    let mut s = String::new();
    if let Some(d) = &p.data_dir {
        s.push_str(&format!(" --data-dir {}", d.display()));
    }
    if let Some(f) = &p.fabric {
        s.push_str(&format!(" --fabric {}", f.display()));
    }
    s
}

// ---------------------------------------------------------------------------
// Read-only views: vms, recovery-points

#[derive(Debug, Args)]
pub struct ReadArgs {
    /// The data directory (default: $DRPLAN_DATA_DIR, else the user's data
    /// directory + `/drplan`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The inventory (default: $DRPLAN_FABRIC).
    #[arg(long, value_name = "FILE")]
    pub fabric: Option<PathBuf>,
    /// Output format (each command using these options describes its own).
    #[arg(long, value_enum, default_value_t = super::validate::OutputFormat::Human)]
    pub format: super::validate::OutputFormat,
}

#[derive(Debug, Args)]
#[command(mut_arg("format", |a| a.help("Output format: a table of the VMs, or a JSON array \
    `[{\"vm\",\"cloud\",\"disk_gb\",\"declared\",\"state\",\"job\",\"replica\",\"health\",...}]`")))]
pub struct VmsArgs {
    #[command(flatten)]
    pub read: ReadArgs,
}

#[derive(Debug, Args)]
#[command(mut_arg("format", |a| a.help("Output format: the VM's recovery points as text, or JSON \
    `{\"vm\",\"state\",\"retention_hours\",\"health\",\"points\":[...]}`")))]
pub struct RecoveryPointsArgs {
    /// The VM.
    #[arg(value_name = "VM")]
    pub vm: String,
    #[command(flatten)]
    pub read: ReadArgs,
}

/// What the read-only views need: the inventory, the world and the items.
struct View {
    inventory: Inventory,
    fabric: SimFabric,
    statuses: Vec<VmStatus>,
}

fn view(r: &ReadArgs) -> Result<View, Exit> {
    let inventory = load_inventory(&inventory_path(r.fabric.as_deref())?)?;
    let dir = engine_host::data_dir(r.data_dir.as_deref())?;
    let now = now_ms();
    if !dir.exists() {
        // A fresh data directory: what the inventory declares. Never create
        // a store just to look.
        let fabric = SimFabric::new(&inventory, SimConfig::default(), Default::default());
        let inv = inventory.clone();
        let statuses = vm_statuses(
            &inventory,
            &fabric,
            &|vm| protect::default_item(&inv, vm),
            &[],
            now,
        );
        return Ok(View {
            inventory,
            fabric,
            statuses,
        });
    }
    let store = engine_host::open_store(&dir)?;
    let world = SimWorld::load(
        &dir,
        &inventory,
        &SimOptions {
            time_scale: 1.0,
            faults: None,
        },
    )?;
    let full = store.blob(FULL_KEY);
    let deltas = store.blobs_with_prefix(DELTA_PREFIX);
    match (full, deltas) {
        (Ok(full), Ok(deltas)) => {
            world
                .fabric
                .restore_from(full, deltas.into_iter().map(|(_, d)| d).collect())
                .map_err(|e| {
                    eprintln!("drplan: cannot read the simulated fabric in the store: {e}");
                    Exit::CouldNotRun
                })?;
        }
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("drplan: {e}");
            return Err(Exit::CouldNotRun);
        }
    }
    let journal = Journal::open(store.clone()).map_err(|e| {
        eprintln!("drplan: {e}");
        Exit::CouldNotRun
    })?;
    let leases: Vec<(String, JobId)> = journal.leases().map_err(|e| {
        eprintln!("drplan: {e}");
        Exit::CouldNotRun
    })?;
    let inv = inventory.clone();
    let item = |vm: &str| {
        journal
            .item(vm)
            .ok()
            .flatten()
            .unwrap_or_else(|| protect::default_item(&inv, vm))
    };
    let statuses = vm_statuses(&inventory, &world.fabric, &item, &leases, now);
    let fabric = std::sync::Arc::try_unwrap(world.fabric).unwrap_or_else(|arc| {
        // Nothing else holds it; rebuilding from a snapshot is the fallback.
        SimFabric::restore(
            &inventory,
            SimConfig::default(),
            arc.faults(),
            arc.snapshot(),
        )
        .expect("a snapshot of this inventory's world restores against it")
    });
    drop(journal);
    Ok(View {
        inventory,
        fabric,
        statuses,
    })
}

fn ago(now: Millis, t: Option<Millis>) -> String {
    match t {
        Some(t) => format!("{} ago", duration(now.saturating_sub(t))),
        None => "-".into(),
    }
}

pub fn vms(a: &VmsArgs) -> Exit {
    let v = match view(&a.read) {
        Ok(v) => v,
        Err(e) => return e,
    };
    if a.read.format == super::validate::OutputFormat::Json {
        let json = serde_json::to_string_pretty(&v.statuses).unwrap_or_default();
        return emit(&format!("{json}\n"));
    }
    let now = now_ms();
    let mut rows = vec![[
        "VM".to_string(),
        "STATE".into(),
        "JOB".into(),
        "REPLICA".into(),
        "LATEST POINT".into(),
        "APP-CONSISTENT".into(),
        "HEALTH".into(),
    ]];
    for s in &v.statuses {
        rows.push([
            s.vm.clone(),
            s.item.name().to_string(),
            s.job.map(|j| j.to_string()).unwrap_or_else(|| "-".into()),
            s.replica.clone().unwrap_or_else(|| "-".into()),
            ago(now, s.health.latest),
            ago(now, s.health.latest_app_consistent),
            if s.health.level == protect::health::Level::NotApplicable {
                format!("- ({})", s.health.reason)
            } else {
                format!("{} ({})", s.health.level, s.health.reason)
            },
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let external: Vec<&str> = v
        .statuses
        .iter()
        .filter(|s| s.state.contains("outside drplan"))
        .map(|s| s.vm.as_str())
        .collect();
    if !external.is_empty() {
        out.push_str(&format!(
            "replicated outside drplan (onboard with `drplan protect VM`): {}\n",
            external.join(", ")
        ));
    }
    out.push_str(&format!(
        "health: healthy = lag <= {}x the copy frequency; warning = up to {}x, or no recent app-consistent point; critical = beyond, or replication stopped/paused\n",
        protect::health::WARNING_INTERVALS,
        protect::health::CRITICAL_INTERVALS
    ));
    emit(&out)
}

pub fn recovery_points(a: &RecoveryPointsArgs) -> Exit {
    let v = match view(&a.read) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let Some(status) = v.statuses.iter().find(|s| s.vm == a.vm) else {
        let e = protect::select_vms(&v.inventory, std::slice::from_ref(&a.vm), None, false)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_else(|| format!("VM `{}` is not in the inventory", a.vm));
        eprintln!("drplan: {e}");
        return Exit::CouldNotRun;
    };
    let now = now_ms();
    let points = v.fabric.recovery_points(&a.vm, now).unwrap_or_default();
    let policy = v
        .inventory
        .vm(&a.vm)
        .and_then(|vm| vm_policy(&v.inventory, vm));
    if a.read.format == super::validate::OutputFormat::Json {
        let json = serde_json::json!({
            "vm": a.vm,
            "state": status.item.name(),
            "health": status.health,
            "retention_hours": policy.map(|p| p.retention_hours),
            "points": points,
        });
        return emit(&format!("{json:#}\n"));
    }
    let mut out = format!(
        "{}: {} — {} kept",
        a.vm,
        status.item,
        super::text::count(points.len(), "recovery point")
    );
    if let Some(p) = policy {
        out.push_str(&format!(
            " (policy {}: copy every {}, {} h retention{})",
            p.name,
            humantime::format_duration(p.copy_frequency),
            p.retention_hours,
            p.app_consistent_frequency
                .map(|f| format!(", app-consistent every {}", humantime::format_duration(f)))
                .unwrap_or_default()
        ));
    }
    out.push('\n');
    if points.is_empty() {
        out.push_str(&format!("  none: {}\n", status.health.reason));
    }
    for p in &points {
        out.push_str(&format!(
            "  {}  {}\n",
            fmt_time(p.at),
            if p.app_consistent {
                "app-consistent"
            } else {
                "crash-consistent"
            }
        ));
    }
    if !points.is_empty() {
        out.push_str(
            "  choose one for an unplanned failover: --recovery-point latest | latest-processed | latest-app-consistent | TIME\n",
        );
    }
    emit(&out)
}

// ---------------------------------------------------------------------------
// capacity

fn parse_rate(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, pct) = match t.strip_suffix('%') {
        Some(n) => (n, true),
        None => (t, false),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("expected a change rate like 5% or 0.05, not `{s}`"))?;
    let v = if pct { v / 100.0 } else { v };
    if v.is_finite() && (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "the change rate must be between 0% and 100%, not `{s}`"
        ))
    }
}

#[derive(Debug, Args)]
pub struct CapacityArgs {
    /// VMs to estimate for (default: every VM in a paired cloud).
    #[arg(value_name = "VM")]
    pub vms: Vec<String>,
    /// Every VM of this source cloud (`SITE/CLOUD`).
    #[arg(long, value_name = "SITE/CLOUD")]
    pub cloud: Option<String>,
    /// The inventory (default: $DRPLAN_FABRIC).
    #[arg(long, value_name = "FILE")]
    pub fabric: Option<PathBuf>,
    /// Share of the disks written per day: `5%` or `0.05`.
    #[arg(long, value_name = "RATE", default_value = "5%", value_parser = parse_rate)]
    pub change_rate: f64,
    /// The bandwidth available for replication (`100`, `100mbps`, `1gbps`).
    #[arg(long, value_name = "MBPS", default_value = "1000", value_parser = parse_bandwidth)]
    pub bandwidth: f64,
    /// Busy-hour factor over the average change rate.
    #[arg(long, value_name = "X", default_value_t = 3.0)]
    pub peak: f64,
    /// Also say what bandwidth finishes the initial copy within this window
    /// (e.g. `48h`).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub initial_window: Option<Duration>,
    /// Override the policy's copy frequency (30s, 5m or 15m).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub copy_frequency: Option<Duration>,
    /// Output format: the estimate as text, or JSON
    /// `{"input","policy","estimate"}`.
    #[arg(long, value_enum, default_value_t = super::validate::OutputFormat::Human)]
    pub format: super::validate::OutputFormat,
}

pub fn capacity(a: &CapacityArgs) -> Exit {
    match capacity_inner(a) {
        Ok(e) | Err(e) => e,
    }
}

fn capacity_inner(a: &CapacityArgs) -> Result<Exit, Exit> {
    let inventory = load_inventory(&inventory_path(a.fabric.as_deref())?)?;
    let all = a.vms.is_empty() && a.cloud.is_none();
    let vms = protect::select_vms(&inventory, &a.vms, a.cloud.as_deref(), all).map_err(|e| {
        eprintln!("drplan: {e}");
        Exit::CouldNotRun
    })?;
    // The policy of the selected VMs: one, or the estimate would mix
    // copy frequencies.
    let mut policy = None;
    for name in &vms {
        let vm = inventory.vm(name).expect("selected from the inventory");
        let Some(p) = vm_policy(&inventory, vm) else {
            eprintln!("drplan: VM `{name}` is in a cloud with no pairing or policy");
            return Err(Exit::CouldNotRun);
        };
        match policy {
            Some(q) if q != p => {
                eprintln!(
                    "drplan: the VMs use different policies ({} and {}): estimate one cloud at a time (--cloud)",
                    p_name(q),
                    p.name
                );
                return Err(Exit::CouldNotRun);
            }
            _ => policy = Some(p),
        }
    }
    let policy = policy.expect("at least one VM");
    let input = CapacityInput {
        disks_gb: vms
            .iter()
            .filter_map(|v| inventory.vm(v).map(|v| v.disk_gb))
            .collect(),
        daily_change: a.change_rate,
        copy_every: a.copy_frequency.unwrap_or(policy.copy_frequency),
        retention_hours: policy.retention_hours,
        compression: policy.compression,
        bandwidth_mbps: a.bandwidth,
        peak_factor: a.peak,
        initial_window: a.initial_window,
    };
    let e = capacity::estimate(&input).map_err(|e| {
        eprintln!("drplan: {e}");
        Exit::CouldNotRun
    })?;
    if a.format == super::validate::OutputFormat::Json {
        let json = serde_json::json!({ "input": input, "policy": policy.name, "estimate": e });
        return Ok(emit(&format!("{json:#}\n")));
    }
    let hd = |d: Duration| humantime::format_duration(Duration::from_secs(d.as_secs())).to_string();
    let mut out = format!(
        "capacity estimate for {} ({} GB of disks), policy {}: copy every {}, {} h retention, compression {}\n",
        super::text::count(e.vms, "VM"),
        e.total_disk_gb,
        policy.name,
        hd(input.copy_every),
        input.retention_hours,
        if input.compression {
            "on (x0.5)"
        } else {
            "off"
        }
    );
    out.push_str(&format!(
        "  initial replication: {:.0} GB to copy; {} at {} Mbit/s\n",
        e.initial_gb,
        hd(e.initial_time),
        a.bandwidth
    ));
    if let (Some(w), Some(mbps)) = (a.initial_window, e.initial_mbps_for_window) {
        out.push_str(&format!(
            "    to finish within {}: {:.0} Mbit/s\n",
            hd(w),
            mbps
        ));
    }
    out.push_str(&format!(
        "  delta replication: {:.1} GB changed per day ({:.1}%); {:.1} Mbit/s at busy hours (x{} peak), {:.0} MB per {} cycle\n",
        e.daily_change_gb,
        a.change_rate * 100.0,
        e.delta_mbps,
        a.peak,
        e.delta_per_cycle_mb,
        hd(input.copy_every)
    ));
    out.push_str(&format!(
        "  recovery points: about {:.1} GB of replica storage for {} h\n",
        e.recovery_point_storage_gb, input.retention_hours
    ));
    out.push_str(&if e.bandwidth_suffices {
        format!(
            "  {} Mbit/s carries the delta replication ({:.0}% of it at busy hours)\n",
            a.bandwidth,
            e.delta_mbps / a.bandwidth * 100.0
        )
    } else {
        format!(
            "  !! {} Mbit/s does NOT carry the delta replication: it needs {:.1} Mbit/s at busy hours\n",
            a.bandwidth, e.delta_mbps
        )
    });
    Ok(emit(&out))
}

fn p_name(p: &drplan_engine::plan::model::Policy) -> &str {
    &p.name
}
