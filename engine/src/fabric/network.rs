//! The network-mapping rules (docs: `/work/shared/domain.md`, "Network
//! mapping rules"), as pure functions so every fabric applies them alike:
//!
//! - a replica NIC attaches to the target network mapped from its source
//!   network; without a mapping it attaches to no network, with a warning;
//! - on the target network, the subnet with the same name as the source
//!   subnet, else the target network's first subnet;
//! - mappings are read at every start, so a changed mapping re-attaches the
//!   replica the next time it starts;
//! - a test VM attaches every NIC to the plan's test network (same-name
//!   subnet, else first) or to none.

use serde::{Deserialize, Serialize};

use crate::plan::model::{Mapping, Network};

/// Where a NIC is (or was) attached: `None` network = no network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicState {
    pub network: Option<String>,
    pub subnet: Option<String>,
}

/// One NIC's attachment after an operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// 0-based NIC index, in the inventory's order.
    pub nic: usize,
    /// The site of the network (the site the VM copy runs at).
    pub site: String,
    /// `None`: attached to no network.
    pub network: Option<String>,
    pub subnet: Option<String>,
}

impl Attachment {
    pub fn state(&self) -> NicState {
        NicState {
            network: self.network.clone(),
            subnet: self.subnet.clone(),
        }
    }
}

/// The subnet a NIC gets on `target`: the one named like `source_subnet`,
/// else the first; `None` when the network has no subnets.
pub fn pick_subnet(target: &Network, source_subnet: Option<&str>) -> Option<String> {
    source_subnet
        .and_then(|s| target.subnets.iter().find(|t| t.as_str() == s))
        .or_else(|| target.subnets.first())
        .cloned()
}

fn nic_label(vm: &str, i: usize, count: usize) -> String {
    if count > 1 {
        format!("{vm} NIC {} of {count}", i + 1)
    } else {
        vm.to_string()
    }
}

/// The attachments of a replica starting at `target_site`, from the NICs of
/// the copy it replicates (`source_site`, `source_nics`), and the warnings an
/// operator must see.
pub fn replica_attachments(
    vm: &str,
    source_site: &str,
    source_nics: &[NicState],
    target_site: &str,
    mappings: &[Mapping],
    networks: &[Network],
) -> (Vec<Attachment>, Vec<String>) {
    let mut out = Vec::with_capacity(source_nics.len());
    let mut warnings = Vec::new();
    let n = source_nics.len();
    for (i, nic) in source_nics.iter().enumerate() {
        let none = Attachment {
            nic: i,
            site: target_site.to_string(),
            network: None,
            subnet: None,
        };
        let Some(src_net) = &nic.network else {
            // The source copy itself had no network: there is nothing to map.
            warnings.push(format!(
                "{} had no network at {source_site}: attached to no network",
                nic_label(vm, i, n)
            ));
            out.push(none);
            continue;
        };
        let mapping = mappings
            .iter()
            .find(|m| m.source_site == source_site && &m.source == src_net);
        let Some(m) = mapping else {
            warnings.push(format!(
                "no network mapping for {source_site}/{src_net}: {} attached to no network",
                nic_label(vm, i, n)
            ));
            out.push(none);
            continue;
        };
        if m.target_site != target_site {
            warnings.push(format!(
                "network mapping {source_site}/{src_net} -> {}/{} points at another site than the replica's ({target_site}): {} attached to no network",
                m.target_site,
                m.target,
                nic_label(vm, i, n)
            ));
            out.push(none);
            continue;
        }
        let Some(target) = networks
            .iter()
            .find(|t| t.site == target_site && t.name == m.target)
        else {
            warnings.push(format!(
                "network mapping {source_site}/{src_net} -> {target_site}/{} names a network the site does not have: {} attached to no network",
                m.target,
                nic_label(vm, i, n)
            ));
            out.push(none);
            continue;
        };
        out.push(Attachment {
            nic: i,
            site: target_site.to_string(),
            network: Some(target.name.clone()),
            subnet: pick_subnet(target, nic.subnet.as_deref()),
        });
    }
    (out, warnings)
}

/// The attachments of a test VM at `site`: every NIC on the test network
/// (same-name subnet, else first), or on none when the plan names none.
pub fn test_attachments(
    vm: &str,
    source_nics: &[NicState],
    site: &str,
    test_network: Option<&str>,
    networks: &[Network],
) -> (Vec<Attachment>, Vec<String>) {
    let mut warnings = Vec::new();
    let target = match test_network {
        None => None,
        Some(name) => {
            let found = networks.iter().find(|t| t.site == site && t.name == name);
            if found.is_none() {
                warnings.push(format!(
                    "test network `{name}` is not a network of {site}: test VM of {vm} attached to no network"
                ));
            }
            found
        }
    };
    let out = source_nics
        .iter()
        .enumerate()
        .map(|(i, nic)| Attachment {
            nic: i,
            site: site.to_string(),
            network: target.map(|t| t.name.clone()),
            subnet: target.and_then(|t| pick_subnet(t, nic.subnet.as_deref())),
        })
        .collect();
    (out, warnings)
}

/// "corp-dr/web, no network" for a summary line.
pub fn describe(attachments: &[Attachment]) -> String {
    if attachments.is_empty() {
        return "no NICs".to_string();
    }
    attachments
        .iter()
        .map(|a| match (&a.network, &a.subnet) {
            (Some(n), Some(s)) => format!("{n}/{s}"),
            (Some(n), None) => n.clone(),
            (None, _) => "no network".to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(site: &str, name: &str, subnets: &[&str]) -> Network {
        Network {
            site: site.into(),
            name: name.into(),
            subnets: subnets.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn subnet_same_name_else_first_else_none() {
        let n = net("s", "n", &["a", "b"]);
        assert_eq!(pick_subnet(&n, Some("b")).as_deref(), Some("b"));
        assert_eq!(pick_subnet(&n, Some("z")).as_deref(), Some("a"));
        assert_eq!(pick_subnet(&n, None).as_deref(), Some("a"));
        assert_eq!(pick_subnet(&net("s", "n", &[]), Some("a")), None);
    }
}
