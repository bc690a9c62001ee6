//! Query/retrieve as an SCU against another archive: C-FIND (Study Root) collecting the
//! matches, cancelled once enough have come; C-MOVE of a study to a destination (ourselves),
//! waiting for the final counts. Both on an association of their own, released at the end.

use std::time::Duration;

use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::{
    EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN,
};
use dicom_ul::pdu::{PDataValueType, Pdu};
use pacs_storage::lengths;

use super::command::{cancel_request, find_request, move_request, Command};
use super::pdu_io::PduStream;
use super::scu::{open_association, ScuError};
use super::session::DimseStream;
use crate::dimse::access::RemoteNode;

pub const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
pub const STUDY_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.2.2";
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
/// One response's wait; a move's sub-operations each bring a pending response.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest identifier a remote may answer with (a study-level match is a few KiB).
const MAX_IDENTIFIER: usize = 1 << 20;

/// How a C-MOVE ended at the remote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MoveReport {
    pub status: u16,
    pub completed: u16,
    pub failed: u16,
    pub warning: u16,
    pub comment: Option<String>,
}

/// One message from the remote.
struct Received {
    command: Command,
    /// The command set as received (for the counts of a final C-MOVE response).
    raw: Vec<u8>,
    data: Option<Vec<u8>>,
}

/// One open query/retrieve association.
struct QrAssociation {
    pdus: PduStream<DimseStream>,
    context_id: u8,
    explicit: bool,
    peer_max_pdu: u32,
}

impl QrAssociation {
    async fn open(
        node: &RemoteNode,
        our_ae: &str,
        max_pdu: u32,
        class: &str,
    ) -> Result<Self, ScuError> {
        let offers = vec![(
            class.to_string(),
            vec![EXPLICIT_LE.to_string(), IMPLICIT_LE.to_string()],
        )];
        let opened = open_association(node, our_ae, max_pdu, offers, Vec::new()).await?;
        let Some((context_id, _, ts)) = opened.accepted.first().cloned() else {
            return Err(ScuError::Unexpected {
                expected: "an accepted presentation context",
                got: format!("none for {class}"),
            });
        };
        Ok(QrAssociation {
            pdus: opened.pdus,
            context_id,
            explicit: ts == EXPLICIT_LE,
            peer_max_pdu: opened.peer_max_pdu,
        })
    }

    fn encode(&self, identifier: &InMemDicomObject) -> Result<Vec<u8>, ScuError> {
        let ts = if self.explicit {
            EXPLICIT_VR_LITTLE_ENDIAN.erased()
        } else {
            IMPLICIT_VR_LITTLE_ENDIAN.erased()
        };
        let mut bytes = Vec::new();
        identifier
            .write_dataset_with_ts(&mut bytes, &ts)
            .map_err(|e| ScuError::Unexpected {
                expected: "an encodable identifier",
                got: e.to_string(),
            })?;
        Ok(bytes)
    }

    fn decode(&self, bytes: &[u8]) -> Result<InMemDicomObject, ScuError> {
        // dicom-parser allocates what an element declares: check the lengths first (a
        // remote's answer is untrusted input like any other).
        let encoding = if self.explicit {
            lengths::Encoding::ExplicitVrLittleEndian
        } else {
            lengths::Encoding::ImplicitVrLittleEndian
        };
        lengths::check_bytes(bytes, encoding).map_err(|e| ScuError::Unexpected {
            expected: "a well-formed identifier",
            got: e.to_string(),
        })?;
        let ts = if self.explicit {
            EXPLICIT_VR_LITTLE_ENDIAN.erased()
        } else {
            IMPLICIT_VR_LITTLE_ENDIAN.erased()
        };
        InMemDicomObject::read_dataset_with_ts(bytes, &ts).map_err(|e| ScuError::Unexpected {
            expected: "a readable identifier",
            got: e.to_string(),
        })
    }

    async fn send(&mut self, command: &[u8], data: &[u8]) -> Result<(), ScuError> {
        let (ctx, max) = (self.context_id, self.peer_max_pdu);
        self.pdus
            .send_message_part(ctx, PDataValueType::Command, command, max)
            .await?;
        self.pdus
            .send_message_part(ctx, PDataValueType::Data, data, max)
            .await?;
        Ok(())
    }

    /// The next message: its command (parsed and as received) and its data set's bytes
    /// when it has one.
    async fn receive(&mut self) -> Result<Received, ScuError> {
        let mut command: Option<(Command, Vec<u8>)> = None;
        let (mut command_bytes, mut data) = (Vec::new(), Vec::new());
        loop {
            let pdu = self.pdus.read(RESPONSE_TIMEOUT).await?;
            let Pdu::PData { data: values } = pdu else {
                return Err(ScuError::Unexpected {
                    expected: "P-DATA",
                    got: pdu.short_description().to_string(),
                });
            };
            for v in values {
                let is_command = v.value_type == PDataValueType::Command;
                let target = if is_command {
                    &mut command_bytes
                } else {
                    &mut data
                };
                if target.len() + v.data.len() > MAX_IDENTIFIER {
                    return Err(ScuError::Unexpected {
                        expected: "a response under 1 MiB",
                        got: "a larger one".into(),
                    });
                }
                target.extend_from_slice(&v.data);
                if !v.is_last {
                    continue;
                }
                if is_command {
                    let parsed = Command::parse(&command_bytes)?;
                    let raw = std::mem::take(&mut command_bytes);
                    if !parsed.has_dataset {
                        return Ok(Received {
                            command: parsed,
                            raw,
                            data: None,
                        });
                    }
                    command = Some((parsed, raw));
                } else {
                    let Some((parsed, raw)) = command.take() else {
                        return Err(ScuError::Unexpected {
                            expected: "a command before its data set",
                            got: "a data set".into(),
                        });
                    };
                    return Ok(Received {
                        command: parsed,
                        raw,
                        data: Some(std::mem::take(&mut data)),
                    });
                }
            }
        }
    }

