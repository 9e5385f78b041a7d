//! The group graph: `after` resolved to indices, self-dependencies and
//! cycles.
//!
//! Edges: `a → b` when `b` starts after `a`. A group without `after` comes
//! after the group before it in the file (the first group after none);
//! `after: []` starts at once.

use std::collections::{BTreeSet, HashMap, VecDeque};

use petgraph::graph::{DiGraph, NodeIndex};

use super::super::diag::{Pos, codes};
use super::super::file::GroupFile;
use super::{Ctx, pos};

/// Where a dependency was written: at an `after` entry, or implied by file
/// order (no `after`).
#[derive(Clone, Copy)]
enum Origin {
    Entry(Pos),
    Implicit,
}

/// Resolve every group's `after` to group indices (deduplicated, in the
/// order written), reporting unknown groups, self-dependencies and cycles.
pub(super) fn resolve(
    ctx: &mut Ctx,
    groups: &[GroupFile],
    by_name: &HashMap<&str, (usize, Pos)>,
) -> Vec<Vec<usize>> {
    let mut after: Vec<Vec<usize>> = Vec::with_capacity(groups.len());
    let mut origins: Vec<HashMap<usize, Origin>> = Vec::with_capacity(groups.len());
    for (i, g) in groups.iter().enumerate() {
        let mut deps = Vec::new();
        let mut origin = HashMap::new();
        match &g.after {
            None => {
                if i > 0 {
                    deps.push(i - 1);
                    origin.insert(i - 1, Origin::Implicit);
                }
            }
            Some(entries) => {
                for e in entries {
                    let name = e.value.as_str();
                    match by_name.get(name) {
                        None => {
                            ctx.error(
                                codes::UNKNOWN_GROUP,
                                pos(e),
                                format!(
                                    "group `{}` comes after `{name}`, but there is no group `{name}`",
                                    g.name.value
                                ),
                            )
                            .did_you_mean(
                                name,
                                groups.iter().map(|g| g.name.value.as_str()),
                                group_list(groups),
                            );
                        }
                        Some(&(j, _)) if j == i || name == g.name.value => {
                            ctx.error(
                                codes::SELF_DEPENDENCY,
                                pos(e),
                                format!("group `{name}` cannot come after itself"),
                            )
                            .hint("remove it from its own `after` list");
                        }
                        Some(&(j, _)) => {
                            if !deps.contains(&j) {
                                deps.push(j);
                                origin.insert(j, Origin::Entry(pos(e)));
                            }
                        }
                    }
                }
            }
        }
        after.push(deps);
        origins.push(origin);
    }

    for cycle in dependency_cycles(&after) {
        let first = cycle[0];
        let closing = *cycle.last().expect("a cycle has at least two groups");
        let mut names: Vec<&str> = cycle
            .iter()
            .map(|&i| groups[i].name.value.as_str())
            .collect();
        names.push(&groups[first].name.value);
        let message = format!(
            "groups depend on each other in a cycle: {}",
            names.join(" → ")
        );
        let explain = "`a → b` means `b` starts after `a`, so none of these groups could ever start; remove one of the dependencies";
        match origins[first].get(&closing) {
            Some(Origin::Entry(at)) => {
                ctx.error(codes::CYCLE, *at, message).hint(explain);
            }
            _ => {
                // The closing edge is implicit: the first group has no
                // `after`, so it comes after the group before it.
                ctx.error(codes::CYCLE, pos(&groups[first].name), message).hint(format!(
                    "group `{}` has no `after`, so it starts after the group before it, `{}`; {explain}",
                    groups[first].name.value, groups[closing].name.value
                ));
            }
        }
    }
    after
}

/// The plan's groups, for a hint, when there are few enough to read.
fn group_list(groups: &[GroupFile]) -> Option<String> {
    (groups.len() <= 10).then(|| {
        let names: Vec<String> = groups
            .iter()
            .map(|g| format!("`{}`", g.name.value))
            .collect();
        format!("the plan's groups are {}", super::and_list(&names))
    })
}

/// The dependency cycles of a group graph, where `after[i]` lists the
/// groups group `i` starts after (self-dependencies and out-of-range indices
/// are ignored: they are reported elsewhere).
///
/// Returns one cycle per strongly connected component of two or more groups,
/// ordered by its lowest group index. Each cycle starts at that group `s`
/// and lists groups in running order: every group starts after the one
/// before it, and `s` starts after the last one (the "closing" dependency,
/// an entry of `after[s]`). The cycle is a shortest one through `s`.
pub fn dependency_cycles(after: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = after.len();
    let mut graph: DiGraph<(), ()> = DiGraph::with_capacity(n, n);
    for _ in 0..n {
        graph.add_node(());
    }
    // successors[a] = groups that start after `a`, ascending for determinism.
    let mut successors: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    for (i, deps) in after.iter().enumerate() {
        for &d in deps {
            if d < n && d != i && successors[d].insert(i) {
                graph.add_edge(NodeIndex::new(d), NodeIndex::new(i), ());
            }
        }
    }
    let mut cycles: Vec<Vec<usize>> = petgraph::algo::tarjan_scc(&graph)
        .into_iter()
        .filter(|scc| scc.len() > 1)
        .filter_map(|scc| {
            let members: BTreeSet<usize> = scc.iter().map(|x| x.index()).collect();
            cycle_in(&members, &successors, after)
        })
        .collect();
    cycles.sort_by_key(|c| c[0]);
    cycles
}

/// A shortest cycle through the lowest group of a strongly connected
/// component: breadth-first from `s` along "starts after" edges inside the
/// component until reaching a group that `s` itself starts after.
fn cycle_in(
    members: &BTreeSet<usize>,
    successors: &[BTreeSet<usize>],
    after: &[Vec<usize>],
) -> Option<Vec<usize>> {
    let s = *members.first()?;
    let closes = |v: usize| v != s && after[s].contains(&v);
    let mut parent: HashMap<usize, usize> = HashMap::new();
    let mut queue = VecDeque::from([s]);
    let mut seen = BTreeSet::from([s]);
    while let Some(u) = queue.pop_front() {
        if closes(u) {
            let mut path = vec![u];
            let mut cur = u;
            while let Some(&p) = parent.get(&cur) {
                path.push(p);
                cur = p;
            }
            path.reverse();
            return Some(path);
        }
        for &v in &successors[u] {
            if members.contains(&v) && seen.insert(v) {
                parent.insert(v, u);
                queue.push_back(v);
            }
        }
    }
    None
}
