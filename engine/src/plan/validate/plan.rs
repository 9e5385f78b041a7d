//! Plan rules: version, names, source/target, groups, VMs, test and commit
//! settings. Steps are in `steps.rs`, the group graph in `graph.rs`.

use std::collections::HashMap;
use std::path::Path;

use super::super::diag::{Pos, codes};
use super::super::file::{CommitPolicyName, PLAN_FORMAT_VERSION, PlanFile, VmEntryFile};
use super::super::model::{
    CloudRef, CommitPolicy, DEFAULT_RETRY_DELAY, DEFAULT_SCRIPT_TIMEOUT, Group, GroupVm, Inventory,
    MAX_TEST_DURATION, Plan, TestSettings,
};
use super::steps::{Defaults, StepList};
use super::{Ctx, cloud_ref, pos};

pub(super) fn validate(
    ctx: &mut Ctx,
    file: &PlanFile,
    base_dir: &Path,
    inventory: Option<&Inventory>,
) -> Option<Plan> {
    version(ctx, file);
    ctx.check_name(
        codes::INVALID_NAME,
        "plan name",
        &file.name.value,
        pos(&file.name),
    );
    let (source, target) = source_target(ctx, file);
    let defaults = defaults(ctx, file);
    // The VMs are checked against the source cloud only when it exists in
    // the inventory: an unknown cloud is one error, not one per VM.
    let known_source = match (inventory, &source, &target) {
        (Some(inv), Some(s), Some(t)) => {
            super::cross::source_target(ctx, inv, s, pos(&file.source), t, pos(&file.target))
                .then_some(s)
        }
        _ => None,
    };

    let groups = &file.groups.value;
    if groups.is_empty() {
        ctx.error(codes::EMPTY_PLAN, pos(&file.groups), "the plan has no groups")
            .hint("add at least one group with the VMs to fail over, e.g. `groups: [{ name: web, vms: [web01] }]`");
    }

    // Group names: first occurrence wins for `after` lookups.
    let mut first_group: HashMap<&str, (usize, Pos)> = HashMap::new();
    for (i, g) in groups.iter().enumerate() {
        let name = g.name.value.as_str();
        ctx.check_name(codes::INVALID_NAME, "group name", name, pos(&g.name));
        match first_group.get(name) {
            Some(&(_, first)) => {
                ctx.error(
                    codes::DUPLICATE_GROUP,
                    pos(&g.name),
                    format!(
                        "group `{name}` is defined twice (first on line {})",
                        first.line
                    ),
                )
                .hint("group names are unique in a plan: rename one, or merge their VMs and steps");
            }
            None => {
                first_group.insert(name, (i, pos(&g.name)));
            }
        }
    }
    let afters = super::graph::resolve(ctx, groups, &first_group);

    // VMs: unique within a group, and in one group only (a VM fails over once).
    let mut vm_home: HashMap<&str, (usize, Pos)> =
        HashMap::with_capacity(groups.iter().map(|g| g.vms.len()).sum());
    // One map for every group, cleared between them: a plan has thousands
    // of small groups.
    let mut in_group: HashMap<&str, Pos> = HashMap::new();
    let mut vm_index = None;
    let mut model_groups = Vec::with_capacity(groups.len());
    for (gi, g) in groups.iter().enumerate() {
        let gname = g.name.value.as_str();
        if g.vms.is_empty() && g.pre.is_empty() && g.post.is_empty() {
            ctx.warning(
                codes::EMPTY_GROUP,
                pos(&g.name),
                format!("group `{gname}` has no VMs and no steps"),
            )
            .hint("it only orders the groups around it; add VMs or steps, or remove it");
        }
        in_group.clear();
        let mut vms = Vec::with_capacity(g.vms.len());
        for entry in &g.vms {
            let at = pos(entry);
            let (name, optional) = match &entry.value {
                VmEntryFile::Name(n) => (n.as_str(), false),
                VmEntryFile::Detailed(d) => (d.name.as_str(), d.optional),
            };
            if !ctx.check_name(codes::INVALID_NAME, "VM name", name, at) {
                continue;
            }
            if let Some(first) = in_group.get(name) {
                ctx.error(
                    codes::DUPLICATE_VM,
                    at,
                    format!(
                        "VM `{name}` is listed twice in group `{gname}` (first on line {})",
                        first.line
                    ),
                )
                .hint("remove the second entry");
                continue;
            }
            in_group.insert(name, at);
            if let Some(&(other, first)) = vm_home.get(name) {
                let other_name = &groups[other].name.value;
                ctx.error(
                    codes::VM_IN_TWO_GROUPS,
                    at,
                    format!(
                        "VM `{name}` is already in group `{other_name}` (line {}); a VM belongs to one group",
                        first.line
                    ),
                )
                .hint("a VM fails over once per plan: remove it from one of the groups");
                continue;
            }
            vm_home.insert(name, (gi, at));
            if let Some(inv) = inventory {
                let index = vm_index.get_or_insert_with(|| super::cross::VmIndex::new(inv));
                super::cross::vm(ctx, inv, index, name, at, known_source);
            }
            vms.push(GroupVm {
                name: name.to_string(),
                optional,
            });
        }
        let pre = super::steps::validate_list(
            ctx,
            &g.pre,
            &defaults,
            base_dir,
            StepList::Group {
                group: gname,
                phase: "pre",
            },
        );
        let post = super::steps::validate_list(
            ctx,
            &g.post,
            &defaults,
            base_dir,
            StepList::Group {
                group: gname,
                phase: "post",
            },
        );
        model_groups.push(Group {
            name: gname.to_string(),
            after: afters[gi].clone(),
            vms,
            pre,
            post,
        });
    }

    let test = test_settings(ctx, file, &defaults, base_dir, inventory, target.as_ref());
    let commit = commit(ctx, file);

    if ctx.has_errors() {
        return None;
    }
    Some(Plan {
        name: file.name.value.clone(),
        description: file.description.clone(),
        source: source?,
        target: target?,
        base_dir: base_dir.to_path_buf(),
        fabric_path: file.fabric.as_ref().map(|f| base_dir.join(&f.value)),
        groups: model_groups,
        layout: crate::plan::model::CompileLayout::default(),
        test,
        commit,
    })
}

