//! Inventory rules: unique names, references between entities, and the
//! replication policy rules of the domain (copy frequency, retention,
//! app-consistent snapshots, authentication, port, initial replication, one
//! policy per host OS of a paired cloud).

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{Duration, UNIX_EPOCH};

use serde_saphyr::Spanned;

use super::super::diag::{Pos, codes};
use super::super::fabric_file::{
    FABRIC_FORMAT_VERSION, FabricFile, InitialReplicationFile, MappingFile, PairingFile,
    PolicyFile, VmFile,
};
use super::super::model::{
    Authentication, Cloud, CloudRef, Host, InitialReplication, Inventory, Mapping, Network, Nic,
    Pairing, Policy, ProtectionState, Site, Vm,
};
use super::{Ctx, pos, split_ref};

/// Allowed copy frequencies (Hyper-V Replica ships deltas at exactly these).
const COPY_FREQUENCIES: [Duration; 3] = [
    Duration::from_secs(30),
    Duration::from_secs(300),
    Duration::from_secs(900),
];
const MAX_RETENTION_HOURS: u32 = 24;
const PORT_CERTIFICATE: u16 = 8084;
const PORT_KERBEROS: u16 = 8083;

pub(super) fn validate(ctx: &mut Ctx, f: &FabricFile) -> Option<Inventory> {
    let v = f.drplan_fabric.value;
    if v != FABRIC_FORMAT_VERSION {
        let note = ctx.error(
            codes::VERSION,
            pos(&f.drplan_fabric),
            format!(
                "this drplan reads inventory format {FABRIC_FORMAT_VERSION}; this inventory is format {v}"
            ),
        );
        if v > FABRIC_FORMAT_VERSION {
            note.hint("upgrade drplan");
        } else {
            note.hint(format!("write `drplan-fabric: {FABRIC_FORMAT_VERSION}`"));
        }
    }

    let sites = sites(ctx, f);
    let networks = networks(ctx, f, &sites);
    let policies = policies(ctx, f);
    let pairings = pairings(ctx, f, &sites, &policies);
    let network_mappings = mappings(
        ctx,
        &f.network_mappings,
        MappingKind::Network,
        &sites,
        &networks,
    );
    let storage_mappings = mappings(
        ctx,
        &f.storage_mappings,
        MappingKind::Storage,
        &sites,
        &networks,
    );
    let vms = vms(ctx, f, &sites, &networks);

    if ctx.has_errors() {
        return None;
    }
    Some(Inventory {
        sites,
        networks,
        policies: policies.into_iter().flatten().collect(),
        pairings,
        network_mappings,
        storage_mappings,
        vms,
    })
}

/// Names in the inventory are free-form (they are the fabric's own names)
/// but must be usable in `site/name` references.
fn check_name(ctx: &mut Ctx, what: &str, s: &Spanned<String>) -> bool {
    let name = s.value.as_str();
    let problem = if name.trim().is_empty() {
        Some(format!("{what} is empty"))
    } else if name.contains('/') {
        Some(format!(
            "{what} `{name}` contains `/`, which separates names in `site/name` references"
        ))
    } else if name.trim() != name {
        Some(format!("{what} `{name}` starts or ends with spaces"))
    } else {
        None
    };
    match problem {
        None => true,
        Some(p) => {
            ctx.error(codes::FABRIC_BAD_VALUE, pos(s), p);
            false
        }
    }
}

/// `scope` completes the sentence, e.g. " in site `primary-vmm`".
fn duplicate(ctx: &mut Ctx, what: &str, scope: &str, s: &Spanned<String>, first: Pos) {
    let at = pos(s);
    ctx.error(
        codes::FABRIC_DUPLICATE,
        at,
        format!(
            "{what} `{}` is defined twice{scope} ({})",
            s.value,
            first_at(first, at)
        ),
    )
    .hint("names are unique here: remove or rename one");
}

/// "first on line 12", or "first at column 9" when both are on one line
/// (flow style: `[a, b, a]`).
fn first_at(first: Pos, at: Pos) -> String {
    if first.line == at.line {
        format!("first at column {} of this line", first.column)
    } else {
        format!("first on line {}", first.line)
    }
}

