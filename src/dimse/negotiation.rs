//! Association negotiation (PS3.8 7.1, PS3.7 D.3): which presentation contexts we accept.

use std::collections::HashMap;

use dicom_core::dictionary::UidDictionary;
use dicom_dictionary_std::{uids, StandardSopClassDictionary};
use dicom_ul::pdu::{
    AssociationAC, AssociationRJ, AssociationRJResult, AssociationRJServiceProviderASCEReason,
    AssociationRJServiceUserReason, AssociationRJSource, AssociationRQ, PresentationContextResult,
    PresentationContextResultReason, UserVariableItem,
};

use pacs_storage::part10::{IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME};

use super::access::Service;

/// DICOM Application Context Name (PS3.7 A.2.1).
const APPLICATION_CONTEXT: &str = "1.2.840.10008.3.1.1.1";

/// Retired in the standard, still sent by older modalities.
const EXPLICIT_VR_BIG_ENDIAN: &str = "1.2.840.10008.1.2.2";

/// Transfer syntaxes accepted for storage: instances are kept exactly as received.
pub const STORAGE_TRANSFER_SYNTAXES: &[&str] = &[
    uids::IMPLICIT_VR_LITTLE_ENDIAN,
    uids::EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    uids::JPEG_BASELINE8_BIT,
    uids::JPEG_EXTENDED12_BIT,
    uids::JPEG_LOSSLESS,
    uids::JPEG_LOSSLESS_SV1,
    uids::JPEGLS_LOSSLESS,
    uids::JPEGLS_NEAR_LOSSLESS,
    uids::JPEG2000_LOSSLESS,
    uids::JPEG2000,
    uids::RLE_LOSSLESS,
    uids::HTJ2K_LOSSLESS,
    uids::HTJ2K_LOSSLESS_RPCL,
    uids::HTJ2K,
];

/// Transfer syntaxes for services without a data set worth keeping (Verification).
const PLAIN_TRANSFER_SYNTAXES: &[&str] = &[
    uids::IMPLICIT_VR_LITTLE_ENDIAN,
    uids::EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
];

/// The kind of service an accepted presentation context is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    Verification,
    Storage,
    /// Query/Retrieve FIND, either information model.
    Find,
    /// Query/Retrieve MOVE, either information model.
    Move,
    /// Query/Retrieve GET, either information model.
    Get,
    /// Modality Worklist Information Model - FIND.
    Worklist,
    /// Modality Performed Procedure Step (N-CREATE, N-SET).
    Mpps,
    /// Storage Commitment Push Model (N-ACTION; N-EVENT-REPORT back).
    Commitment,
}

/// A presentation context we accepted.
#[derive(Debug, Clone)]
pub struct AcceptedContext {
    pub abstract_syntax: String,
    pub transfer_syntax: String,
    pub kind: ServiceKind,
}

/// What was agreed for an association.
#[derive(Debug, Clone)]
pub struct Negotiated {
    pub calling_ae: String,
    pub contexts: HashMap<u8, AcceptedContext>,
    /// Largest PDU the peer accepts from us (0 = unlimited).
    pub peer_max_pdu: u32,
    /// Storage SOP classes for which the requestor takes the SCP role (C-GET, PS3.7 D.3.3.4).
    pub scp_role_classes: Vec<String>,
}

/// Query/Retrieve FIND SOP classes (PS3.4 C.6.1.3, C.6.2.3).
const FIND_SOP_CLASSES: &[&str] = &[
    uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND,
    uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND,
];

/// Modality Worklist Information Model - FIND (PS3.4 K.6.1.3).
pub const MODALITY_WORKLIST_FIND: &str = "1.2.840.10008.5.1.4.31";

/// Modality Performed Procedure Step SOP Class (PS3.4 F.7.3).
pub const MODALITY_PERFORMED_PROCEDURE_STEP: &str = "1.2.840.10008.3.1.2.3.3";

/// Query/Retrieve MOVE SOP classes (PS3.4 C.6.1.3, C.6.2.3).
const MOVE_SOP_CLASSES: &[&str] = &[
    uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE,
    uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE,
];

/// Query/Retrieve GET SOP classes (PS3.4 C.6.1.3, C.6.2.3).
const GET_SOP_CLASSES: &[&str] = &[
    uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_GET,
    uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_GET,
];

/// Is this a Storage SOP Class of the standard dictionary?
pub fn is_storage_sop_class(uid: &str) -> bool {
    let uid = uid.trim_end_matches('\0');
    StandardSopClassDictionary
        .by_uid(uid)
        .map(|e| {
            e.name.contains("Storage")
                && !e.name.contains("Commitment")
                && uid != uids::MEDIA_STORAGE_DIRECTORY_STORAGE
        })
        .unwrap_or(false)
}

