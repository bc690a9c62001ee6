//! Which remote nodes may do what (issue: per-node access in `pacs.toml`). Decided once per
//! association from the calling AE title and the peer's address, before any data is read.

use std::collections::HashMap;
use std::net::{IpAddr, ToSocketAddrs};

use serde::Deserialize;

use super::identity::IdentityPolicy;

/// A DIMSE service a node may be allowed to use (C-ECHO is always allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Store,
    Find,
    Move,
    Get,
    /// Modality worklist queries.
    Worklist,
    /// Modality performed procedure step reports.
    Mpps,
    /// Storage commitment requests.
    Commitment,
}

/// A remote DICOM node, as `[[nodes]]` in `pacs.toml`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RemoteNode {
    pub ae_title: String,
    pub host: String,
    pub port: u16,
    /// Services this node may use: any of "store", "find", "move", "get", "worklist", "mpps",
    /// "commitment" [default: all].
    #[serde(default)]
    pub allow: Option<Vec<Service>>,
    /// DICOM TLS for the associations we open to this node (C-MOVE sub-operations, storage
    /// commitment reports); absent: plain TCP.
    #[serde(default)]
    pub tls: Option<NodeTls>,
    /// DICOM user identity from this node: "none", "accepted" or "required" [default: the
    /// global `dicom_user_identity`].
    #[serde(default)]
    pub user_identity: Option<IdentityPolicy>,
}

/// How we reach a node over TLS: the CA its certificate must chain to, our client
/// certificate if it asks for one, and the name to check (default: its `host`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeTls {
    pub ca: std::path::PathBuf,
    #[serde(default)]
    pub cert: Option<std::path::PathBuf>,
    #[serde(default)]
    pub key: Option<std::path::PathBuf>,
    #[serde(default)]
    pub server_name: Option<String>,
}

pub const ALL_SERVICES: &[Service] = &[
    Service::Store,
    Service::Find,
    Service::Move,
    Service::Get,
    Service::Worklist,
    Service::Mpps,
    Service::Commitment,
];

#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    /// Only listed nodes, from their own addresses, may associate.
    restrict_to_nodes: bool,
    /// By AE title: the node's addresses, allowed services and user identity policy.
    nodes: HashMap<String, NodeAccess>,
}

#[derive(Debug, Clone)]
struct NodeAccess {
    addrs: Vec<IpAddr>,
    allow: Vec<Service>,
    user_identity: Option<IdentityPolicy>,
}

impl AccessPolicy {
    /// Resolve each node's host once, at start-up.
    pub fn new(restrict_to_nodes: bool, nodes: &[RemoteNode]) -> Self {
        let nodes = nodes
            .iter()
            .map(|n| {
                let addrs = (n.host.as_str(), n.port)
                    .to_socket_addrs()
                    .map(|it| it.map(|a| a.ip()).collect())
                    .unwrap_or_else(|e| {
                        tracing::warn!(node = %n.ae_title, host = %n.host, error = %e, "cannot resolve node host");
                        Vec::new()
                    });
                let access = NodeAccess {
                    addrs,
                    allow: n.allow.clone().unwrap_or_else(|| ALL_SERVICES.to_vec()),
                    user_identity: n.user_identity,
                };
                (n.ae_title.clone(), access)
            })
            .collect();
        AccessPolicy {
            restrict_to_nodes,
            nodes,
        }
    }

    /// The services this peer may use, or `None` when it may not associate at all.
    pub fn services_for(&self, calling_ae: &str, peer: IpAddr) -> Option<Vec<Service>> {
        match self.node(calling_ae, peer) {
            Some(node) => Some(node.allow.clone()),
            None if self.restrict_to_nodes => None,
            // Unlisted peers keep the open default of a fresh install.
            None => Some(ALL_SERVICES.to_vec()),
        }
    }

    /// The user identity policy for this peer: its node's, else the global one.
    pub fn identity_policy_for(
        &self,
        calling_ae: &str,
        peer: IpAddr,
        global: IdentityPolicy,
    ) -> IdentityPolicy {
        self.node(calling_ae, peer)
            .and_then(|n| n.user_identity)
            .unwrap_or(global)
    }

    /// The listed node this is, if the title is listed and the address is the node's.
    fn node(&self, calling_ae: &str, peer: IpAddr) -> Option<&NodeAccess> {
        self.nodes
            .get(calling_ae)
            .filter(|n| n.addrs.contains(&peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ae: &str, host: &str, allow: Option<Vec<Service>>) -> RemoteNode {
        RemoteNode {
            tls: None,
            user_identity: None,
            ae_title: ae.into(),
            host: host.into(),
            port: 104,
            allow,
        }
    }

    #[test]
    fn listed_nodes_get_their_services_and_others_depend_on_restriction() {
        let nodes = [
            node("WS", "127.0.0.1", Some(vec![Service::Find])),
            node("FAR", "10.9.9.9", None),
        ];
        let local = IpAddr::from([127, 0, 0, 1]);
        let open = AccessPolicy::new(false, &nodes);
        assert_eq!(open.services_for("WS", local), Some(vec![Service::Find]));
        assert_eq!(
            open.services_for("OTHER", local).map(|s| s.len()),
            Some(ALL_SERVICES.len())
        );
        let closed = AccessPolicy::new(true, &nodes);
        assert_eq!(closed.services_for("OTHER", local), None);
        assert_eq!(
            closed.services_for("FAR", local),
            None,
            "right title, wrong address"
        );
        assert_eq!(closed.services_for("WS", local), Some(vec![Service::Find]));
    }

    #[test]
    fn a_node_may_override_the_user_identity_policy_for_its_own_address_only() {
        let mut modality = node("CT1", "127.0.0.1", None);
        modality.user_identity = Some(IdentityPolicy::None);
        let nodes = [modality, node("WS", "127.0.0.1", None)];
        let policy = AccessPolicy::new(false, &nodes);
        let local = IpAddr::from([127, 0, 0, 1]);
        let elsewhere = IpAddr::from([10, 1, 1, 1]);
        let required = IdentityPolicy::Required;
        assert_eq!(
            policy.identity_policy_for("CT1", local, required),
            IdentityPolicy::None
        );
        assert_eq!(
            policy.identity_policy_for("CT1", elsewhere, required),
            required,
            "a borrowed title does not carry the node's exemption"
        );
        assert_eq!(policy.identity_policy_for("WS", local, required), required);
        assert_eq!(
            policy.identity_policy_for("OTHER", local, required),
            required
        );
    }
}
