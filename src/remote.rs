//! Query/retrieve against the configured nodes, for the API and the priors worker: study
//! C-FIND and study C-MOVE to ourselves over the DIMSE SCU, each within a deadline.

use std::time::Duration;

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use std::sync::Arc;

use pacs_storage::{InstanceRecord, Store};
use pacs_viewer_api::{Deidentify, RemoteArchives, RemoteError, RemoteFuture, RetrieveCounts};
use tokio_util::sync::CancellationToken;

use crate::workers::route_send::{store_to_node, NodeSend, RouteError};

use crate::dimse::access::RemoteNode;
use crate::dimse::qr_scu::{self, study_identifier};

/// A whole query, all its responses included.
const FIND_DEADLINE: Duration = Duration::from_secs(60);
/// A whole study moved to us (large studies over a slow link take long).
const MOVE_DEADLINE: Duration = Duration::from_secs(1800);

/// The nodes and who we are to them.
#[derive(Debug, Clone)]
pub struct DimseRemotes {
    pub nodes: Vec<RemoteNode>,
    /// Our AE title: the calling AE and the move destination the remote knows us by.
    pub our_ae: String,
    pub max_pdu: u32,
}

impl DimseRemotes {
    fn node(&self, ae: &str) -> Result<&RemoteNode, RemoteError> {
        self.nodes
            .iter()
            .find(|n| n.ae_title == ae)
            .ok_or_else(|| RemoteError::UnknownNode(ae.to_string()))
    }

    /// Study-level C-FIND (the API's and the priors worker's).
    pub async fn find(
        &self,
        ae: &str,
        identifier: &InMemDicomObject,
        limit: usize,
    ) -> Result<Vec<InMemDicomObject>, RemoteError> {
        let node = self.node(ae)?;
        let unreachable = |reason: String| RemoteError::Unreachable {
            node: ae.to_string(),
            reason,
        };
        let (matches, status) = tokio::time::timeout(
            FIND_DEADLINE,
            qr_scu::find(node, &self.our_ae, self.max_pdu, identifier, limit),
        )
        .await
        .map_err(|_| unreachable(format!("no final C-FIND response within {FIND_DEADLINE:?}")))?
        .map_err(|e| unreachable(pacs_storage::error_chain(&e)))?;
        // Success, or cancelled by us at the limit.
        if status != 0x0000 && status != 0xFE00 {
            return Err(RemoteError::Refused {
                node: ae.to_string(),
                status,
                comment: None,
            });
        }
        Ok(matches)
    }

    /// C-MOVE of one study to us.
    pub async fn retrieve(&self, ae: &str, study: &str) -> Result<RetrieveCounts, RemoteError> {
        let node = self.node(ae)?;
        let identifier = study_identifier(&[(tags::STUDY_INSTANCE_UID, study.to_string())]);
        let report = tokio::time::timeout(
            MOVE_DEADLINE,
            qr_scu::move_to(node, &self.our_ae, self.max_pdu, &self.our_ae, &identifier),
        )
        .await
        .map_err(|_| RemoteError::Unreachable {
            node: ae.to_string(),
            reason: format!("the move did not end within {MOVE_DEADLINE:?}"),
        })?
        .map_err(|e| RemoteError::Unreachable {
            node: ae.to_string(),
            reason: pacs_storage::error_chain(&e),
        })?;
        // Success, or done with some sub-operations failed (the counts say which).
        if report.status != 0x0000 && report.status != 0xB000 {
            return Err(RemoteError::Refused {
                node: ae.to_string(),
                status: report.status,
                comment: report.comment,
            });
        }
        Ok(RetrieveCounts {
            status: report.status,
            completed: report.completed,
            failed: report.failed,
            warning: report.warning,
            comment: report.comment,
        })
    }
}

impl RemoteArchives for DimseRemotes {
    fn find_studies<'a>(
        &'a self,
        node: &'a str,
        keys: Vec<(Tag, String)>,
        limit: usize,
    ) -> RemoteFuture<'a, Vec<InMemDicomObject>> {
        Box::pin(async move { self.find(node, &study_identifier(&keys), limit).await })
    }

    fn retrieve_study<'a>(
        &'a self,
        node: &'a str,
        study: &'a str,
    ) -> RemoteFuture<'a, RetrieveCounts> {
        Box::pin(self.retrieve(node, study))
    }

    fn send_to_node<'a>(
        &'a self,
        node: &'a str,
        store: Arc<Store>,
        instances: Vec<InstanceRecord>,
        deid: Option<Deidentify>,
    ) -> RemoteFuture<'a, usize> {
        Box::pin(async move {
            let target = self.node(node)?;
            // An export is not stopped by shutdown halfway: it is a request being answered.
            let never = CancellationToken::new();
            let send = NodeSend {
                node: target,
                our_ae: &self.our_ae,
                max_pdu: self.max_pdu,
                transfer_syntax: None,
                deid: deid.as_ref(),
                shutdown: &never,
            };
            store_to_node(&store, &send, &instances)
                .await
                .map_err(|e| match e {
                    RouteError::Refused { status, sop, .. } => RemoteError::Refused {
                        node: node.to_string(),
                        status,
                        comment: Some(format!("refused {sop}")),
                    },
                    other => RemoteError::Unreachable {
                        node: node.to_string(),
                        reason: pacs_storage::error_chain(&other),
                    },
                })
        })
    }
}
