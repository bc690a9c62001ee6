//! The association we open as SCU for C-MOVE sub-operations: negotiate contexts for the
//! instances' stored transfer syntaxes, send C-STOREs streamed from blob files, release.

use std::path::Path;
use std::time::Duration;

use dicom_ul::pdu::{
    AssociationRQ, PDataValue, PDataValueType, Pdu, PresentationContextProposed,
    PresentationContextResultReason, UserVariableItem,
};
use pacs_storage::part10::{IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME};
use pacs_storage::transcode::{dataset_for, is_native};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite};
use tokio::net::TcpStream;

use super::command::{store_request, Command, CommandError};
use super::pdu_io::{PduError, PduStream};
use crate::dimse::access::RemoteNode;
use crate::dimse::session::DimseStream;

const APPLICATION_CONTEXT: &str = "1.2.840.10008.3.1.1.1";
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
/// Odd presentation context IDs 1..=255 allow 128 contexts.
const MAX_CONTEXTS: usize = 128;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum ScuError {
    #[error("cannot connect to {node}")]
    Connect {
        node: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to {node}: no answer within {CONNECT_TIMEOUT:?}")]
    ConnectTimeout { node: String },
    #[error("{0} rejected the association")]
    Rejected(String),
    #[error("protocol error with the destination: expected {expected}, got {got}")]
    Unexpected { expected: &'static str, got: String },
    #[error("protocol error with the destination: C-STORE-RSP without a status")]
    NoStatus,
    #[error("protocol error with the destination")]
    Command(#[from] CommandError),
    #[error(transparent)]
    Pdu(#[from] PduError),
    #[error("cannot read the stored instance: {0}")]
    Blob(std::io::Error),
    #[error(transparent)]
    Transcode(#[from] pacs_storage::transcode::TranscodeError),
    #[error("the transcoding task failed")]
    Task(#[from] tokio::task::JoinError),
    #[error("TLS settings for {node}")]
    TlsSettings {
        node: String,
        #[source]
        source: crate::tls::TlsError,
    },
    #[error("TLS handshake with {node} failed")]
    TlsHandshake {
        node: String,
        #[source]
        source: std::io::Error,
    },
}

/// The stream to `node`: TLS when its settings say so, else the TCP stream itself.
async fn secure(node: &RemoteNode, addr: &str, tcp: TcpStream) -> Result<DimseStream, ScuError> {
    let Some(tls) = &node.tls else {
        return Ok(Box::new(tcp));
    };
    let settings_error = |source| ScuError::TlsSettings {
        node: addr.to_string(),
        source,
    };
    let client = match (&tls.cert, &tls.key) {
        (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
        (None, None) => None,
        _ => {
            return Err(settings_error(crate::tls::TlsError::Config(
                "a client certificate needs both cert and key".into(),
            )))
        }
    };
    let config = crate::tls::client_config(&tls.ca, client).map_err(settings_error)?;
    let name = tls.server_name.clone().unwrap_or_else(|| node.host.clone());
    let server_name = rustls::pki_types::ServerName::try_from(name.clone()).map_err(|_| {
        settings_error(crate::tls::TlsError::Config(format!(
            "{name:?} is not a host name or IP address"
        )))
    })?;
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(server_name, tcp))
        .await
        .map_err(|_| ScuError::ConnectTimeout {
            node: addr.to_string(),
        })?
        .map_err(|source| ScuError::TlsHandshake {
            node: addr.to_string(),
            source,
        })?;
    Ok(Box::new(stream))
}

/// An association we opened: its PDU stream, the accepted contexts (id, abstract syntax,
/// transfer syntax) and the peer's largest PDU (0: unlimited).
pub struct Opened {
    pub pdus: PduStream<DimseStream>,
    pub accepted: Vec<(u8, String, String)>,
    pub peer_max_pdu: u32,
}

/// Connect to `node` and negotiate one context per offer (abstract syntax, transfer
/// syntaxes), with `extra` user items (e.g. SCP/SCU role selection).
pub async fn open_association(
    node: &RemoteNode,
    our_ae: &str,
    our_max_pdu: u32,
    offers: Vec<(String, Vec<String>)>,
    extra: Vec<UserVariableItem>,
) -> Result<Opened, ScuError> {
    let addr = format!("{}:{}", node.host, node.port);
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr))
        .await
        .map_err(|_| ScuError::ConnectTimeout { node: addr.clone() })?
        .map_err(|source| ScuError::Connect {
            node: addr.clone(),
            source,
        })?;
    let _ = stream.set_nodelay(true);
    let stream = secure(node, &addr, stream).await?;
    let mut pdus = PduStream::new(stream, our_max_pdu);
    let proposed: Vec<PresentationContextProposed> = offers
        .into_iter()
        .take(MAX_CONTEXTS)
        .enumerate()
        .map(|(i, (class, syntaxes))| PresentationContextProposed {
            id: (2 * i + 1) as u8,
            abstract_syntax: class,
            transfer_syntaxes: syntaxes,
        })
        .collect();
    let mut user_variables = vec![
        UserVariableItem::MaxLength(our_max_pdu),
        UserVariableItem::ImplementationClassUID(IMPLEMENTATION_CLASS_UID.to_string()),
        UserVariableItem::ImplementationVersionName(IMPLEMENTATION_VERSION_NAME.to_string()),
    ];
    user_variables.extend(extra);
    let rq = AssociationRQ {
        protocol_version: 1,
        calling_ae_title: our_ae.to_string(),
        called_ae_title: node.ae_title.clone(),
        application_context_name: APPLICATION_CONTEXT.to_string(),
        presentation_contexts: proposed.clone(),
        user_variables,
    };
    pdus.write(&Pdu::AssociationRQ(rq)).await?;
    let ac = match pdus.read(CONNECT_TIMEOUT).await? {
        Pdu::AssociationAC(ac) => ac,
        Pdu::AssociationRJ(_) => return Err(ScuError::Rejected(node.ae_title.clone())),
        other => {
            return Err(ScuError::Unexpected {
                expected: "A-ASSOCIATE-AC",
                got: other.short_description().to_string(),
            })
        }
    };
    let accepted = ac
        .presentation_contexts
        .iter()
        .filter(|r| r.reason == PresentationContextResultReason::Acceptance)
        .filter_map(|r| {
            let p = proposed.iter().find(|p| p.id == r.id)?;
            Some((
                r.id,
                p.abstract_syntax.clone(),
                r.transfer_syntax.trim_end_matches('\0').to_string(),
            ))
        })
        .collect();
    let peer_max_pdu = ac
        .user_variables
        .iter()
        .find_map(|v| match v {
            UserVariableItem::MaxLength(n) => Some(*n),
            _ => None,
        })
        .unwrap_or(0);
    Ok(Opened {
        pdus,
        accepted,
        peer_max_pdu,
    })
}

pub struct StoreScu {
    pdus: PduStream<DimseStream>,
    /// Accepted contexts: (id, abstract syntax, transfer syntax).
    accepted: Vec<(u8, String, String)>,
    peer_max_pdu: u32,
    next_message_id: u16,
}

impl StoreScu {
    /// Open an association proposing one context per (SOP class, transfer syntax) pair.
    pub async fn connect(
        node: &RemoteNode,
        our_ae: &str,
        our_max_pdu: u32,
        wanted: &[(String, String)],
    ) -> Result<Self, ScuError> {
        // Each instance's stored syntax first; then, per class, explicit and implicit little
        // endian, to which native instances can be re-encoded if the stored one is refused.
        let mut offers: Vec<(String, Vec<String>)> = wanted
            .iter()
            .map(|(class, ts)| (class.clone(), vec![ts.clone()]))
            .collect();
        let mut classes: Vec<&String> = wanted.iter().map(|(c, _)| c).collect();
        classes.dedup();
        for class in classes {
            offers.push((
                class.clone(),
                vec![EXPLICIT_LE.to_string(), IMPLICIT_LE.to_string()],
            ));
        }
        let opened = open_association(node, our_ae, our_max_pdu, offers, Vec::new()).await?;
        let (pdus, accepted, peer_max_pdu) = (opened.pdus, opened.accepted, opened.peer_max_pdu);
        Ok(StoreScu {
            pdus,
            accepted,
            peer_max_pdu,
            next_message_id: 1,
        })
    }

    /// Where to send an instance of this class stored in `stored_ts`.
    pub fn plan(&self, sop_class: &str, stored_ts: &str) -> Option<SendPlan> {
        choose_context(
            self.accepted
                .iter()
                .map(|(id, a, t)| (*id, a.as_str(), t.as_str())),
            sop_class,
            stored_ts,
        )
    }

    /// The accepted context for exactly this class and transfer syntax.
    pub fn accepted_context(&self, sop_class: &str, transfer_syntax: &str) -> Option<u8> {
        self.accepted
            .iter()
            .find(|(_, a, t)| a == sop_class && t == transfer_syntax)
            .map(|(id, _, _)| *id)
    }

    /// Send one stored instance and return the response status; `move_originator` for a
    /// C-MOVE sub-operation.
    pub async fn store(
        &mut self,
        plan: &SendPlan,
        sop_class: &str,
        sop_instance: &str,
        blob: &Path,
        move_originator: Option<(&str, u16)>,
    ) -> Result<u16, ScuError> {
        // Decode or re-encode first: a failure must not leave a C-STORE-RQ without its data set.
        let payload = prepare(plan, blob).await?;
        self.store_payload(
            plan.context_id,
            sop_class,
            sop_instance,
            payload,
            move_originator,
        )
        .await
    }

    /// Send a data set already in the context's transfer syntax (e.g. a de-identified copy)
    /// and return the response status.
    pub async fn store_payload(
        &mut self,
        context_id: u8,
        sop_class: &str,
        sop_instance: &str,
        payload: Payload,
        move_originator: Option<(&str, u16)>,
    ) -> Result<u16, ScuError> {
        let message_id = self.next_message_id;
        self.next_message_id = self.next_message_id.wrapping_add(1).max(1);
        let command = store_request(message_id, sop_class, sop_instance, move_originator)?;
        let peer_max = self.peer_max_pdu;
        self.pdus
            .send_message_part(context_id, PDataValueType::Command, &command, peer_max)
            .await?;
        send_payload(&mut self.pdus, context_id, payload, peer_max).await?;
        self.read_status().await
    }

    async fn read_status(&mut self) -> Result<u16, ScuError> {
        let mut bytes = Vec::new();
        loop {
            match self.pdus.read(RESPONSE_TIMEOUT).await? {
                Pdu::PData { data } => {
                    for v in data {
                        if v.value_type != PDataValueType::Command {
                            continue;
                        }
                        bytes.extend_from_slice(&v.data);
                        if v.is_last {
                            let rsp = Command::parse(&bytes)?;
                            return rsp.status.ok_or(ScuError::NoStatus);
                        }
                    }
                }
                other => {
                    return Err(ScuError::Unexpected {
                        expected: "C-STORE-RSP",
                        got: other.short_description().to_string(),
                    })
                }
            }
        }
    }

    /// Release the association (A-RELEASE-RQ, wait for the RP).
    pub async fn release(mut self) {
        if self.pdus.write(&Pdu::ReleaseRQ).await.is_ok() {
            let _ = self.pdus.read(CONNECT_TIMEOUT).await;
        }
    }
}

/// Stream a stored instance's data set (everything after its File Meta Information) as P-DATA
/// fragments no larger than the peer accepts.
pub async fn send_dataset<S: AsyncRead + AsyncWrite + Unpin>(
    pdus: &mut PduStream<S>,
    context_id: u8,
    blob: &Path,
    peer_max_pdu: u32,
) -> Result<(), ScuError> {
    let mut file = tokio::fs::File::open(blob).await.map_err(ScuError::Blob)?;
    let mut head = [0u8; 144];
    file.read_exact(&mut head).await.map_err(ScuError::Blob)?;
    let offset = pacs_storage::part10::dataset_offset(&head[..])
        .map_err(ScuError::Blob)?
        .ok_or_else(|| ScuError::Blob(std::io::Error::other("blob is not a Part 10 file")))?;
    let size = file.metadata().await.map_err(ScuError::Blob)?.len();
    file.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(ScuError::Blob)?;
    // One fragment per PDU, as large as the peer accepts; PDUs go out in batches of about
    // 1 MiB per write.
    let fragment = match peer_max_pdu {
        0 => 256 * 1024,
        n => (n as usize).saturating_sub(6).clamp(1024, 4 * 1024 * 1024),
    };
    let batch = ((1 << 20) / fragment * fragment).max(fragment);
    let mut remaining = size.saturating_sub(offset);
    if remaining == 0 {
        return pdus
            .send_fragment(context_id, PDataValueType::Data, Vec::new(), true)
            .await
            .map_err(Into::into);
    }
    while remaining > 0 {
        let n = (remaining as usize).min(batch);
        let mut buf = vec![0u8; n];
        file.read_exact(&mut buf).await.map_err(ScuError::Blob)?;
        remaining -= n as u64;
        let last_batch = remaining == 0;
        let pieces: Vec<Pdu> = buf
            .chunks(fragment)
            .enumerate()
            .map(|(i, piece)| Pdu::PData {
                data: vec![PDataValue {
                    presentation_context_id: context_id,
                    value_type: PDataValueType::Data,
                    is_last: last_batch && (i + 1) * fragment >= n,
                    data: piece.to_vec(),
                }],
            })
            .collect();
        pdus.write_batch(&pieces).await?;
    }
    Ok(())
}

/// How one instance goes out: on which context, and re-encoded to which native syntax if the
/// stored one was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendPlan {
    pub context_id: u8,
    pub stored_ts: String,
    pub transcode_to: Option<String>,
}

/// Pick an accepted context (id, abstract syntax, transfer syntax) for an instance: the stored
/// syntax as is, else a native syntax a native instance can be re-encoded to.
pub fn choose_context<'a>(
    accepted: impl Iterator<Item = (u8, &'a str, &'a str)>,
    sop_class: &str,
    stored_ts: &str,
) -> Option<SendPlan> {
    let for_class: Vec<(u8, &str)> = accepted
        .filter(|(_, a, _)| *a == sop_class)
        .map(|(id, _, t)| (id, t))
        .collect();
    if let Some((id, _)) = for_class.iter().find(|(_, t)| *t == stored_ts) {
        return Some(SendPlan {
            context_id: *id,
            stored_ts: stored_ts.to_string(),
            transcode_to: None,
        });
    }
    // Native instances are re-encoded, compressed ones decoded (failing later, clearly, when
    // no decoder exists for their syntax).
    for_class
        .iter()
        .find(|(_, t)| is_native(t))
        .map(|(id, t)| SendPlan {
            context_id: *id,
            stored_ts: stored_ts.to_string(),
            transcode_to: Some(t.to_string()),
        })
}

/// What goes out as an instance's data set: the stored bytes, or a re-encoded copy.
pub enum Payload {
    Stored(std::path::PathBuf),
    Encoded(Vec<u8>),
}

/// Produce the data set the plan calls for (decoding off the async runtime).
pub async fn prepare(plan: &SendPlan, blob: &Path) -> Result<Payload, ScuError> {
    match &plan.transcode_to {
        None => Ok(Payload::Stored(blob.to_path_buf())),
        Some(target) => {
            let (path, stored, target) =
                (blob.to_path_buf(), plan.stored_ts.clone(), target.clone());
            let bytes =
                tokio::task::spawn_blocking(move || dataset_for(&path, &stored, &target)).await??;
            Ok(Payload::Encoded(bytes))
        }
    }
}

/// Send a prepared data set on `context_id`.
pub async fn send_payload<S: AsyncRead + AsyncWrite + Unpin>(
    pdus: &mut PduStream<S>,
    context_id: u8,
    payload: Payload,
    peer_max_pdu: u32,
) -> Result<(), ScuError> {
    match payload {
        Payload::Stored(path) => send_dataset(pdus, context_id, &path, peer_max_pdu).await,
        Payload::Encoded(bytes) => pdus
            .send_message_part(context_id, PDataValueType::Data, &bytes, peer_max_pdu)
            .await
            .map_err(Into::into),
    }
}
