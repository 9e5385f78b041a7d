//! Hosting the engine in a CLI process: open the data directory's store,
//! build the simulated fabric from the inventory, start the [`Engine`], and
//! shut it all down again when the command is done.
//!
//! The simulated world (the `SimFabric`) is persisted in the store itself:
//! the engine starts with [`Engine::start_persisting`], which restores the
//! world saved in the store (a full snapshot plus deltas) before any job
//! resumes, and writes each outcome's change to the world in the same atomic
//! batch as the outcome. So a planned failover halted by `run` and continued
//! by `drplan retry` in another process, or a process killed at any moment,
//! meets exactly the world its job log describes.
//!
//! The faults `run --inject` put in force are kept beside the store in
//! `sim-state.json` (with a best-effort copy of the world, used only when
//! the store holds none yet), so a `fail-once` still fires in the command
//! that reaches its step.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use drplan_engine::fabric::{FaultSet, SimConfig, SimFabric, SimState};
use drplan_engine::journal::{JobMeta, PlanRecord};
use drplan_engine::plan::model::{Inventory, Plan};
use drplan_engine::runtime::{Engine, EngineConfig, FabricPersistence, SystemClock};
use drplan_engine::script::{RunnerConfig, ScriptRunner};
use drplan_engine::store::sled_store::{SledStore, default_data_dir};
use drplan_engine::store::{JobId, Store, codec};

use super::Exit;

/// The snapshot of the simulated world, beside the store's own files.
const SIM_FILE: &str = "sim-state.json";
/// Per data directory: the shipped scripts keep their "already done for
/// this idempotency key" markers here, so job ids of another data
/// directory never collide with them.
const SCRIPTS_DIR: &str = "scripts";

/// A failure that ends the command: the message was already printed.
pub type Fail = Exit;

/// Resolve `--data-dir`, else `$DRPLAN_DATA_DIR`, else the default.
pub fn data_dir(given: Option<&Path>) -> Result<PathBuf, Fail> {
    match given {
        Some(d) => Ok(d.to_path_buf()),
        None => default_data_dir().map_err(|e| {
            eprintln!("drplan: {e}");
            Exit::CouldNotRun
        }),
    }
}

/// Open the store of `dir`. A store in use by another process is "could not
/// run" (exit 2) with the store's message; opening never waits for it.
pub fn open_store(dir: &Path) -> Result<Arc<SledStore>, Fail> {
    SledStore::open(dir).map(Arc::new).map_err(|e| {
        eprintln!("drplan: {e}");
        Exit::CouldNotRun
    })
}

/// The summary record of a job, read straight from the store.
pub fn job_meta(store: &dyn Store, job: JobId) -> Result<Option<JobMeta>, Fail> {
    let bytes = store.job_meta(job).map_err(|e| {
        eprintln!("drplan: {e}");
        Exit::CouldNotRun
    })?;
    bytes
        .map(|b| {
            codec::decode::<JobMeta>(&b).map_err(|e| {
                eprintln!("drplan: job {job}: damaged record: {e}");
                Exit::CouldNotRun
            })
        })
        .transpose()
}

/// Every job of the store, oldest first.
pub fn all_jobs(store: &dyn Store) -> Result<Vec<JobMeta>, Fail> {
    let rows = store.jobs().map_err(|e| {
        eprintln!("drplan: {e}");
        Exit::CouldNotRun
    })?;
    let mut metas = Vec::new();
    for (id, bytes) in rows {
        match codec::decode::<JobMeta>(&bytes) {
            Ok(m) => metas.push(m),
            Err(e) => {
                eprintln!("drplan: job {id}: damaged record: {e}");
                return Err(Exit::CouldNotRun);
            }
        }
    }
    metas.sort_by_key(|m| m.id);
    Ok(metas)
}

/// The validated plan a job runs, as the store keeps it (plan files may
/// have changed or gone since).
pub fn job_plan(store: &dyn Store, meta: &JobMeta) -> Result<Plan, Fail> {
    let text = store
        .text(&meta.model_key)
        .map_err(|e| {
            eprintln!("drplan: {e}");
            Exit::CouldNotRun
        })?
        .ok_or_else(|| {
            eprintln!(
                "drplan: job {}: its plan model is missing from the store",
                meta.id
            );
            Exit::CouldNotRun
        })?;
    let plan = codec::decode::<PlanRecord>(text.as_bytes())
        .map(|r| r.plan)
        .map_err(|e| {
            eprintln!("drplan: job {}: damaged plan model: {e}", meta.id);
            Exit::CouldNotRun
        })?;
    // Compiling an inconsistent (damaged) model would panic.
    plan.check().map_err(|e| {
        eprintln!("drplan: job {}: damaged plan model: {e}", meta.id);
        Exit::CouldNotRun
    })?;
    Ok(plan)
}