fn unknown_ref<'c>(
    ctx: &mut Ctx,
    at: Pos,
    message: String,
    name: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) {
    let candidates: Vec<&str> = candidates.into_iter().collect();
    // Without a close match, list the choices when there are few enough to read.
    let otherwise = match candidates.len() {
        0 => Some("there are none defined".to_string()),
        1 => Some(format!("the only choice is `{}`", candidates[0])),
        2..=10 => {
            let ticked: Vec<String> = candidates.iter().map(|c| format!("`{c}`")).collect();
            Some(format!("the choices are {}", super::and_list(&ticked)))
        }
        _ => None,
    };
    ctx.error(codes::FABRIC_UNKNOWN_REF, at, message)
        .did_you_mean(name, candidates.iter().copied(), otherwise);
}

fn sites(ctx: &mut Ctx, f: &FabricFile) -> Vec<Site> {
    let mut seen: HashMap<&str, Pos> = HashMap::new();
    let mut out = Vec::new();
    for s in &f.sites {
        check_name(ctx, "site name", &s.name);
        if let Some(&first) = seen.get(s.name.value.as_str()) {
            duplicate(ctx, "site", "", &s.name, first);
            continue;
        }
        seen.insert(&s.name.value, pos(&s.name));
        let mut clouds_seen: HashMap<&str, Pos> = HashMap::new();
        let mut hosts_seen: HashMap<&str, Pos> = HashMap::new();
        let mut clouds = Vec::new();
        for c in &s.clouds {
            check_name(ctx, "cloud name", &c.name);
            if let Some(&first) = clouds_seen.get(c.name.value.as_str()) {
                duplicate(
                    ctx,
                    "cloud",
                    &format!(" in site `{}`", s.name.value),
                    &c.name,
                    first,
                );
                continue;
            }
            clouds_seen.insert(&c.name.value, pos(&c.name));
            let mut hosts = Vec::new();
            for h in &c.hosts {
                check_name(ctx, "host name", &h.name);
                if h.os.value.trim().is_empty() {
                    ctx.error(
                        codes::FABRIC_BAD_VALUE,
                        pos(&h.os),
                        format!("host `{}` has an empty `os`", h.name.value),
                    )
                    .hint("name its OS version, e.g. `ws2012r2`: replication policies apply per OS version");
                }
                // Hosts are unique per site, not per cloud: the VMM server
                // knows a host once whichever cloud it serves.
                if let Some(&first) = hosts_seen.get(h.name.value.as_str()) {
                    duplicate(
                        ctx,
                        "host",
                        &format!(" in site `{}`", s.name.value),
                        &h.name,
                        first,
                    );
                    continue;
                }
                hosts_seen.insert(&h.name.value, pos(&h.name));
                hosts.push(Host {
                    name: h.name.value.clone(),
                    os: h.os.value.clone(),
                });
            }
            clouds.push(Cloud {
                name: c.name.value.clone(),
                hosts,
            });
        }
        let mut storage_seen: HashMap<&str, Pos> = HashMap::new();
        let mut storage = Vec::new();
        for st in &s.storage {
            check_name(ctx, "storage classification", st);
            if let Some(&first) = storage_seen.get(st.value.as_str()) {
                duplicate(
                    ctx,
                    "storage classification",
                    &format!(" in site `{}`", s.name.value),
                    st,
                    first,
                );
                continue;
            }
            storage_seen.insert(&st.value, pos(st));
            storage.push(st.value.clone());
        }
        out.push(Site {
            name: s.name.value.clone(),
            clouds,
            storage,
        });
    }
    out
}

fn site_names(sites: &[Site]) -> impl Iterator<Item = &str> {
    sites.iter().map(|s| s.name.as_str())
}

