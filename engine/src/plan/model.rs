//! The validated plan and inventory: what the engine runs. No spans, no
//! optional-with-defaults: every default is resolved, every reference checked.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The three failover kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailoverKind {
    /// A drill: test VMs from replicas; production and replication untouched.
    Test,
    /// Primary healthy: no data loss; stops at the first failure.
    Planned,
    /// Primary down: runs to completion, recording every failure.
    Unplanned,
}

impl FailoverKind {
    pub const ALL: [FailoverKind; 3] = [
        FailoverKind::Test,
        FailoverKind::Planned,
        FailoverKind::Unplanned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailoverKind::Test => "test",
            FailoverKind::Planned => "planned",
            FailoverKind::Unplanned => "unplanned",
        }
    }
}

impl fmt::Display for FailoverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FailoverKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "test" => Ok(FailoverKind::Test),
            "planned" => Ok(FailoverKind::Planned),
            "unplanned" => Ok(FailoverKind::Unplanned),
            other => Err(format!(
                "unknown failover kind `{other}` (expected test, planned or unplanned)"
            )),
        }
    }
}

/// Which way a failover goes. `Reverse` is a failback (after reverse
/// replication the secondary is the source).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    #[default]
    Forward,
    Reverse,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Forward => "forward",
            Direction::Reverse => "reverse",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `site/cloud`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CloudRef {
    pub site: String,
    pub cloud: String,
}

impl fmt::Display for CloudRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.site, self.cloud)
    }
}

/// When a step applies. Empty sets mean "any".
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct When {
    pub kinds: Vec<FailoverKind>,
    pub directions: Vec<Direction>,
}

impl When {
    pub fn applies(&self, kind: FailoverKind, direction: Direction) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&kind))
            && (self.directions.is_empty() || self.directions.contains(&direction))
    }
}

/// A script step's program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// argv, run without a shell.
    Argv(Vec<String>),
    /// run with `/bin/sh -c`.
    Shell(String),
}

/// What a manual step's timeout does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnTimeout {
    /// The step fails (and the error policy of the failover kind applies).
    #[default]
    Fail,
    /// The step is skipped and the plan goes on.
    Continue,
}

/// The action of a step, defaults resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepAction {
    Script {
        command: Command,
        timeout: Duration,
        retries: u32,
        retry_delay: Duration,
        env: BTreeMap<String, String>,
    },
    Manual {
        instructions: String,
        timeout: Option<Duration>,
        on_timeout: OnTimeout,
    },
    Wait {
        duration: Duration,
    },
}

impl StepAction {
    /// `script`, `manual` or `wait`: how timelines and reports name it.
    pub fn kind_name(&self) -> &'static str {
        match self {
            StepAction::Script { .. } => "script",
            StepAction::Manual { .. } => "manual",
            StepAction::Wait { .. } => "wait",
        }
    }
}

/// A validated step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub name: String,
    pub action: StepAction,
    pub when: When,
    pub optional: bool,
}

/// A VM of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupVm {
    pub name: String,
    pub optional: bool,
}

/// A validated group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    /// Resolved dependencies (the implicit "previous group" made explicit),
    /// as indices into [`Plan::groups`].
    pub after: Vec<usize>,
    pub vms: Vec<GroupVm>,
    pub pre: Vec<Step>,
    pub post: Vec<Step>,
}

/// Test failover settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestSettings {
    /// Target network for test VMs; `None` = no network.
    pub network: Option<String>,
    /// At most 14 days.
    pub max_duration: Duration,
    pub cleanup: Vec<Step>,
}

/// The longest a test failover may stay open.
pub const MAX_TEST_DURATION: Duration = Duration::from_secs(14 * 24 * 3600);

/// Default script timeout.
pub const DEFAULT_SCRIPT_TIMEOUT: Duration = Duration::from_secs(600);

/// Default delay between script attempts.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(10);

/// Commit policy after planned/unplanned failover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum CommitPolicy {
    #[default]
    Manual,
    AutoCommit {
        after: Duration,
    },
    AutoRollback {
        after: Duration,
    },
}

/// A validated plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub name: String,
    pub description: Option<String>,
    pub source: CloudRef,
    pub target: CloudRef,
    /// The directory of the plan file: scripts run there, relative paths resolve there.
    pub base_dir: PathBuf,
    /// The inventory file named by the plan (resolved), if any.
    pub fabric_path: Option<PathBuf>,
    /// Groups in file order.
    pub groups: Vec<Group>,
    pub test: TestSettings,
    pub commit: CommitPolicy,
    /// How [`crate::plan::compile`] lays out a failover of this plan. A
    /// plan model stored by a drplan before failover phases existed has no
    /// `layout` and reads as [`CompileLayout::Groups`]: its in-flight jobs
    /// recompile to the numbering their event logs refer to. A new model is
    /// [`CompileLayout::Phases`] (`Default`), and says so when stored.
    #[serde(
        default = "CompileLayout::stored_before_phases",
        skip_serializing_if = "CompileLayout::is_groups"
    )]
    pub layout: CompileLayout,
}