    async fn release(mut self) {
        if self.pdus.write(&Pdu::ReleaseRQ).await.is_ok() {
            let _ = self.pdus.read(Duration::from_secs(10)).await;
        }
    }
}

fn is_pending(status: Option<u16>) -> bool {
    matches!(status, Some(0xFF00 | 0xFF01))
}

/// C-FIND `identifier` (Study Root) at `node`: the matches, at most `limit` (the query is
/// cancelled when the limit is reached), and the final status.
pub async fn find(
    node: &RemoteNode,
    our_ae: &str,
    max_pdu: u32,
    identifier: &InMemDicomObject,
    limit: usize,
) -> Result<(Vec<InMemDicomObject>, u16), ScuError> {
    let mut assoc = QrAssociation::open(node, our_ae, max_pdu, STUDY_ROOT_FIND).await?;
    let result = find_on(&mut assoc, identifier, limit).await;
    assoc.release().await;
    result
}

async fn find_on(
    assoc: &mut QrAssociation,
    identifier: &InMemDicomObject,
    limit: usize,
) -> Result<(Vec<InMemDicomObject>, u16), ScuError> {
    let data = assoc.encode(identifier)?;
    assoc
        .send(&find_request(1, STUDY_ROOT_FIND)?, &data)
        .await?;
    let mut matches = Vec::new();
    let mut cancelled = false;
    loop {
        let Received {
            command: response,
            data,
            ..
        } = assoc.receive().await?;
        if !is_pending(response.status) {
            return Ok((matches, response.status.ok_or(ScuError::NoStatus)?));
        }
        if let Some(bytes) = data {
            if matches.len() < limit {
                matches.push(assoc.decode(&bytes)?);
            }
        }
        if matches.len() >= limit && !cancelled {
            let ctx = assoc.context_id;
            assoc
                .pdus
                .send_fragment(ctx, PDataValueType::Command, cancel_request(1)?, true)
                .await?;
            cancelled = true;
        }
    }
}

/// C-MOVE `identifier` (Study Root) at `node` to `destination`; the final counts.
pub async fn move_to(
    node: &RemoteNode,
    our_ae: &str,
    max_pdu: u32,
    destination: &str,
    identifier: &InMemDicomObject,
) -> Result<MoveReport, ScuError> {
    let mut assoc = QrAssociation::open(node, our_ae, max_pdu, STUDY_ROOT_MOVE).await?;
    let result = move_on(&mut assoc, destination, identifier).await;
    assoc.release().await;
    result
}

async fn move_on(
    assoc: &mut QrAssociation,
    destination: &str,
    identifier: &InMemDicomObject,
) -> Result<MoveReport, ScuError> {
    let data = assoc.encode(identifier)?;
    assoc
        .send(&move_request(1, STUDY_ROOT_MOVE, destination)?, &data)
        .await?;
    loop {
        let Received {
            command: response,
            raw,
            ..
        } = assoc.receive().await?;
        if is_pending(response.status) {
            continue;
        }
        let counts = super::command::sub_operation_counts(&raw)?;
        return Ok(MoveReport {
            status: response.status.ok_or(ScuError::NoStatus)?,
            completed: counts.completed,
            failed: counts.failed,
            warning: counts.warning,
            comment: counts.comment,
        });
    }
}

/// A study-level identifier: QueryRetrieveLevel STUDY, the given keys, and empty return keys.
pub fn study_identifier(keys: &[(dicom_core::Tag, String)]) -> InMemDicomObject {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    let mut obj = InMemDicomObject::new_empty();
    let mut put = |tag, vr, value: &str| {
        obj.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
    };
    put(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "STUDY");
    for (tag, vr) in [
        (tags::STUDY_INSTANCE_UID, VR::UI),
        (tags::PATIENT_ID, VR::LO),
        (tags::ISSUER_OF_PATIENT_ID, VR::LO),
        (tags::PATIENT_NAME, VR::PN),
        (tags::PATIENT_BIRTH_DATE, VR::DA),
        (tags::STUDY_DATE, VR::DA),
        (tags::STUDY_TIME, VR::TM),
        (tags::ACCESSION_NUMBER, VR::SH),
        (tags::STUDY_DESCRIPTION, VR::LO),
        (tags::MODALITIES_IN_STUDY, VR::CS),
        (tags::NUMBER_OF_STUDY_RELATED_INSTANCES, VR::IS),
    ] {
        let value = keys
            .iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        put(tag, vr, value);
    }
    obj
}

/// A series-level identifier for one study: its series with modality and body part.
pub fn series_identifier(study: &str) -> InMemDicomObject {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    let mut obj = InMemDicomObject::new_empty();
    for (tag, vr, value) in [
        (tags::QUERY_RETRIEVE_LEVEL, VR::CS, "SERIES"),
        (tags::STUDY_INSTANCE_UID, VR::UI, study),
        (tags::SERIES_INSTANCE_UID, VR::UI, ""),
        (tags::MODALITY, VR::CS, ""),
        (tags::BODY_PART_EXAMINED, VR::CS, ""),
    ] {
        obj.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
    }
    obj
}