fn networks(ctx: &mut Ctx, f: &FabricFile, sites: &[Site]) -> Vec<Network> {
    let mut seen: HashMap<(&str, &str), Pos> = HashMap::new();
    let mut out = Vec::new();
    for n in &f.networks {
        check_name(ctx, "network name", &n.name);
        if !sites.iter().any(|s| s.name == n.site.value) {
            unknown_ref(
                ctx,
                pos(&n.site),
                format!(
                    "network `{}` is at site `{}`, which is not defined",
                    n.name.value, n.site.value
                ),
                &n.site.value,
                site_names(sites),
            );
        }
        let key = (n.site.value.as_str(), n.name.value.as_str());
        if let Some(&first) = seen.get(&key) {
            duplicate(
                ctx,
                "network",
                &format!(" in site `{}`", n.site.value),
                &n.name,
                first,
            );
            continue;
        }
        seen.insert(key, pos(&n.name));
        let mut subnets_seen: HashMap<&str, Pos> = HashMap::new();
        let mut subnets = Vec::new();
        for s in &n.subnets {
            check_name(ctx, "subnet name", &s.name);
            if let Some(&first) = subnets_seen.get(s.name.value.as_str()) {
                duplicate(
                    ctx,
                    "subnet",
                    &format!(" in network `{}`", n.name.value),
                    &s.name,
                    first,
                );
                continue;
            }
            subnets_seen.insert(&s.name.value, pos(&s.name));
            if let Some(c) = &s.cidr
                && !valid_cidr(&c.value)
            {
                ctx.error(
                    codes::FABRIC_BAD_VALUE,
                    pos(c),
                    format!(
                        "subnet `{}` has `cidr: {}`, which is not an address range",
                        s.name.value, c.value
                    ),
                )
                .hint("write an address and a prefix length, e.g. `10.1.2.0/24`");
            }
            subnets.push(s.name.value.clone());
        }
        out.push(Network {
            site: n.site.value.clone(),
            name: n.name.value.clone(),
            subnets,
        });
    }
    out
}

fn valid_cidr(text: &str) -> bool {
    let Some((addr, len)) = text.split_once('/') else {
        return false;
    };
    let Ok(len) = len.parse::<u8>() else {
        return false;
    };
    match addr.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => len <= 32,
        Ok(IpAddr::V6(_)) => len <= 128,
        Err(_) => false,
    }
}

/// Policies in file order; `None` for an invalid one (kept so indices stay
/// meaningful is not needed: lookups are by name).
fn policies(ctx: &mut Ctx, f: &FabricFile) -> Vec<Option<Policy>> {
    let mut seen: HashMap<&str, Pos> = HashMap::new();
    let mut out = Vec::new();
    for p in &f.policies {
        check_name(ctx, "policy name", &p.name);
        if let Some(&first) = seen.get(p.name.value.as_str()) {
            duplicate(ctx, "policy", "", &p.name, first);
            continue;
        }
        seen.insert(&p.name.value, pos(&p.name));
        out.push(policy(ctx, p));
    }
    out
}

