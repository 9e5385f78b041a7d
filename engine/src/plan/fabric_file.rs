//! Serde types that mirror the fabric inventory file (format v1): the
//! two-site world that validation and the simulated fabric use.
//!
//! Like [`super::file`], these are the file's shape, not the domain; see
//! [`crate::plan::model::Inventory`] for the validated form.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use super::file::{DURATION_PATTERN, SITE_CLOUD_PATTERN};

/// The inventory file format version this build reads.
pub const FABRIC_FORMAT_VERSION: u32 = 1;

/// A fabric inventory: sites, clouds, hosts, networks, replication policies,
/// pairings, mappings and VMs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "drplan fabric inventory (format v1)")]
pub struct FabricFile {
    /// Inventory format version. Must be `1`.
    #[serde(rename = "drplan-fabric")]
    // Not `const: 1`, for the reasons given on `PlanFile::drplan`.
    #[schemars(with = "u32", extend("examples" = [1]))]
    pub drplan_fabric: Spanned<u32>,
    /// Management servers (one VMM server per datacenter).
    pub sites: Vec<SiteFile>,
    /// VM networks, per site, with their named subnets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<NetworkFile>,
    /// Replication policies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<PolicyFile>,
    /// Cloud pairings: source cloud -> target cloud under a policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pairings: Vec<PairingFile>,
    /// Network mappings: source VM network -> target VM network (`site/network`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_mappings: Vec<MappingFile>,
    /// Storage mappings: source storage classification -> target classification.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub storage_mappings: Vec<MappingFile>,
    /// The VMs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vms: Vec<VmFile>,
}

/// A site: one management server and its clouds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteFile {
    /// Site name (the management server), unique.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// Clouds of the site.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clouds: Vec<CloudFile>,
    /// Storage classifications of the site.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<String>")]
    pub storage: Vec<Spanned<String>>,
}

/// A cloud: a named pool of hypervisor hosts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloudFile {
    /// Cloud name, unique in its site.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// Hosts of the cloud.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostFile>,
}

/// A hypervisor host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostFile {
    /// Host name, unique in its site.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// Host OS version, e.g. `ws2012r2`; a policy applies to one OS version.
    #[schemars(with = "String")]
    pub os: Spanned<String>,
}

/// A VM network of a site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkFile {
    /// The site the network belongs to.
    #[schemars(with = "String")]
    pub site: Spanned<String>,
    /// Network name, unique in its site.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// Named subnets, in order (the first is the default attachment).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<SubnetFile>,
}

/// A subnet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubnetFile {
    /// Subnet name, unique in its network.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// Address range in CIDR form, e.g. `10.1.2.0/24`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub cidr: Option<Spanned<String>>,
}

/// A replication policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Policy name, unique.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// The host OS version the policy applies to.
    #[schemars(with = "String")]
    pub host_os: Spanned<String>,
    /// How often deltas ship: exactly `30s`, `5m` or `15m`.
    #[schemars(with = "String", extend("pattern" = DURATION_PATTERN, "examples" = ["5m", "30s", "15m"]))]
    pub copy_frequency: Spanned<String>,
    /// Hours of recovery points kept (default 0 = only the latest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<u32>")]
    pub retention_hours: Option<Spanned<u32>>,
    /// App-consistent snapshot frequency: `1h` to `12h`, below the retention window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", extend("pattern" = DURATION_PATTERN, "examples" = ["1h", "4h"]))]
    pub app_consistent_frequency: Option<Spanned<String>>,
    /// Compress data in transit.
    #[serde(default)]
    pub compression: bool,
    /// `certificate` (HTTPS, port 8084 by default) or `kerberos` (HTTP, port 8083 by default).
    #[schemars(with = "String", extend("enum" = ["certificate", "kerberos"]))]
    pub authentication: Spanned<String>,
    /// Replication port; defaults by authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<u32>")]
    pub port: Option<Spanned<u32>>,
    /// Delete the replica VM when protection is disabled.
    #[serde(default)]
    pub delete_replica_on_disable: bool,
    /// Initial replication method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_replication: Option<InitialReplicationFile>,
}

/// How the initial copy is made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InitialReplicationFile {
    /// `network` (default) or `offline`.
    #[schemars(with = "String", extend("enum" = ["network", "offline"]))]
    pub method: Spanned<String>,
    /// For `network`: `now` (default) or an RFC 3339 time to start at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub start: Option<Spanned<String>>,
    /// For `offline`: where the primary exports the initial copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub export_path: Option<Spanned<String>>,
    /// For `offline`: where the replica site imports it from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub import_path: Option<Spanned<String>>,
}

/// A cloud pairing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PairingFile {
    /// Source cloud as `site/cloud`.
    #[schemars(with = "String", extend("pattern" = SITE_CLOUD_PATTERN, "examples" = ["primary-vmm/gold"]))]
    pub source: Spanned<String>,
    /// Target cloud as `site/cloud`.
    #[schemars(with = "String", extend("pattern" = SITE_CLOUD_PATTERN, "examples" = ["secondary-vmm/gold-dr"]))]
    pub target: Spanned<String>,
    /// Policy names (one per host OS version in the source cloud).
    #[schemars(with = "Vec<String>")]
    pub policies: Vec<Spanned<String>>,
}

/// A mapping `site/name` -> `site/name`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MappingFile {
    /// Source as `site/name`.
    #[schemars(with = "String", extend("pattern" = SITE_CLOUD_PATTERN))]
    pub source: Spanned<String>,
    /// Target as `site/name`.
    #[schemars(with = "String", extend("pattern" = SITE_CLOUD_PATTERN))]
    pub target: Spanned<String>,
}

/// A virtual machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VmFile {
    /// VM name, unique in the inventory.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// The site it runs at.
    #[schemars(with = "String")]
    pub site: Spanned<String>,
    /// The cloud it runs in.
    #[schemars(with = "String")]
    pub cloud: Spanned<String>,
    /// The host it runs on.
    #[schemars(with = "String")]
    pub host: Spanned<String>,
    /// Network adapters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nics: Vec<NicFile>,
    /// Disk size in GiB (initial replication and capacity estimates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_gb: Option<u64>,
    /// Storage classification of its disks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub storage: Option<Spanned<String>>,
    /// `unprotected`, `protected` (replicating, failover-ready), or
    /// `replicated-externally` (a replica exists that drplan adopts).
    #[schemars(with = "String", extend("enum" = ["unprotected", "protected", "replicated-externally"]))]
    pub protection: Spanned<String>,
}

/// A network adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NicFile {
    /// VM network name at the VM's site.
    #[schemars(with = "String")]
    pub network: Spanned<String>,
    /// Subnet name in that network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub subnet: Option<Spanned<String>>,
    /// IPv4 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}
