//! The group graph: `after` resolved to indices, self-dependencies and
//! cycles.
//!
//! Edges: `a → b` when `b` starts after `a`. A group without `after` comes
//! after the group before it in the file (the first group after none);
//! `after: []` starts at once.

use std::collections::{BTreeSet, HashMap, VecDeque};

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
                            // `origin` has the same keys as `deps`, hashed: a
                            // group after 50,000 others stays linear.
                            if let std::collections::hash_map::Entry::Vacant(v) = origin.entry(j) {
                                v.insert(Origin::Entry(pos(e)));
                                deps.push(j);
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
        let message = cycle_message(&cycle, groups);
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

/// Cycles longer than this are shown by their first and last groups.
const CYCLE_SHOWN: usize = 12;

/// "groups depend on each other in a cycle: a → b → c → a". A long cycle
/// (a 50,000-group ring) is summarized: its first groups, how many are left
/// out, its last groups and the closing one, so the message stays a line.
fn cycle_message(cycle: &[usize], groups: &[GroupFile]) -> String {
    let name = |i: usize| groups[i].name.value.as_str();
    let mut names: Vec<String> = Vec::with_capacity(CYCLE_SHOWN + 2);
    if cycle.len() <= CYCLE_SHOWN {
        names.extend(cycle.iter().map(|&i| name(i).to_string()));
        names.push(name(cycle[0]).to_string());
        return format!(
            "groups depend on each other in a cycle: {}",
            names.join(" → ")
        );
    }
    let (head, tail) = (CYCLE_SHOWN - 4, 3);
    names.extend(cycle[..head].iter().map(|&i| name(i).to_string()));
    names.push(format!("({} more)", cycle.len() - head - tail));
    names.extend(
        cycle[cycle.len() - tail..]
            .iter()
            .map(|&i| name(i).to_string()),
    );
    names.push(name(cycle[0]).to_string());
    format!(
        "{} groups depend on each other in a cycle: {}",
        cycle.len(),
        names.join(" → ")
    )
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
    // successors[a] = groups that start after `a`, ascending for determinism.
    let mut successors: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    for (i, deps) in after.iter().enumerate() {
        for &d in deps {
            if d < n && d != i {
                successors[d].insert(i);
            }
        }
    }
    let successors: Vec<Vec<usize>> = successors
        .into_iter()
        .map(|s| s.into_iter().collect())
        .collect();
    let mut cycles: Vec<Vec<usize>> = strongly_connected(&successors)
        .into_iter()
        .filter(|scc| scc.len() > 1)
        .filter_map(|scc| {
            let members: BTreeSet<usize> = scc.into_iter().collect();
            cycle_in(&members, &successors, after)
        })
        .collect();
    cycles.sort_by_key(|c| c[0]);
    cycles
}

/// The strongly connected components of the graph `edges` (`edges[v]` lists
/// the nodes `v` points to; every entry is below `edges.len()`), by Tarjan's
/// algorithm with an explicit stack.
///
/// Why not `petgraph::algo::tarjan_scc`: it recurses once per node of a
/// path, so a valid plan of ~90,000 groups chained by `after` overflowed the
/// main thread's stack. Here the depth of the search lives on the heap: the
/// memory is linear in the plan, and the call stack is constant whatever the
/// plan's shape.
pub(crate) fn strongly_connected(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    const UNSEEN: usize = usize::MAX;
    let n = edges.len();
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0usize; n];
    let mut on_stack = vec![false; n];
    let mut stack: Vec<usize> = Vec::new();
    // The search path: a node and how many of its edges were followed.
    let mut path: Vec<(usize, usize)> = Vec::new();
    let mut next_index = 0;
    let mut components = Vec::new();
    for root in 0..n {
        if index[root] != UNSEEN {
            continue;
        }
        path.push((root, 0));
        index[root] = next_index;
        low[root] = next_index;
        next_index += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut followed)) = path.last_mut() {
            if let Some(&w) = edges[v].get(*followed) {
                *followed += 1;
                if index[w] == UNSEEN {
                    index[w] = next_index;
                    low[w] = next_index;
                    next_index += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    path.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            // Every edge of `v` followed: `v` is done.
            path.pop();
            if let Some(&(parent, _)) = path.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                components.push(component);
            }
        }
    }
    components
}

/// A shortest cycle through the lowest group of a strongly connected
/// component: breadth-first from `s` along "starts after" edges inside the
/// component until reaching a group that `s` itself starts after.
fn cycle_in(
    members: &BTreeSet<usize>,
    successors: &[Vec<usize>],
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