/// The shape of a compiled failover (docs/plan-format.md, "Failover
/// phases"). Part of the stored plan model, so that a job always recompiles
/// to the step numbering it was submitted with (ARCHITECTURE.md invariant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CompileLayout {
    /// drplan before failover phases: per group, `pre` steps, each VM's
    /// whole operation chain, `post` steps; groups in dependency order.
    /// Kept only so that jobs stored by that drplan resume correctly.
    Groups,
    /// Shutdown (every primary, front end first), Failover (every VM), then
    /// Boot group by group with the group's `pre` and `post` steps, as Azure
    /// Site Recovery and SRM run a recovery plan.
    #[default]
    Phases,
}

impl CompileLayout {
    /// What a stored plan model without a `layout` field was compiled with.
    pub fn stored_before_phases() -> CompileLayout {
        CompileLayout::Groups
    }

    pub fn is_groups(&self) -> bool {
        *self == CompileLayout::Groups
    }
}

impl Plan {
    /// Checks the structural facts compilation relies on and validation
    /// guarantees: every `after` index names another group of the plan.
    /// A plan read back from the store (a job's stored model) never went
    /// through validation again, so a damaged record must fail here rather
    /// than panic in [`crate::plan::compile`]; `journal` calls this before
    /// compiling a stored plan.
    pub fn check(&self) -> Result<(), String> {
        let n = self.groups.len();
        for (i, g) in self.groups.iter().enumerate() {
            if let Some(&d) = g.after.iter().find(|&&d| d >= n || d == i) {
                return Err(format!(
                    "group `{}` (index {i}) depends on group index {d}, but the plan has {}",
                    g.name,
                    crate::text::count(n, "group")
                ));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Inventory

/// Protection state of a VM as the inventory declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProtectionState {
    Unprotected,
    Protected,
    ReplicatedExternally,
}

/// Replication authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Authentication {
    Certificate,
    Kerberos,
}

/// How initial replication is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InitialReplication {
    /// Over the network; `start_at` is seconds since the Unix epoch, `None` = now.
    Network { start_at: Option<u64> },
    Offline {
        export_path: String,
        import_path: String,
    },
}

/// A validated replication policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub name: String,
    pub host_os: String,
    /// 30 s, 5 min or 15 min.
    pub copy_frequency: Duration,
    pub retention_hours: u32,
    pub app_consistent_frequency: Option<Duration>,
    pub compression: bool,
    pub authentication: Authentication,
    pub port: u16,
    pub delete_replica_on_disable: bool,
    pub initial_replication: InitialReplication,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub name: String,
    pub os: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cloud {
    pub name: String,
    pub hosts: Vec<Host>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    pub name: String,
    pub clouds: Vec<Cloud>,
    pub storage: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub site: String,
    pub name: String,
    /// Subnet names in order; the first is the default attachment.
    pub subnets: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pairing {
    pub source: CloudRef,
    pub target: CloudRef,
    pub policies: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nic {
    pub network: String,
    pub subnet: Option<String>,
    pub ip: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vm {
    pub name: String,
    pub site: String,
    pub cloud: String,
    pub host: String,
    pub nics: Vec<Nic>,
    pub disk_gb: u64,
    pub storage: Option<String>,
    pub protection: ProtectionState,
}

/// `site/name` -> `site/name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    pub source_site: String,
    pub source: String,
    pub target_site: String,
    pub target: String,
}

/// A validated fabric inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Inventory {
    pub sites: Vec<Site>,
    pub networks: Vec<Network>,
    pub policies: Vec<Policy>,
    pub pairings: Vec<Pairing>,
    pub network_mappings: Vec<Mapping>,
    pub storage_mappings: Vec<Mapping>,
    pub vms: Vec<Vm>,
}

impl Inventory {
    pub fn vm(&self, name: &str) -> Option<&Vm> {
        self.vms.iter().find(|v| v.name == name)
    }

    pub fn network(&self, site: &str, name: &str) -> Option<&Network> {
        self.networks
            .iter()
            .find(|n| n.site == site && n.name == name)
    }

    pub fn pairing(&self, source: &CloudRef) -> Option<&Pairing> {
        self.pairings.iter().find(|p| &p.source == source)
    }

    /// The target network mapped from `site/network`, if a mapping exists.
    pub fn mapped_network(&self, site: &str, network: &str) -> Option<&Mapping> {
        self.network_mappings
            .iter()
            .find(|m| m.source_site == site && m.source == network)
    }
}