fn policy(ctx: &mut Ctx, p: &PolicyFile) -> Option<Policy> {
    let name = p.name.value.as_str();
    let mut ok = true;

    let copy = &p.copy_frequency;
    let copy_frequency = match humantime::parse_duration(copy.value.trim()) {
        Ok(d) if COPY_FREQUENCIES.contains(&d) => Some(d),
        Ok(_) | Err(_) => {
            ctx.error(
                codes::POLICY_COPY_FREQUENCY,
                pos(copy),
                format!("policy `{name}` has `copy_frequency: {}`; replication ships changes every 30s, 5m or 15m, nothing else", copy.value),
            )
            .hint("choose 30s, 5m or 15m");
            None
        }
    };

    let retention_hours = p.retention_hours.as_ref().map_or(0, |r| r.value);
    if let Some(r) = &p.retention_hours
        && r.value > MAX_RETENTION_HOURS
    {
        ok = false;
        ctx.error(
            codes::FABRIC_BAD_VALUE,
            pos(r),
            format!("policy `{name}` keeps {} hours of recovery points; the most is {MAX_RETENTION_HOURS}", r.value),
        )
        .hint("use 0 to 24 (0 keeps only the latest point)");
    }

    let app_consistent_frequency = p.app_consistent_frequency.as_ref().and_then(|a| {
        let d = match humantime::parse_duration(a.value.trim()) {
            Ok(d) if d.as_secs() % 3600 == 0 && d.subsec_nanos() == 0 && (1..=12).contains(&(d.as_secs() / 3600)) => d,
            _ => {
                ctx.error(
                    codes::POLICY_APP_CONSISTENT,
                    pos(a),
                    format!("policy `{name}` has `app_consistent_frequency: {}`; it must be a whole number of hours from 1h to 12h", a.value),
                )
                .hint("e.g. `app_consistent_frequency: 4h`");
                return None;
            }
        };
        let hours = d.as_secs() / 3600;
        if retention_hours == 0 {
            ctx.error(
                codes::POLICY_APP_CONSISTENT,
                pos(a),
                format!("policy `{name}` takes app-consistent snapshots but keeps no recovery points (`retention_hours` is 0)"),
            )
            .hint("app-consistent snapshots are recovery points: raise `retention_hours` above the snapshot frequency, or remove `app_consistent_frequency`");
            return None;
        }
        if hours >= u64::from(retention_hours) {
            ctx.error(
                codes::POLICY_APP_CONSISTENT,
                pos(a),
                format!("policy `{name}` takes an app-consistent snapshot every {hours}h but keeps only {retention_hours}h of recovery points"),
            )
            .hint("the snapshot frequency must be below the retention window, or no snapshot is ever kept alongside another");
            return None;
        }
        Some(d)
    });
    if p.app_consistent_frequency.is_some() && app_consistent_frequency.is_none() {
        ok = false;
    }

    let authentication = match p.authentication.value.as_str() {
        "certificate" => Some(Authentication::Certificate),
        "kerberos" => Some(Authentication::Kerberos),
        other => {
            ctx.error(
                codes::POLICY_AUTH,
                pos(&p.authentication),
                format!("policy `{name}` has `authentication: {other}`; it must be `certificate` or `kerberos`"),
            )
            .did_you_mean(other, ["certificate", "kerberos"], Some("`certificate` uses HTTPS (port 8084), `kerberos` HTTP (port 8083)".into()));
            None
        }
    };

    let port = match &p.port {
        Some(port) => match u16::try_from(port.value) {
            Ok(v) if v != 0 => Some(v),
            _ => {
                ctx.error(
                    codes::POLICY_PORT,
                    pos(port),
                    format!(
                        "policy `{name}` has `port: {}`; a port is 1 to 65535",
                        port.value
                    ),
                )
                .hint("omit it for the default: 8084 with certificate, 8083 with kerberos");
                None
            }
        },
        None => authentication.map(|a| match a {
            Authentication::Certificate => PORT_CERTIFICATE,
            Authentication::Kerberos => PORT_KERBEROS,
        }),
    };

    let initial_replication = match &p.initial_replication {
        None => Some(InitialReplication::Network { start_at: None }),
        Some(i) => initial(ctx, name, i),
    };

    if !ok {
        return None;
    }
    Some(Policy {
        name: name.to_string(),
        host_os: p.host_os.value.clone(),
        copy_frequency: copy_frequency?,
        retention_hours,
        app_consistent_frequency,
        compression: p.compression,
        authentication: authentication?,
        port: port?,
        delete_replica_on_disable: p.delete_replica_on_disable,
        initial_replication: initial_replication?,
    })
}