fn service_kind(abstract_syntax: &str) -> Option<(ServiceKind, &'static [&'static str])> {
    if abstract_syntax == uids::VERIFICATION {
        Some((ServiceKind::Verification, PLAIN_TRANSFER_SYNTAXES))
    } else if GET_SOP_CLASSES.contains(&abstract_syntax) {
        Some((ServiceKind::Get, PLAIN_TRANSFER_SYNTAXES))
    } else if MOVE_SOP_CLASSES.contains(&abstract_syntax) {
        Some((ServiceKind::Move, PLAIN_TRANSFER_SYNTAXES))
    } else if abstract_syntax == super::services::commitment::STORAGE_COMMITMENT_PUSH {
        Some((ServiceKind::Commitment, PLAIN_TRANSFER_SYNTAXES))
    } else if abstract_syntax == MODALITY_PERFORMED_PROCEDURE_STEP {
        Some((ServiceKind::Mpps, PLAIN_TRANSFER_SYNTAXES))
    } else if abstract_syntax == MODALITY_WORKLIST_FIND {
        Some((ServiceKind::Worklist, PLAIN_TRANSFER_SYNTAXES))
    } else if FIND_SOP_CLASSES.contains(&abstract_syntax) {
        Some((ServiceKind::Find, PLAIN_TRANSFER_SYNTAXES))
    } else if is_storage_sop_class(abstract_syntax) {
        Some((ServiceKind::Storage, STORAGE_TRANSFER_SYNTAXES))
    } else {
        None
    }
}

fn reject(source: AssociationRJSource) -> AssociationRJ {
    AssociationRJ {
        result: AssociationRJResult::Permanent,
        source,
    }
}