fn version(ctx: &mut Ctx, file: &PlanFile) {
    let v = file.drplan.value;
    if v == PLAN_FORMAT_VERSION {
        return;
    }
    let at = pos(&file.drplan);
    if v > PLAN_FORMAT_VERSION {
        ctx.error(
            codes::VERSION,
            at,
            format!("this drplan reads plan format {PLAN_FORMAT_VERSION}; this plan is format {v}"),
        )
        .hint("upgrade drplan");
    } else {
        ctx.error(
            codes::VERSION,
            at,
            format!(
                "there is no plan format {v}; this drplan reads plan format {PLAN_FORMAT_VERSION}"
            ),
        )
        .hint(format!("write `drplan: {PLAN_FORMAT_VERSION}`"));
    }
}

fn source_target(ctx: &mut Ctx, file: &PlanFile) -> (Option<CloudRef>, Option<CloudRef>) {
    let mut parse = |field: &str, s: &serde_saphyr::Spanned<String>| {
        let r = cloud_ref(&s.value);
        if r.is_none() {
            ctx.error(
                codes::BAD_SITE_CLOUD,
                pos(s),
                format!("`{field}` must be `site/cloud`; `{}` is not", s.value),
            )
            .hint("name the management server and the cloud, e.g. `primary-vmm/gold`");
        }
        r
    };
    let source = parse("source", &file.source);
    let target = parse("target", &file.target);
    if let (Some(s), Some(t)) = (&source, &target)
        && s == t
    {
        ctx.error(
            codes::SAME_SOURCE_TARGET,
            pos(&file.target),
            format!("`source` and `target` are both `{s}`: a cloud cannot fail over to itself"),
        )
        .hint("`target` is the paired cloud at the recovery site");
    }
    (source, target)
}