fn initial(ctx: &mut Ctx, policy: &str, i: &InitialReplicationFile) -> Option<InitialReplication> {
    let mut err = |at: Pos, msg: String, hint: &str| {
        ctx.error(codes::POLICY_INITIAL, at, msg)
            .hint(hint.to_string());
    };
    match i.method.value.as_str() {
        "network" => {
            let mut ok = true;
            for (field, v) in [
                ("export_path", &i.export_path),
                ("import_path", &i.import_path),
            ] {
                if let Some(v) = v {
                    ok = false;
                    err(
                        pos(v),
                        format!(
                            "policy `{policy}`: `{field}` is for offline initial replication, but the method is `network`"
                        ),
                        "remove it, or use `method: offline`",
                    );
                }
            }
            let start_at = match &i.start {
                None => None,
                Some(s) if s.value == "now" => None,
                Some(s) => match humantime::parse_rfc3339_weak(s.value.trim()) {
                    Ok(t) => Some(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())),
                    Err(e) => {
                        ok = false;
                        err(
                            pos(s),
                            format!(
                                "policy `{policy}`: initial replication `start: {}` is not `now` or a time ({e})",
                                s.value
                            ),
                            "write `now`, or an RFC 3339 time such as `2026-12-01T02:00:00Z` (an off-peak hour)",
                        );
                        None
                    }
                },
            };
            ok.then_some(InitialReplication::Network { start_at })
        }
        "offline" => {
            let mut ok = true;
            if let Some(s) = &i.start {
                ok = false;
                err(
                    pos(s),
                    format!(
                        "policy `{policy}`: `start` is for network initial replication, but the method is `offline`"
                    ),
                    "an offline copy starts when it is imported; remove `start`",
                );
            }
            let mut path = |field: &str, v: &Option<Spanned<String>>| match v {
                Some(p) if !p.value.trim().is_empty() => Some(p.value.clone()),
                Some(p) => {
                    err(
                        pos(p),
                        format!("policy `{policy}`: `{field}` is empty"),
                        "give the folder path",
                    );
                    None
                }
                None => {
                    err(
                        pos(&i.method),
                        format!("policy `{policy}`: offline initial replication needs `{field}`"),
                        "offline replication exports the first copy at the primary (`export_path`) and imports it at the replica site (`import_path`)",
                    );
                    None
                }
            };
            let export_path = path("export_path", &i.export_path);
            let import_path = path("import_path", &i.import_path);
            if !ok {
                return None;
            }
            Some(InitialReplication::Offline {
                export_path: export_path?,
                import_path: import_path?,
            })
        }
        other => {
            ctx.error(
                codes::POLICY_INITIAL,
                pos(&i.method),
                format!("policy `{policy}` has initial replication `method: {other}`; it must be `network` or `offline`"),
            )
            .did_you_mean(other, ["network", "offline"], None);
            None
        }
    }
}

/// Resolve `site/cloud` to its site and cloud, reporting what is wrong.
fn resolve_cloud<'s>(
    ctx: &mut Ctx,
    field: &str,
    s: &Spanned<String>,
    sites: &'s [Site],
) -> Option<(&'s Site, &'s Cloud)> {
    let Some((site, cloud)) = split_ref(&s.value) else {
        ctx.error(
            codes::FABRIC_BAD_VALUE,
            pos(s),
            format!("{field} `{}` is not `site/cloud`", s.value),
        )
        .hint("e.g. `primary-vmm/gold`");
        return None;
    };
    let Some(site_v) = sites.iter().find(|x| x.name == site) else {
        unknown_ref(
            ctx,
            pos(s),
            format!(
                "{field} `{}` names site `{site}`, which is not defined",
                s.value
            ),
            site,
            site_names(sites),
        );
        return None;
    };
    let Some(cloud_v) = site_v.clouds.iter().find(|c| c.name == cloud) else {
        unknown_ref(
            ctx,
            pos(s),
            format!(
                "{field} `{}`: site `{site}` has no cloud `{cloud}`",
                s.value
            ),
            cloud,
            site_v.clouds.iter().map(|c| c.name.as_str()),
        );
        return None;
    };
    Some((site_v, cloud_v))
}

fn pairings(
    ctx: &mut Ctx,
    f: &FabricFile,
    sites: &[Site],
    policies: &[Option<Policy>],
) -> Vec<Pairing> {
    let mut by_source: HashMap<CloudRef, Pos> = HashMap::new();
    // Every policy name written, valid or not: a pairing naming a policy
    // that failed its own checks is not a second, unknown-reference error.
    let defined: Vec<&str> = f.policies.iter().map(|p| p.name.value.as_str()).collect();
    let mut out = Vec::new();
    for p in &f.pairings {
        if let Some(pairing) = pairing(ctx, p, sites, policies, &defined, &mut by_source) {
            out.push(pairing);
        }
    }
    out
}