/// Decide on an A-ASSOCIATE-RQ: an A-ASSOCIATE-AC with our choices, or the reason to reject.
pub fn negotiate(
    rq: &AssociationRQ,
    our_ae: &str,
    our_max_pdu: u32,
    allowed: Option<&[Service]>,
) -> Result<(AssociationAC, Negotiated), AssociationRJ> {
    if rq.protocol_version & 1 == 0 {
        return Err(reject(AssociationRJSource::ServiceProviderASCE(
            AssociationRJServiceProviderASCEReason::ProtocolVersionNotSupported,
        )));
    }
    if rq.application_context_name.trim_end_matches('\0') != APPLICATION_CONTEXT {
        return Err(reject(AssociationRJSource::ServiceUser(
            AssociationRJServiceUserReason::ApplicationContextNameNotSupported,
        )));
    }
    if rq.called_ae_title.trim() != our_ae {
        return Err(reject(AssociationRJSource::ServiceUser(
            AssociationRJServiceUserReason::CalledAETitleNotRecognized,
        )));
    }
    let Some(allowed) = allowed else {
        return Err(reject(AssociationRJSource::ServiceUser(
            AssociationRJServiceUserReason::CallingAETitleNotRecognized,
        )));
    };
    let permitted = |kind: ServiceKind| match kind {
        ServiceKind::Verification => true,
        // C-GET needs storage contexts to send its sub-operations on.
        ServiceKind::Storage => {
            allowed.contains(&Service::Store) || allowed.contains(&Service::Get)
        }
        ServiceKind::Find => allowed.contains(&Service::Find),
        ServiceKind::Move => allowed.contains(&Service::Move),
        ServiceKind::Get => allowed.contains(&Service::Get),
        ServiceKind::Worklist => allowed.contains(&Service::Worklist),
        ServiceKind::Mpps => allowed.contains(&Service::Mpps),
        ServiceKind::Commitment => allowed.contains(&Service::Commitment),
    };

    let mut results = Vec::with_capacity(rq.presentation_contexts.len());
    let mut contexts = HashMap::new();
    for pc in &rq.presentation_contexts {
        let abstract_syntax = pc.abstract_syntax.trim_end_matches('\0').to_string();
        let first_proposed = pc
            .transfer_syntaxes
            .first()
            .cloned()
            .unwrap_or_else(|| uids::IMPLICIT_VR_LITTLE_ENDIAN.to_string());
        let (reason, ts) = match service_kind(&abstract_syntax) {
            Some((kind, _)) if !permitted(kind) => (
                PresentationContextResultReason::UserRejection,
                first_proposed,
            ),
            None => (
                PresentationContextResultReason::AbstractSyntaxNotSupported,
                first_proposed,
            ),
            Some((kind, supported)) => {
                // The proposer lists its preference first; take the first one we support.
                let chosen = pc
                    .transfer_syntaxes
                    .iter()
                    .map(|t| t.trim_end_matches('\0'))
                    .find(|t| supported.contains(t));
                match chosen {
                    Some(ts) => {
                        contexts.insert(
                            pc.id,
                            AcceptedContext {
                                abstract_syntax: abstract_syntax.clone(),
                                transfer_syntax: ts.to_string(),
                                kind,
                            },
                        );
                        (PresentationContextResultReason::Acceptance, ts.to_string())
                    }
                    None => (
                        PresentationContextResultReason::TransferSyntaxesNotSupported,
                        first_proposed,
                    ),
                }
            }
        };
        results.push(PresentationContextResult {
            id: pc.id,
            reason,
            transfer_syntax: ts,
        });
    }

    let peer_max_pdu = rq
        .user_variables
        .iter()
        .find_map(|v| match v {
            UserVariableItem::MaxLength(n) => Some(*n),
            _ => None,
        })
        .unwrap_or(0);
    // SCP/SCU role selection: the requestor asks to be SCP for storage classes so that C-GET
    // can send it C-STOREs; we accept what it proposes for classes we support.
    let mut scp_role_classes = Vec::new();
    let mut role_replies = Vec::new();
    for v in &rq.user_variables {
        if let UserVariableItem::ScuScpRoleSelectionSubItem(uid, roles) = v {
            let uid = uid.trim_end_matches('\0');
            if is_storage_sop_class(uid) {
                if roles.scp {
                    scp_role_classes.push(uid.to_string());
                }
                role_replies.push(UserVariableItem::ScuScpRoleSelectionSubItem(
                    uid.to_string(),
                    *roles,
                ));
            }
        }
    }
    let mut user_variables = vec![
        UserVariableItem::MaxLength(our_max_pdu),
        UserVariableItem::ImplementationClassUID(IMPLEMENTATION_CLASS_UID.to_string()),
        UserVariableItem::ImplementationVersionName(IMPLEMENTATION_VERSION_NAME.to_string()),
    ];
    user_variables.extend(role_replies);
    let ac = AssociationAC {
        protocol_version: 1,
        calling_ae_title: rq.calling_ae_title.clone(),
        called_ae_title: rq.called_ae_title.clone(),
        application_context_name: APPLICATION_CONTEXT.to_string(),
        presentation_contexts: results,
        user_variables,
    };
    Ok((
        ac,
        Negotiated {
            calling_ae: rq.calling_ae_title.trim().to_string(),
            contexts,
            peer_max_pdu,
            scp_role_classes,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dimse::access::ALL_SERVICES;
    use dicom_ul::pdu::PresentationContextProposed;

    fn rq(called: &str, pcs: Vec<PresentationContextProposed>) -> AssociationRQ {
        AssociationRQ {
            protocol_version: 1,
            calling_ae_title: "MODALITY".into(),
            called_ae_title: called.into(),
            application_context_name: APPLICATION_CONTEXT.into(),
            presentation_contexts: pcs,
            user_variables: vec![UserVariableItem::MaxLength(16384)],
        }
    }

    fn pc(id: u8, abs: &str, ts: &[&str]) -> PresentationContextProposed {
        PresentationContextProposed {
            id,
            abstract_syntax: abs.into(),
            transfer_syntaxes: ts.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn storage_classes_are_recognized() {
        assert!(is_storage_sop_class(uids::CT_IMAGE_STORAGE));
        assert!(is_storage_sop_class(uids::ENHANCED_MR_IMAGE_STORAGE));
        assert!(is_storage_sop_class(
            uids::ULTRASOUND_MULTI_FRAME_IMAGE_STORAGE
        ));
        assert!(!is_storage_sop_class(uids::STORAGE_COMMITMENT_PUSH_MODEL));
        assert!(!is_storage_sop_class(uids::VERIFICATION));
        assert!(!is_storage_sop_class("1.2.3.4"));
    }

    #[test]
    fn unknown_called_ae_is_rejected() {
        let err =
            negotiate(&rq("OTHER", vec![]), "PACS", 16384, Some(ALL_SERVICES)).expect_err("reject");
        assert_eq!(
            err.source,
            AssociationRJSource::ServiceUser(
                AssociationRJServiceUserReason::CalledAETitleNotRecognized
            )
        );
    }

    #[test]
    fn picks_the_first_supported_syntax_and_rejects_the_rest() {
        let (ac, neg) = negotiate(
            &rq(
                "PACS",
                vec![
                    pc(
                        1,
                        uids::CT_IMAGE_STORAGE,
                        &[
                            "1.2.3.999",
                            uids::JPEG2000_LOSSLESS,
                            uids::EXPLICIT_VR_LITTLE_ENDIAN,
                        ],
                    ),
                    pc(3, "1.2.3.4.5", &[uids::IMPLICIT_VR_LITTLE_ENDIAN]),
                    pc(5, uids::VERIFICATION, &[uids::JPEG_BASELINE8_BIT]),
                ],
            ),
            "PACS",
            16384,
            Some(ALL_SERVICES),
        )
        .expect("accept");
        assert_eq!(neg.contexts[&1].transfer_syntax, uids::JPEG2000_LOSSLESS);
        assert_eq!(neg.peer_max_pdu, 16384);
        assert_eq!(
            ac.presentation_contexts[1].reason,
            PresentationContextResultReason::AbstractSyntaxNotSupported
        );
        assert_eq!(
            ac.presentation_contexts[2].reason,
            PresentationContextResultReason::TransferSyntaxesNotSupported
        );
        assert_eq!(neg.contexts.len(), 1);
    }
}