fn defaults(ctx: &mut Ctx, file: &PlanFile) -> Defaults {
    let mut d = Defaults {
        script_timeout: DEFAULT_SCRIPT_TIMEOUT,
        manual_timeout: None,
        retries: 0,
        retry_delay: DEFAULT_RETRY_DELAY,
    };
    let Some(f) = &file.defaults else { return d };
    if let Some(t) = &f.script_timeout
        && let Some(t) = ctx.duration(
            "`defaults.script_timeout`",
            t,
            false,
            "every script would time out at once; omit it for the default of 10m",
        )
    {
        d.script_timeout = t;
    }
    if let Some(t) = &f.manual_timeout {
        d.manual_timeout = ctx.duration(
            "`defaults.manual_timeout`",
            t,
            false,
            "every manual step would time out at once; omit it to let operators take as long as needed",
        );
    }
    if let Some(r) = f.retries {
        d.retries = r;
    }
    if let Some(t) = &f.retry_delay
        && let Some(t) = ctx.duration("`defaults.retry_delay`", t, true, "")
    {
        d.retry_delay = t;
    }
    d
}

fn test_settings(
    ctx: &mut Ctx,
    file: &PlanFile,
    defaults: &Defaults,
    base_dir: &Path,
    inventory: Option<&Inventory>,
    target: Option<&CloudRef>,
) -> TestSettings {
    let mut t = TestSettings {
        network: None,
        max_duration: MAX_TEST_DURATION,
        cleanup: Vec::new(),
    };
    let Some(f) = &file.test else { return t };
    if let Some(m) = &f.max_duration
        && let Some(d) = ctx.duration(
            "`test.max_duration`",
            m,
            false,
            "a test needs time to be checked before it is completed; omit it for the maximum, 14d",
        )
    {
        if d > MAX_TEST_DURATION {
            ctx.error(
                codes::TEST_WINDOW,
                pos(m),
                format!("`test.max_duration` is `{}`, longer than 14 days", m.value),
            )
            .hint("a test failover may stay open at most 14 days; it is forcibly ended after that");
        } else {
            t.max_duration = d;
        }
    }
    if let Some(n) = &f.network {
        t.network = Some(n.value.clone());
        if let (Some(inv), Some(target)) = (inventory, target) {
            super::cross::test_network(ctx, inv, n, target);
        }
    }
    t.cleanup = super::steps::validate_list(ctx, &f.cleanup, defaults, base_dir, StepList::Cleanup);
    t
}

fn commit(ctx: &mut Ctx, file: &PlanFile) -> CommitPolicy {
    let Some(c) = &file.commit else {
        return CommitPolicy::Manual;
    };
    let after = c.after.as_ref().and_then(|a| {
        ctx.duration(
            "`commit.after`",
            a,
            false,
            "the window is the time to check the failed-over VMs before the policy acts",
        )
    });
    let policy_name = match c.policy.value {
        CommitPolicyName::None => "none",
        CommitPolicyName::AutoCommit => "auto-commit",
        CommitPolicyName::AutoRollback => "auto-rollback",
    };
    match (c.policy.value, &c.after) {
        (CommitPolicyName::None, Some(a)) => {
            ctx.warning(
                codes::NO_EFFECT,
                pos(a),
                "`commit.after` has no effect with `policy: none`: the operator commits by hand",
            )
            .hint("remove `after`, or choose `policy: auto-commit` or `policy: auto-rollback`");
            CommitPolicy::Manual
        }
        (CommitPolicyName::None, None) => CommitPolicy::Manual,
        (_, None) => {
            ctx.error(
                codes::MISSING_WINDOW,
                pos(&c.policy),
                format!(
                    "`policy: {policy_name}` needs `after`: how long after the failover it acts"
                ),
            )
            .hint("e.g. `after: 4h`");
            CommitPolicy::Manual
        }
        (CommitPolicyName::AutoCommit, Some(_)) => after
            .map(|after| CommitPolicy::AutoCommit { after })
            .unwrap_or_default(),
        (CommitPolicyName::AutoRollback, Some(_)) => after
            .map(|after| CommitPolicy::AutoRollback { after })
            .unwrap_or_default(),
    }
}