fn pairing(
    ctx: &mut Ctx,
    p: &PairingFile,
    sites: &[Site],
    policies: &[Option<Policy>],
    all_known: &[&str],
    by_source: &mut HashMap<CloudRef, Pos>,
) -> Option<Pairing> {
    let source = resolve_cloud(ctx, "pairing source", &p.source, sites);
    let target = resolve_cloud(ctx, "pairing target", &p.target, sites);
    let cref = |(s, c): (&Site, &Cloud)| CloudRef {
        site: s.name.clone(),
        cloud: c.name.clone(),
    };
    let source_ref = source.map(cref);
    let target_ref = target.map(cref);
    if let (Some(s), Some(t)) = (&source_ref, &target_ref)
        && s == t
    {
        ctx.error(
            codes::FABRIC_BAD_VALUE,
            pos(&p.target),
            format!("cloud `{s}` is paired with itself"),
        )
        .hint("a replica must live in another cloud (of the same site, or of the recovery site)");
    }
    if let Some(s) = &source_ref {
        if let Some(first) = by_source.get(s) {
            ctx.error(
                codes::FABRIC_DUPLICATE,
                pos(&p.source),
                format!(
                    "cloud `{s}` is already paired as a source (line {})",
                    first.line
                ),
            )
            .hint("a cloud replicates to one target cloud; remove one of the pairings");
        } else {
            by_source.insert(s.clone(), pos(&p.source));
        }
    }

    // Policies: each exists, each is for an OS of the source cloud's hosts,
    // and each OS there has exactly one.
    let source_os: BTreeSet<&str> = source
        .map(|(_, c)| c.hosts.iter().map(|h| h.os.as_str()).collect())
        .unwrap_or_default();
    let mut os_policy: HashMap<&str, &str> = HashMap::new();
    let known: Vec<&str> = policies.iter().flatten().map(|p| p.name.as_str()).collect();
    let mut names = Vec::new();
    for r in &p.policies {
        names.push(r.value.clone());
        let Some(pol) = policies.iter().flatten().find(|x| x.name == r.value) else {
            if !all_known.contains(&r.value.as_str()) {
                unknown_ref(
                    ctx,
                    pos(r),
                    format!("pairing uses policy `{}`, which is not defined", r.value),
                    &r.value,
                    known.iter().copied(),
                );
            }
            continue;
        };
        let Some(src) = &source_ref else { continue };
        if !source_os.contains(pol.host_os.as_str()) {
            ctx.error(
                codes::POLICY_OS,
                pos(r),
                format!(
                    "policy `{}` is for hosts running `{}`, but no host of `{src}` runs it",
                    pol.name, pol.host_os
                ),
            )
            .hint(format!(
                "the hosts of `{src}` run {}",
                if source_os.is_empty() {
                    "nothing (it has no hosts)".to_string()
                } else {
                    super::and_list(
                        &source_os
                            .iter()
                            .map(|o| format!("`{o}`"))
                            .collect::<Vec<_>>(),
                    )
                }
            ));
        } else if let Some(other) = os_policy.get(pol.host_os.as_str()) {
            ctx.error(
                codes::POLICY_OS,
                pos(r),
                format!(
                    "policies `{other}` and `{}` are both for `{}` hosts of `{src}`",
                    pol.name, pol.host_os
                ),
            )
            .hint("a pairing has exactly one policy per host OS version; keep one");
        } else {
            os_policy.insert(&pol.host_os, &pol.name);
        }
    }
    if let Some(src) = &source_ref {
        for os in &source_os {
            if os_policy.contains_key(os) {
                continue;
            }
            // A policy that is misspelt, or exists but failed its own
            // checks, may be the one for this OS: do not pile a second error
            // on the one already reported.
            if p.policies
                .iter()
                .any(|r| !known.contains(&r.value.as_str()))
            {
                continue;
            }
            ctx.error(
                codes::POLICY_OS,
                pos(&p.source),
                format!("hosts of `{src}` run `{os}`, but the pairing has no policy for `{os}`"),
            )
            .hint(format!(
                "a policy applies to hosts of one OS version: add a policy with `host_os: {os}` to this pairing"
            ));
        }
    }
    Some(Pairing {
        source: source_ref?,
        target: target_ref?,
        policies: names,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum MappingKind {
    Network,
    Storage,
}

fn mappings(
    ctx: &mut Ctx,
    list: &[MappingFile],
    kind: MappingKind,
    sites: &[Site],
    networks: &[Network],
) -> Vec<Mapping> {
    let (what, example) = match kind {
        MappingKind::Network => ("network", "primary-vmm/corp"),
        MappingKind::Storage => ("storage classification", "primary-vmm/gold-ssd"),
    };
    let resolve = |ctx: &mut Ctx, field: &str, s: &Spanned<String>| -> Option<(String, String)> {
        let Some((site, name)) = split_ref(&s.value) else {
            ctx.error(
                codes::FABRIC_BAD_VALUE,
                pos(s),
                format!(
                    "{what} mapping {field} `{}` is not `site/{}`",
                    s.value,
                    what.replace(' ', "-")
                ),
            )
            .hint(format!("e.g. `{example}`"));
            return None;
        };
        let Some(site_v) = sites.iter().find(|x| x.name == site) else {
            unknown_ref(
                ctx,
                pos(s),
                format!(
                    "{what} mapping {field} `{}` names site `{site}`, which is not defined",
                    s.value
                ),
                site,
                site_names(sites),
            );
            return None;
        };
        let candidates: Vec<&str> = match kind {
            MappingKind::Network => networks
                .iter()
                .filter(|n| n.site == site)
                .map(|n| n.name.as_str())
                .collect(),
            MappingKind::Storage => site_v.storage.iter().map(String::as_str).collect(),
        };
        if !candidates.contains(&name) {
            unknown_ref(
                ctx,
                pos(s),
                format!(
                    "{what} mapping {field} `{}`: site `{site}` has no {what} `{name}`",
                    s.value
                ),
                name,
                candidates.iter().copied(),
            );
            return None;
        }
        Some((site.to_string(), name.to_string()))
    };
    let mut seen: HashMap<(String, String), Pos> = HashMap::new();
    let mut out = Vec::new();
    for m in list {
        let source = resolve(ctx, "source", &m.source);
        let target = resolve(ctx, "target", &m.target);
        if let Some(s) = &source {
            if let Some(first) = seen.get(s) {
                ctx.error(
                    codes::FABRIC_DUPLICATE,
                    pos(&m.source),
                    format!(
                        "{what} `{}` is mapped twice (first on line {})",
                        m.source.value, first.line
                    ),
                )
                .hint("a source maps to one target; remove one of the mappings");
            } else {
                seen.insert(s.clone(), pos(&m.source));
            }
        }
        if let (Some((source_site, source)), Some((target_site, target))) = (source, target) {
            out.push(Mapping {
                source_site,
                source,
                target_site,
                target,
            });
        }
    }
    out
}

fn vms(ctx: &mut Ctx, f: &FabricFile, sites: &[Site], networks: &[Network]) -> Vec<Vm> {
    let mut seen: HashMap<&str, Pos> = HashMap::new();
    let mut out = Vec::new();
    for v in &f.vms {
        check_name(ctx, "VM name", &v.name);
        if let Some(&first) = seen.get(v.name.value.as_str()) {
            duplicate(ctx, "VM", "", &v.name, first);
            continue;
        }
        seen.insert(&v.name.value, pos(&v.name));
        if let Some(vm) = vm(ctx, v, sites, networks) {
            out.push(vm);
        }
    }
    out
}

fn vm(ctx: &mut Ctx, v: &VmFile, sites: &[Site], networks: &[Network]) -> Option<Vm> {
    let name = v.name.value.as_str();
    let protection = match v.protection.value.as_str() {
        "unprotected" => Some(ProtectionState::Unprotected),
        "protected" => Some(ProtectionState::Protected),
        "replicated-externally" => Some(ProtectionState::ReplicatedExternally),
        other => {
            ctx.error(
                codes::FABRIC_BAD_VALUE,
                pos(&v.protection),
                format!("VM `{name}` has `protection: {other}`; it must be `unprotected`, `protected` or `replicated-externally`"),
            )
            .did_you_mean(other, ["unprotected", "protected", "replicated-externally"], None);
            None
        }
    };
    let Some(site) = sites.iter().find(|s| s.name == v.site.value) else {
        unknown_ref(
            ctx,
            pos(&v.site),
            format!(
                "VM `{name}` is at site `{}`, which is not defined",
                v.site.value
            ),
            &v.site.value,
            site_names(sites),
        );
        return None;
    };
    let mut ok = protection.is_some();
    match site.clouds.iter().find(|c| c.name == v.cloud.value) {
        None => {
            ok = false;
            unknown_ref(
                ctx,
                pos(&v.cloud),
                format!(
                    "VM `{name}` is in cloud `{}`, but site `{}` has no such cloud",
                    v.cloud.value, site.name
                ),
                &v.cloud.value,
                site.clouds.iter().map(|c| c.name.as_str()),
            );
        }
        Some(cloud) => {
            if !cloud.hosts.iter().any(|h| h.name == v.host.value) {
                ok = false;
                let elsewhere = site
                    .clouds
                    .iter()
                    .find(|c| c.hosts.iter().any(|h| h.name == v.host.value));
                match elsewhere {
                    Some(other) => {
                        ctx.error(
                            codes::FABRIC_UNKNOWN_REF,
                            pos(&v.host),
                            format!(
                                "VM `{name}` is on host `{}`, which is in cloud `{}`, not in its cloud `{}`",
                                v.host.value, other.name, cloud.name
                            ),
                        )
                        .hint(format!("set `cloud: {}`, or name a host of `{}`", other.name, cloud.name));
                    }
                    None => unknown_ref(
                        ctx,
                        pos(&v.host),
                        format!(
                            "VM `{name}` is on host `{}`, which cloud `{}` does not have",
                            v.host.value, cloud.name
                        ),
                        &v.host.value,
                        cloud.hosts.iter().map(|h| h.name.as_str()),
                    ),
                }
            }
        }
    }
    let mut nics = Vec::new();
    for nic in &v.nics {
        let net = networks
            .iter()
            .find(|n| n.site == site.name && n.name == nic.network.value);
        let Some(net) = net else {
            ok = false;
            unknown_ref(
                ctx,
                pos(&nic.network),
                format!(
                    "VM `{name}` has a NIC on network `{}`, which site `{}` does not have",
                    nic.network.value, site.name
                ),
                &nic.network.value,
                networks
                    .iter()
                    .filter(|n| n.site == site.name)
                    .map(|n| n.name.as_str()),
            );
            continue;
        };
        if let Some(sub) = &nic.subnet
            && !net.subnets.contains(&sub.value)
        {
            ok = false;
            unknown_ref(
                ctx,
                pos(sub),
                format!(
                    "VM `{name}` has a NIC on subnet `{}`, which network `{}` does not have",
                    sub.value, net.name
                ),
                &sub.value,
                net.subnets.iter().map(String::as_str),
            );
        }
        if let Some(ip) = &nic.ip
            && ip.parse::<IpAddr>().is_err()
        {
            ok = false;
            ctx.error(
                codes::FABRIC_BAD_VALUE,
                pos(&nic.network),
                format!("VM `{name}` has a NIC with `ip: {ip}`, which is not an IP address"),
            );
        }
        nics.push(Nic {
            network: nic.network.value.clone(),
            subnet: nic.subnet.as_ref().map(|s| s.value.clone()),
            ip: nic.ip.clone(),
        });
    }
    if let Some(st) = &v.storage
        && !site.storage.contains(&st.value)
    {
        ok = false;
        unknown_ref(
            ctx,
            pos(st),
            format!(
                "VM `{name}` uses storage classification `{}`, which site `{}` does not have",
                st.value, site.name
            ),
            &st.value,
            site.storage.iter().map(String::as_str),
        );
    }
    if !ok {
        return None;
    }
    Some(Vm {
        name: name.to_string(),
        site: site.name.clone(),
        cloud: v.cloud.value.clone(),
        host: v.host.value.clone(),
        nics,
        disk_gb: v.disk_gb.unwrap_or(0),
        storage: v.storage.as_ref().map(|s| s.value.clone()),
        protection: protection?,
    })
}