/// Load an inventory file for the simulated fabric: `--fabric` when given,
/// else the one the job's plan names.
pub fn load_inventory(given: Option<&Path>, plan: &Plan) -> Result<Inventory, Fail> {
    let Some(path) = given.or(plan.fabric_path.as_deref()) else {
        eprintln!(
            "drplan: plan `{}` names no inventory; pass --fabric FILE (the one it ran with)",
            plan.name
        );
        return Err(Exit::CouldNotRun);
    };
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

/// How to build the simulated fabric.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub time_scale: f64,
    /// `Some`: the faults of a new `run` (replacing the saved ones); `None`:
    /// keep the faults in force (an operator command continuing a job).
    pub faults: Option<FaultSet>,
}

/// What the snapshot file holds: the world and the faults in force, so an
/// injected `fail-once` still fires in the command that reaches its step.
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedWorld {
    state: SimState,
    faults: FaultSet,
}

/// The simulated world of a data directory and where it is saved.
pub struct SimWorld {
    pub fabric: Arc<SimFabric>,
    file: PathBuf,
}

impl SimWorld {
    /// The world saved in `dir`, or a fresh one from the inventory. A
    /// snapshot that no longer fits the inventory is an error rather than a
    /// silent fresh start (VMs failed over in it would be forgotten).
    pub fn load(dir: &Path, inventory: &Inventory, opts: &SimOptions) -> Result<SimWorld, Fail> {
        let file = dir.join(SIM_FILE);
        let config = SimConfig::default().with_time_scale(opts.time_scale);
        let fabric = match std::fs::read(&file) {
            Ok(bytes) => {
                let saved: SavedWorld = serde_json::from_slice(&bytes).map_err(|e| {
                    eprintln!("drplan: damaged simulated fabric `{}`: {e}", file.display());
                    Exit::CouldNotRun
                })?;
                let faults = opts.faults.clone().unwrap_or(saved.faults);
                SimFabric::restore(inventory, config, faults, saved.state).map_err(|e| {
                    eprintln!(
                        "drplan: the simulated fabric `{}` does not fit the inventory: {e}",
                        file.display()
                    );
                    Exit::CouldNotRun
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                SimFabric::new(inventory, config, opts.faults.clone().unwrap_or_default())
            }
            Err(e) => {
                eprintln!("drplan: cannot read `{}`: {e}", file.display());
                return Err(Exit::CouldNotRun);
            }
        };
        Ok(SimWorld {
            fabric: Arc::new(fabric),
            file,
        })
    }

    /// Write the world (temporary file + rename, so a reader never sees half
    /// a snapshot). Failures are reported, not fatal: the store holds the
    /// job's truth.
    pub fn save(&self) {
        let saved = SavedWorld {
            state: self.fabric.snapshot(),
            faults: self.fabric.faults(),
        };
        let tmp = self.file.with_extension("json.tmp");
        let result = serde_json::to_vec(&saved)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &self.file));
        if let Err(e) = result {
            eprintln!(
                "drplan: warning: cannot save the simulated fabric to `{}`: {e}",
                self.file.display()
            );
        }
    }
}

/// A running engine over a data directory.
pub struct Host {
    pub engine: Engine,
    pub world: SimWorld,
}

impl Host {
    /// Start the engine: it resumes every unfinished job of the store.
    pub async fn start(
        dir: &Path,
        store: Arc<SledStore>,
        inventory: Inventory,
        world: SimWorld,
    ) -> Result<Host, Fail> {
        let scratch = dir.join(SCRIPTS_DIR);
        if let Err(e) = std::fs::create_dir_all(&scratch) {
            eprintln!("drplan: cannot create `{}`: {e}", scratch.display());
            return Err(Exit::CouldNotRun);
        }
        let mut config = RunnerConfig::from_process_env();
        config.scratch_dir = scratch.clone();
        config.inherited_env.retain(|(k, _)| k != "TMPDIR");
        config
            .inherited_env
            .push(("TMPDIR".into(), scratch.into_os_string()));
        let engine = Engine::start_persisting(
            EngineConfig {
                store,
                fabric: world.fabric.clone(),
                scripts: ScriptRunner::new(config),
                clock: Arc::new(SystemClock),
                max_concurrent_vm_ops: 8,
                inventory: Some(inventory),
            },
            FabricPersistence::new(world.fabric.clone()),
        )
        .await
        .map_err(|e| {
            eprintln!("drplan: cannot start the engine: {e}");
            Exit::CouldNotRun
        })?;
        Ok(Host { engine, world })
    }

    /// Stop the engine (in-flight attempts are dropped and re-issued by the
    /// next command) and save the simulated world.
    pub async fn stop(self) {
        // Bounded: a stuck script must not keep the prompt from returning.
        let _ = tokio::time::timeout(Duration::from_secs(10), self.engine.shutdown()).await;
        self.world.save();
    }
}

/// The async runtime of one command (two workers: scripts and VM
/// operations overlap, the machine is shared).
pub fn runtime() -> Result<tokio::runtime::Runtime, Fail> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("drplan: cannot start the async runtime: {e}");
            Exit::CouldNotRun
        })
}
