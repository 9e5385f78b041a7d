//! Generated plans: large, valid, realistic plans and their inventories.
//!
//! The benchmark (`benches/plan.rs`) times the plan pipeline on a
//! 10,000-VM plan from here, and `plans/large.yaml` (with
//! `plans/large-fabric.yaml`) is [`shipped_large_plan`]'s output, checked by
//! `tests/shipped_plans.rs`. Generation is deterministic: the same
//! arguments always give byte-identical text, so the shipped files can be
//! compared with a fresh run and benchmark inputs never drift.
//!
//! The mix follows what big estates look like: most groups simply follow
//! the previous one, some fan in from several earlier groups, a few start at
//! once; a minority of groups carry scripts (bare commands such as `true`
//! and `echo`, which exist on every PATH, so the plan validates and runs
//! anywhere), an occasional manual or wait step; a few VMs are optional.
//! VMs sit on hosts of two OS versions, so the pairing needs one policy per
//! OS.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use super::model::{
    CloudRef, Command, CommitPolicy, FailoverKind, Group, GroupVm, Inventory, OnTimeout, Plan,
    Step, StepAction, TestSettings, When,
};

/// The inventory file a generated plan names in its `fabric:` key.
pub const LARGE_FABRIC_FILE: &str = "large-fabric.yaml";

/// Parameters of the shipped `plans/large.yaml`: 50 groups of 20 VMs.
pub const SHIPPED_GROUPS: usize = 50;
/// VMs per group of the shipped `plans/large.yaml`.
pub const SHIPPED_VMS_PER_GROUP: usize = 20;
/// Seed of the shipped `plans/large.yaml`.
pub const SHIPPED_SEED: u64 = 2026;

/// Script timeout set in the generated plan's `defaults`.
const DEFAULT_SCRIPT_TIMEOUT_SECS: u64 = 120;
/// Retry delay set in the generated plan's `defaults`.
const DEFAULT_RETRY_DELAY_SECS: u64 = 5;
/// Test window of the generated plan.
const TEST_WINDOW_SECS: u64 = 2 * 24 * 3600;

/// A generated plan, its inventory, and the validated plan it stands for.
#[derive(Debug, Clone)]
pub struct GeneratedPlan {
    /// The plan file (format v1). Its `fabric:` key names [`LARGE_FABRIC_FILE`]
    /// (or [`CHAIN_FABRIC_FILE`]).
    pub plan_yaml: String,
    /// The matching inventory file (format v1).
    pub fabric_yaml: String,
    /// What validating `plan_yaml` must give, every default resolved, with
    /// `base_dir` `.` and `fabric_path` the `fabric:` file (a loader sets
    /// both from the plan's real location). Lets a test check the validator
    /// against an independent construction, and lets the compile benchmark
    /// run without one.
    pub plan: Plan,
}

impl GeneratedPlan {
    /// The validated inventory of [`GeneratedPlan::fabric_yaml`]. An error
    /// (the parser's or the validator's findings) would be a generator bug.
    pub fn inventory(&self) -> Result<Inventory, String> {
        let file = super::yaml::parse(LARGE_FABRIC_FILE, self.fabric_yaml.as_bytes())
            .map_err(|e| format!("{e:?}"))?;
        let (inv, diags) = super::validate::validate_fabric(LARGE_FABRIC_FILE, &file);
        match inv {
            Some(inv) if diags.is_empty() => Ok(inv),
            _ => Err(format!("{diags:?}")),
        }
    }

    /// The plan with every pre/post step removed: each node a VM operation.
    pub fn vm_only(&self) -> Plan {
        let mut plan = self.plan.clone();
        for group in &mut plan.groups {
            group.pre.clear();
            group.post.clear();
        }
        plan
    }

    /// [`GeneratedPlan::vm_only`] with no test cleanup and no commit window:
    /// a planned failover of it runs to `Succeeded` with no operator and no
    /// script (what the runtime benches and load tests run).
    pub fn unattended(&self) -> Plan {
        let mut plan = self.vm_only();
        plan.test.cleanup.clear();
        plan.commit = CommitPolicy::Manual;
        plan
    }

    /// One [`GeneratedPlan::unattended`] plan per group, each holding that
    /// group alone (no dependency), named `{prefix}-{index:04}`: jobs over
    /// disjoint VMs that can all run at once.
    pub fn unattended_per_group(&self, prefix: &str) -> Vec<Plan> {
        let mut base = self.unattended();
        let groups = std::mem::take(&mut base.groups);
        groups
            .into_iter()
            .enumerate()
            .map(|(i, mut group)| {
                group.after.clear();
                Plan {
                    name: format!("{prefix}-{i:04}"),
                    groups: vec![group],
                    ..base.clone()
                }
            })
            .collect()
    }
}

/// The shipped `plans/large.yaml` and `plans/large-fabric.yaml`.
pub fn shipped_large_plan() -> GeneratedPlan {
    large_plan(SHIPPED_GROUPS, SHIPPED_VMS_PER_GROUP, SHIPPED_SEED)
}

/// xorshift64*: tiny, fast and plenty for picking a plausible mix; a
/// dependency on `rand` would tie the output to that crate's versions.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // The state must never be zero; mixing in a constant keeps seed 0 usable.
        let s = seed ^ 0x9E37_79B9_7F4A_7C15;
        Rng(if s == 0 { 0x9E37_79B9_7F4A_7C15 } else { s })
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`); the modulo bias is irrelevant here.
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// How a group's `after` is written.
enum After {
    /// No `after` key: the previous group (none for the first).
    Implicit,
    /// `after: [...]`, possibly empty; indices ascending.
    Explicit(Vec<usize>),
}

/// The subnets of the generated production network, in order.
const SUBNETS: [&str; 3] = ["db", "app", "web"];
/// Disk sizes to pick from, in GiB.
const DISKS: [u64; 6] = [40, 60, 80, 120, 250, 500];

/// Generate a plan of `groups` groups of `vms_per_group` VMs, and its
/// inventory, from `seed`. `groups` is at least 1.
pub fn large_plan(groups: usize, vms_per_group: usize, seed: u64) -> GeneratedPlan {
    let groups = groups.max(1);
    let mut rng = Rng::new(seed);
    let total_vms = groups * vms_per_group;
    let gw = digits(groups).max(3);
    let vw = digits(total_vms).max(5);

    let mut model_groups = Vec::with_capacity(groups);
    let mut afters = Vec::with_capacity(groups);
    for g in 0..groups {
        let name = format!("wave-{:0gw$}", g + 1);
        let after = if g == 0 {
            After::Implicit
        } else {
            let r = rng.below(100);
            if r < 45 {
                After::Implicit
            } else if r < 52 {
                // A group that starts at once, independent of the others.
                After::Explicit(Vec::new())
            } else {
                // Fan in from 1 to 3 groups among the last eight: keeps the
                // DAG deep and wide at once, as real estates are.
                let want = 1 + rng.below(3) as usize;
                let lo = g.saturating_sub(8);
                let mut deps = Vec::with_capacity(want);
                for _ in 0..want {
                    let d = lo + rng.below((g - lo) as u64) as usize;
                    if !deps.contains(&d) {
                        deps.push(d);
                    }
                }
                deps.sort_unstable();
                After::Explicit(deps)
            }
        };
        let resolved = match &after {
            After::Implicit => g.checked_sub(1).into_iter().collect(),
            After::Explicit(d) => d.clone(),
        };
        let vms = (0..vms_per_group)
            .map(|v| GroupVm {
                name: vm_name(g * vms_per_group + v, vw),
                optional: rng.chance(5),
            })
            .collect();
        let mut pre = Vec::new();
        if rng.chance(15) {
            pre.push(script(
                "pre-check",
                vec!["true".into()],
                pick_when(&mut rng),
                None,
            ));
        }
        let mut post = Vec::new();
        if rng.chance(20) {
            let retries = if rng.chance(50) { Some(2) } else { None };
            post.push(script(
                "notify",
                vec!["echo".into(), name.clone(), "is".into(), "up".into()],
                pick_when(&mut rng),
                retries,
            ));
        }
        if rng.chance(5) {
            post.push(Step {
                name: "confirm".into(),
                action: StepAction::Manual {
                    instructions: format!(
                        "Confirm that the services of {name} answer on the status dashboard."
                    ),
                    timeout: Some(Duration::from_secs(3600)),
                    on_timeout: OnTimeout::Continue,
                },
                // Drills are run unattended at night; only real failovers
                // wait for a person.
                when: When {
                    kinds: vec![FailoverKind::Planned, FailoverKind::Unplanned],
                    directions: Vec::new(),
                },
                optional: false,
            });
        }
        if rng.chance(5) {
            post.push(Step {
                name: "settle".into(),
                action: StepAction::Wait {
                    duration: Duration::from_secs(30),
                },
                when: When::default(),
                optional: false,
            });
        }
        model_groups.push(Group {
            name,
            after: resolved,
            vms,
            pre,
            post,
        });
        afters.push(after);
    }

    let plan = Plan {
        name: format!("bulk-{groups}x{vms_per_group}"),
        description: Some(format!(
            "Generated estate of {groups} groups of {vms_per_group} VMs (seed {seed})."
        )),
        source: CloudRef {
            site: "primary-vmm".into(),
            cloud: "bulk".into(),
        },
        target: CloudRef {
            site: "secondary-vmm".into(),
            cloud: "bulk-dr".into(),
        },
        base_dir: PathBuf::from("."),
        fabric_path: Some(PathBuf::from(LARGE_FABRIC_FILE)),
        groups: model_groups,
        layout: crate::plan::model::CompileLayout::default(),
        test: TestSettings {
            network: Some("test-bubble".into()),
            max_duration: Duration::from_secs(TEST_WINDOW_SECS),
            cleanup: Vec::new(),
        },
        commit: CommitPolicy::Manual,
    };

    let plan_yaml = render_plan(&plan, &afters, groups, vms_per_group, seed);
    let fabric_yaml = render_fabric(&mut rng, total_vms, vw);
    GeneratedPlan {
        plan_yaml,
        fabric_yaml,
        plan,
    }
}

/// The inventory file a [`chain_plan`] names in its `fabric:` key.
pub const CHAIN_FABRIC_FILE: &str = "chain-fabric.yaml";

/// A plan of `groups` groups (at least 1) in one long chain, each group
/// starting after the one before it, with one VM each; and its inventory.
///
/// The deepest dependency graph a plan of that size can have: the test of
/// "no algorithm recurses once per group" (`engine/tests/deep_plans.rs`,
/// `tests/deep_plans.rs`). Odd groups write `after: [previous]`, even ones
/// leave it implicit, so both spellings of a dependency are on the path.
/// The inventory is as small as a valid one can be (one host per site, VMs
/// without NICs), so 100,000 VMs stay well inside the file size limit.
pub fn chain_plan(groups: usize) -> GeneratedPlan {
    let groups = groups.max(1);
    let w = digits(groups);
    let group_name = |g: usize| format!("c{:0w$}", g + 1);
    let vm = |g: usize| format!("cvm-{:0w$}", g + 1);
    let plan = Plan {
        name: format!("chain-{groups}"),
        description: None,
        source: CloudRef {
            site: "primary-vmm".into(),
            cloud: "chain".into(),
        },
        target: CloudRef {
            site: "secondary-vmm".into(),
            cloud: "chain-dr".into(),
        },
        base_dir: PathBuf::from("."),
        fabric_path: Some(PathBuf::from(CHAIN_FABRIC_FILE)),
        layout: crate::plan::model::CompileLayout::default(),
        groups: (0..groups)
            .map(|g| Group {
                name: group_name(g),
                after: g.checked_sub(1).into_iter().collect(),
                vms: vec![GroupVm {
                    name: vm(g),
                    optional: false,
                }],
                pre: Vec::new(),
                post: Vec::new(),
            })
            .collect(),
        test: TestSettings {
            network: None,
            max_duration: Duration::from_secs(14 * 24 * 3600),
            cleanup: Vec::new(),
        },
        commit: CommitPolicy::Manual,
    };

    let mut plan_yaml = String::with_capacity(groups * (3 * w + 40) + 256);
    let _ = write!(
        plan_yaml,
        "# GENERATED by drplan_engine::plan::generate::chain_plan({groups}).\n\
         drplan: 1\n\
         name: {}\n\
         source: {}\n\
         target: {}\n\
         fabric: {CHAIN_FABRIC_FILE}\n\
         groups:\n",
        plan.name, plan.source, plan.target
    );
    for g in 0..groups {
        let _ = writeln!(plan_yaml, "  - name: {}", group_name(g));
        if g % 2 == 1 {
            let _ = writeln!(plan_yaml, "    after: [{}]", group_name(g - 1));
        }
        let _ = writeln!(plan_yaml, "    vms: [{}]", vm(g));
    }

    let mut fabric_yaml = String::with_capacity(groups * (w + 80) + 1024);
    fabric_yaml.push_str(
        "# GENERATED by drplan_engine::plan::generate::chain_plan.\n\
         drplan-fabric: 1\n\
         sites:\n  \
         - name: primary-vmm\n    clouds: [{ name: chain, hosts: [{ name: hv-c1, os: ws2012r2 }] }]\n  \
         - name: secondary-vmm\n    clouds: [{ name: chain-dr, hosts: [{ name: hv-r1, os: ws2012r2 }] }]\n\
         policies:\n  \
         - { name: chain, host_os: ws2012r2, copy_frequency: 5m, authentication: certificate }\n\
         pairings:\n  \
         - { source: primary-vmm/chain, target: secondary-vmm/chain-dr, policies: [chain] }\n\
         vms:\n",
    );
    for g in 0..groups {
        let _ = writeln!(
            fabric_yaml,
            "  - {{ name: {}, site: primary-vmm, cloud: chain, host: hv-c1, protection: protected }}",
            vm(g)
        );
    }
    GeneratedPlan {
        plan_yaml,
        fabric_yaml,
        plan,
    }
}

fn digits(n: usize) -> usize {
    n.max(1).ilog10() as usize + 1
}

fn vm_name(index: usize, width: usize) -> String {
    format!("bulk-{:0width$}", index + 1)
}

fn script(name: &str, argv: Vec<String>, when: When, retries: Option<u32>) -> Step {
    Step {
        name: name.into(),
        action: StepAction::Script {
            command: Command::Argv(argv),
            timeout: Duration::from_secs(DEFAULT_SCRIPT_TIMEOUT_SECS),
            retries: retries.unwrap_or(0),
            retry_delay: Duration::from_secs(DEFAULT_RETRY_DELAY_SECS),
            env: BTreeMap::new(),
        },
        when,
        optional: false,
    }
}

/// Half the scripts run always; the rest only for real failovers or only in
/// drills.
fn pick_when(rng: &mut Rng) -> When {
    let kinds = match rng.below(4) {
        0 | 1 => Vec::new(),
        2 => vec![FailoverKind::Planned, FailoverKind::Unplanned],
        _ => vec![FailoverKind::Test],
    };
    When {
        kinds,
        directions: Vec::new(),
    }
}

/// `30s`, `5m`, `2h`, `2d`: the largest unit that divides exactly.
fn duration_text(d: Duration) -> String {
    let s = d.as_secs();
    for (unit, secs) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if s >= secs && s.is_multiple_of(secs) {
            return format!("{}{unit}", s / secs);
        }
    }
    format!("{s}s")
}

fn render_plan(
    plan: &Plan,
    afters: &[After],
    groups: usize,
    vms_per_group: usize,
    seed: u64,
) -> String {
    let mut out = String::with_capacity(groups * (vms_per_group * 20 + 200) + 1024);
    // `write!` to a String cannot fail; the results are ignored on purpose.
    let _ = write!(
        out,
        "# yaml-language-server: $schema=./plan.schema.json\n\
         #\n\
         # GENERATED by drplan_engine::plan::generate::large_plan({groups}, {vms_per_group}, {seed}).\n\
         # Do not edit: regenerate with\n\
         #   DRPLAN_REGENERATE=1 cargo nextest run -p drplan-engine --test shipped_plans\n\
         #\n\
         # A large estate: {} VMs in {groups} waves with a mix of dependencies,\n\
         # scripts, manual and wait steps, and optional VMs.\n\
         drplan: 1\n\
         name: {}\n\
         description: \"{}\"\n\
         source: {}\n\
         target: {}\n\
         fabric: {LARGE_FABRIC_FILE}\n\
         \n\
         defaults:\n  script_timeout: {}\n  retry_delay: {}\n\
         \n\
         test:\n  network: test-bubble\n  max_duration: {}\n\
         \n\
         commit:\n  policy: none\n\
         \n\
         groups:\n",
        groups * vms_per_group,
        plan.name,
        plan.description.as_deref().unwrap_or_default(),
        plan.source,
        plan.target,
        duration_text(Duration::from_secs(DEFAULT_SCRIPT_TIMEOUT_SECS)),
        duration_text(Duration::from_secs(DEFAULT_RETRY_DELAY_SECS)),
        duration_text(plan.test.max_duration),
    );
    for (group, after) in plan.groups.iter().zip(afters) {
        let _ = writeln!(out, "  - name: {}", group.name);
        if let After::Explicit(deps) = after {
            let names: Vec<&str> = deps.iter().map(|&d| plan.groups[d].name.as_str()).collect();
            let _ = writeln!(out, "    after: [{}]", names.join(", "));
        }
        if !group.vms.is_empty() {
            out.push_str("    vms:\n");
            for vm in &group.vms {
                if vm.optional {
                    let _ = writeln!(out, "      - {{ name: {}, optional: true }}", vm.name);
                } else {
                    let _ = writeln!(out, "      - {}", vm.name);
                }
            }
        }
        for (key, steps) in [("pre", &group.pre), ("post", &group.post)] {
            if steps.is_empty() {
                continue;
            }
            let _ = writeln!(out, "    {key}:");
            for step in steps {
                render_step(&mut out, step);
            }
        }
    }
    out
}

fn render_step(out: &mut String, step: &Step) {
    let _ = writeln!(out, "      - name: {}", step.name);
    match &step.action {
        StepAction::Script {
            command, retries, ..
        } => {
            if let Command::Argv(argv) = command {
                let items: Vec<String> = argv.iter().map(|a| scalar(a)).collect();
                let _ = writeln!(out, "        run: [{}]", items.join(", "));
            }
            if *retries > 0 {
                let _ = writeln!(out, "        retries: {retries}");
            }
        }
        StepAction::Manual {
            instructions,
            timeout,
            on_timeout,
        } => {
            let _ = writeln!(out, "        manual: \"{instructions}\"");
            if let Some(t) = timeout {
                let _ = writeln!(out, "        timeout: {}", duration_text(*t));
            }
            if *on_timeout == OnTimeout::Continue {
                out.push_str("        on_timeout: continue\n");
            }
        }
        StepAction::Wait { duration } => {
            let _ = writeln!(out, "        wait: {}", duration_text(*duration));
        }
    }
    if !step.when.kinds.is_empty() {
        let kinds: Vec<&str> = step.when.kinds.iter().map(|k| k.as_str()).collect();
        let _ = writeln!(out, "        when: [{}]", kinds.join(", "));
    }
}

/// `text` as a YAML flow scalar: plain when that reads back as the same
/// string, double-quoted otherwise. `true` must be quoted: plain, it is a
/// boolean, which a schema checker rightly rejects as a program name.
fn scalar(text: &str) -> String {
    let reserved = ["true", "false", "null", "yes", "no", "on", "off", "~"];
    let plain = !text.is_empty()
        && text.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/' || c == '.')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        && !reserved.contains(&text.to_ascii_lowercase().as_str());
    if plain {
        text.to_string()
    } else {
        let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
        format!("\"{escaped}\"")
    }
}

/// The host OS of host `i` (0-based): one in four runs the newer OS, so the
/// pairing needs a policy for each.
fn host_os(i: usize) -> &'static str {
    if i % 4 == 3 { "ws2016" } else { "ws2012r2" }
}

fn render_fabric(rng: &mut Rng, total_vms: usize, vw: usize) -> String {
    // About 25 VMs per host, as a dense Hyper-V cluster would run.
    let hosts = total_vms.div_ceil(25).clamp(2, 999);
    let mut out = String::with_capacity(total_vms * 170 + hosts * 100 + 2048);
    out.push_str(
        "# yaml-language-server: $schema=./fabric.schema.json\n\
         #\n\
         # GENERATED together with large.yaml: the inventory of its VMs.\n\
         # Do not edit: regenerate with\n\
         #   DRPLAN_REGENERATE=1 cargo nextest run -p drplan-engine --test shipped_plans\n\
         drplan-fabric: 1\n\
         \n\
         sites:\n",
    );
    for (site, cloud, prefix, storage) in [
        ("primary-vmm", "bulk", "hv-b", "bulk-hdd"),
        ("secondary-vmm", "bulk-dr", "hv-r", "bulk-dr-hdd"),
    ] {
        let _ = write!(
            out,
            "  - name: {site}\n    clouds:\n      - name: {cloud}\n        hosts:\n"
        );
        for h in 0..hosts {
            let _ = writeln!(
                out,
                "          - {{ name: {prefix}{:03}, os: {} }}",
                h + 1,
                host_os(h)
            );
        }
        let _ = writeln!(out, "    storage: [{storage}]");
    }

    // Each subnet is a /16 so even a very large estate has addresses.
    out.push_str("\nnetworks:\n  - site: primary-vmm\n    name: corp\n    subnets:\n");
    for (i, s) in SUBNETS.iter().enumerate() {
        let _ = writeln!(out, "      - {{ name: {s}, cidr: 10.{}.0.0/16 }}", 31 + i);
    }
    out.push_str("  - site: secondary-vmm\n    name: corp-dr\n    subnets:\n");
    for (i, s) in SUBNETS.iter().enumerate() {
        let _ = writeln!(out, "      - {{ name: {s}, cidr: 10.{}.0.0/16 }}", 41 + i);
    }
    out.push_str(
        "  - site: secondary-vmm\n    name: test-bubble\n    subnets:\n      \
         - { name: isolated, cidr: 192.168.100.0/24 }\n",
    );

    let mut oses: Vec<&str> = (0..hosts).map(host_os).collect();
    oses.sort_unstable();
    oses.dedup();
    out.push_str("\npolicies:\n");
    for os in &oses {
        let _ = write!(
            out,
            "  - name: bulk-{os}\n    host_os: {os}\n    copy_frequency: 15m\n    \
             retention_hours: 8\n    app_consistent_frequency: 2h\n    compression: true\n    \
             authentication: certificate\n    port: 8084\n    initial_replication:\n      \
             method: network\n      start: now\n"
        );
    }
    let policies: Vec<String> = oses.iter().map(|os| format!("bulk-{os}")).collect();
    let _ = write!(
        out,
        "\npairings:\n  - source: primary-vmm/bulk\n    target: secondary-vmm/bulk-dr\n    \
         policies: [{}]\n\
         \n\
         network_mappings:\n  - source: primary-vmm/corp\n    target: secondary-vmm/corp-dr\n  \
         - source: secondary-vmm/corp-dr\n    target: primary-vmm/corp\n\
         \n\
         storage_mappings:\n  - source: primary-vmm/bulk-hdd\n    target: secondary-vmm/bulk-dr-hdd\n\
         \n",
        policies.join(", ")
    );
    out.push_str(if total_vms == 0 {
        "vms: []\n"
    } else {
        "vms:\n"
    });

    // Per-VM entries are kept compact (flow-style NICs, no per-VM storage:
    // the cloud's default applies) because a 10,000-VM inventory is the
    // largest file drplan is expected to read.
    let mut next_ip = [0usize; SUBNETS.len()];
    for v in 0..total_vms {
        let s = rng.below(SUBNETS.len() as u64) as usize;
        let n = next_ip[s];
        next_ip[s] += 1;
        let _ = write!(
            out,
            "  - name: {}\n    site: primary-vmm\n    cloud: bulk\n    host: hv-b{:03}\n    \
             protection: protected\n    disk_gb: {}\n    \
             nics: [{{ network: corp, subnet: {}, ip: 10.{}.{}.{} }}]\n",
            vm_name(v, vw),
            v % hosts + 1,
            DISKS[rng.below(DISKS.len() as u64) as usize],
            SUBNETS[s],
            31 + s,
            n / 254,
            n % 254 + 1,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::fabric_file::FabricFile;
    use crate::plan::file::PlanFile;

    #[test]
    fn deterministic_and_seed_sensitive() {
        let a = large_plan(20, 5, 7);
        let b = large_plan(20, 5, 7);
        assert_eq!(a.plan_yaml, b.plan_yaml);
        assert_eq!(a.fabric_yaml, b.fabric_yaml);
        assert_eq!(a.plan, b.plan);
        let c = large_plan(20, 5, 8);
        assert_ne!(a.plan_yaml, c.plan_yaml);
    }

    #[test]
    fn text_parses_and_matches_the_model() {
        let g = large_plan(40, 7, 3);
        let plan: PlanFile = serde_saphyr::from_str(&g.plan_yaml).expect("plan parses");
        let fabric: FabricFile = serde_saphyr::from_str(&g.fabric_yaml).expect("fabric parses");
        assert!(
            g.plan_yaml
                .starts_with("# yaml-language-server: $schema=./plan.schema.json\n")
        );
        assert_eq!(plan.groups.value.len(), 40);
        assert_eq!(fabric.vms.len(), 280);
        for (file_group, group) in plan.groups.value.iter().zip(&g.plan.groups) {
            assert_eq!(file_group.name.value, group.name);
            let names: Vec<String> = file_group
                .vms
                .iter()
                .map(|v| match &v.value {
                    crate::plan::file::VmEntryFile::Name(n) => n.clone(),
                    crate::plan::file::VmEntryFile::Detailed(d) => d.name.clone(),
                })
                .collect();
            let model: Vec<String> = group.vms.iter().map(|v| v.name.clone()).collect();
            assert_eq!(names, model);
            assert_eq!(file_group.pre.len(), group.pre.len());
            assert_eq!(file_group.post.len(), group.post.len());
        }
        // Every VM of the plan is in the inventory, on a host of its cloud.
        let hosts: Vec<&str> = fabric.sites[0].clouds[0]
            .hosts
            .iter()
            .map(|h| h.name.value.as_str())
            .collect();
        for (vm, group_vm) in fabric
            .vms
            .iter()
            .zip(g.plan.groups.iter().flat_map(|g| &g.vms))
        {
            assert_eq!(vm.name.value, group_vm.name);
            assert!(hosts.contains(&vm.host.value.as_str()));
        }
    }

    #[test]
    fn dependencies_point_backwards_and_mix_all_forms() {
        let g = large_plan(200, 1, 11);
        let mut implicit = 0;
        let mut roots = 0;
        let mut fan_in = 0;
        for (i, group) in g.plan.groups.iter().enumerate() {
            assert!(
                group.after.iter().all(|&d| d < i),
                "group {i} points forward"
            );
            match group.after.as_slice() {
                [] => roots += 1,
                [d] if *d + 1 == i => implicit += 1,
                _ => fan_in += 1,
            }
        }
        // With 200 groups each form occurs (the exact counts are the seed's).
        assert!(
            implicit > 50 && roots > 2 && fan_in > 20,
            "{implicit} {roots} {fan_in}"
        );
        let steps: usize = g
            .plan
            .groups
            .iter()
            .map(|g| g.pre.len() + g.post.len())
            .sum();
        assert!(steps > 20);
    }

    #[test]
    fn durations_render_in_the_largest_exact_unit() {
        assert_eq!(duration_text(Duration::from_secs(30)), "30s");
        assert_eq!(duration_text(Duration::from_secs(90)), "90s");
        assert_eq!(duration_text(Duration::from_secs(120)), "2m");
        assert_eq!(duration_text(Duration::from_secs(7200)), "2h");
        assert_eq!(duration_text(Duration::from_secs(2 * 86_400)), "2d");
    }

    #[test]
    fn scalars_that_would_change_meaning_are_quoted() {
        assert_eq!(scalar("echo"), "echo");
        assert_eq!(scalar("wave-001"), "wave-001");
        assert_eq!(scalar("true"), "\"true\"");
        assert_eq!(scalar("No"), "\"No\"");
        assert_eq!(scalar("1.5"), "\"1.5\"");
        assert_eq!(scalar("a b"), "\"a b\"");
        assert_eq!(scalar("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(scalar(""), "\"\"");
        let argv: Vec<String> =
            serde_saphyr::from_str(&format!("[{}, {}]", scalar("true"), scalar("a \"b\"")))
                .unwrap();
        assert_eq!(argv, ["true", "a \"b\""]);
    }

    #[test]
    fn zero_sizes_do_not_panic() {
        let g = large_plan(0, 0, 0);
        assert_eq!(g.plan.groups.len(), 1);
        let _: PlanFile = serde_saphyr::from_str(&g.plan_yaml).expect("plan parses");
        let _: FabricFile = serde_saphyr::from_str(&g.fabric_yaml).expect("fabric parses");
    }
}
