//! Applies the action table to a data set, recursively through sequences.

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::header::Header;
use dicom_core::value::InMemFragment;
use dicom_core::value::{DataSetSequence, PrimitiveValue, Value};
use dicom_core::{DataElement, Length, Tag, VR};
use dicom_dictionary_std::{tags, StandardDataDictionary};
use dicom_object::mem::InMemElement;
use dicom_object::{DefaultDicomObject, InMemDicomObject};

type ElemValue = Value<InMemDicomObject, InMemFragment>;

use crate::actions::{self, Code};
use crate::dates;
use crate::{DateOption, DeidError, PatientPseudonym, Profile, Pseudonyms, Summary};

/// Deepest sequence nesting walked; deeper objects are refused with [`DeidError::TooDeep`]
/// rather than risk the stack (real objects, SR trees included, stay far below this).
pub const MAX_DEPTH: usize = 64;

/// The attributes this crate writes itself after the walk.
const WRITTEN: [Tag; 4] = [
    tags::PATIENT_IDENTITY_REMOVED,
    tags::DEIDENTIFICATION_METHOD,
    tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE,
    tags::LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED,
];

/// The text dummy: non-empty, fits every text VR's length limit (SH and CS: 16).
const DUMMY_TEXT: &str = "ANONYMIZED";

struct Ctx<'a> {
    profile: &'a Profile,
    pseudonyms: &'a mut dyn Pseudonyms,
    patient: PatientPseudonym,
    offset_days: i64,
    /// Upper-case identifying strings of this object, masked in cleaned text.
    identifiers: Vec<String>,
    summary: Summary,
    path: Vec<Tag>,
}

/// De-identify a Part 10 object in place (data set and file meta: MediaStorageSOPInstanceUID
/// follows the new SOPInstanceUID).
pub fn deidentify_file(
    obj: &mut DefaultDicomObject,
    profile: &Profile,
    pseudonyms: &mut dyn Pseudonyms,
) -> Result<Summary, DeidError> {
    let mut summary = deidentify(obj, profile, pseudonyms)?;
    let old = obj
        .meta()
        .media_storage_sop_instance_uid()
        .trim_end_matches(['\0', ' '])
        .to_owned();
    let sop = obj
        .get(tags::SOP_INSTANCE_UID)
        .and_then(|e| strings(&normalize_un(e.clone()).into_value()))
        .and_then(|v| v.into_iter().next());
    let new = match sop {
        Some(uid) if !uid.is_empty() => uid,
        // No usable SOP Instance UID: map the meta's own one, as the table's U says.
        _ if profile.retain_uids || old.is_empty() => old.clone(),
        _ => pseudonyms.uid(&old),
    };
    if new != old {
        summary.uids_replaced += 1;
        obj.update_meta(|meta| meta.media_storage_sop_instance_uid = new);
    }
    Ok(summary)
}

/// De-identify a bare data set in place, sequences included. On error the object is partly
/// modified and must be discarded.
pub fn deidentify(
    obj: &mut InMemDicomObject,
    profile: &Profile,
    pseudonyms: &mut dyn Pseudonyms,
) -> Result<Summary, DeidError> {
    let id = text(obj, tags::PATIENT_ID);
    let issuer = text(obj, tags::ISSUER_OF_PATIENT_ID);
    let name = text(obj, tags::PATIENT_NAME);
    // Without a Patient ID the name keys the pseudonym, so two unnamed patients stay apart.
    let key = if id.is_empty() && !name.is_empty() {
        format!("name:{name}")
    } else {
        id.clone()
    };
    let patient = pseudonyms.patient(&key, &issuer);
    let offset_days = if profile.retain_longitudinal_dates == DateOption::Modified {
        pseudonyms.date_offset_days(&key, &issuer)
    } else {
        0
    };
    let mut ctx = Ctx {
        profile,
        pseudonyms,
        patient,
        offset_days,
        identifiers: identifiers(obj, profile),
        summary: Summary::default(),
        path: Vec::new(),
    };
    walk(obj, &mut ctx)?;
    write_method(obj, profile);
    tracing::debug!(profile = %profile.name, summary = ?ctx.summary, "de-identified");
    Ok(ctx.summary)
}

/// A top-level text value, trimmed; empty when absent or not text.
fn text(obj: &InMemDicomObject, tag: Tag) -> String {
    obj.get(tag)
        .and_then(|e| e.value().to_str().ok())
        .map(|s| s.trim_matches(['\0', ' ']).to_owned())
        .unwrap_or_default()
}

/// The object's own identifying strings that cleaned text must not repeat: whole values and
/// the name components of person names (3 characters or more, so initials do not mask
/// every "A" of a description).
fn identifiers(obj: &InMemDicomObject, profile: &Profile) -> Vec<String> {
    let mut sources = vec![
        tags::PATIENT_NAME,
        tags::PATIENT_ID,
        Tag(0x0010, 0x1000), // Other Patient IDs (retired, still found in files)
        tags::OTHER_PATIENT_NAMES,
        tags::PATIENT_BIRTH_NAME,
        tags::PATIENT_MOTHER_BIRTH_NAME,
        tags::ACCESSION_NUMBER,
        tags::PATIENT_BIRTH_DATE,
        tags::REFERRING_PHYSICIAN_NAME,
        tags::PERFORMING_PHYSICIAN_NAME,
        tags::NAME_OF_PHYSICIANS_READING_STUDY,
        tags::OPERATORS_NAME,
        tags::PHYSICIANS_OF_RECORD,
        tags::REQUESTING_PHYSICIAN,
    ];
    if !profile.retain_institution_identity {
        sources.extend([tags::INSTITUTION_NAME, tags::INSTITUTION_ADDRESS]);
    }
    if !profile.retain_device_identity {
        sources.extend([tags::STATION_NAME, tags::DEVICE_SERIAL_NUMBER]);
    }
    let mut out = Vec::new();
    for tag in sources {
        let Some(values) = obj.get(tag).and_then(|e| e.value().primitive()) else {
            continue;
        };
        for v in values.to_multi_str().iter() {
            let v = v.trim().to_uppercase();
            for part in v.split(['^', '=', ' ', ',']) {
                if part.chars().count() >= 3 {
                    out.push(part.to_owned());
                }
            }
            if v.chars().count() >= 2 {
                out.push(v);
            }
        }
    }
    // Longest first, so a full name is masked before its parts.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

fn walk(obj: &mut InMemDicomObject, ctx: &mut Ctx<'_>) -> Result<(), DeidError> {
    if ctx.path.len() > MAX_DEPTH {
        let path = ctx
            .path
            .iter()
            .take(8)
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(" > ");
        return Err(DeidError::TooDeep {
            max: MAX_DEPTH,
            path: format!("{path} > ..."),
        });
    }
    let tag_list: Vec<Tag> = obj.tags().collect();
    for tag in tag_list {
        let Some(elem) = obj.take(tag) else { continue };
        if let Some(new) = process(elem, ctx)? {
            obj.put(new);
        }
    }
    Ok(())
}

/// The element after de-identification, `None` when removed.
fn process(elem: InMemElement, ctx: &mut Ctx<'_>) -> Result<Option<InMemElement>, DeidError> {
    let tag = elem.tag();
    let depth = ctx.path.len();
    // Private attributes (odd groups, creators included): no private attribute is known safe.
    // Group lengths (gggg,0000) are retired and would be wrong after the changes.
    if tag.group() % 2 == 1 || (tag.element() == 0 && tag.group() > 0x0002) {
        ctx.summary.removed += 1;
        return Ok(None);
    }
    if depth == 0 && WRITTEN.contains(&tag) {
        return Ok(Some(elem)); // rewritten after the walk
    }
    if tag == tags::PATIENT_ID || tag == tags::PATIENT_NAME {
        ctx.summary.replaced += 1;
        let value = if tag == tags::PATIENT_ID {
            ctx.patient.id.clone()
        } else {
            ctx.patient.name.clone()
        };
        let vr = if tag == tags::PATIENT_ID {
            VR::LO
        } else {
            VR::PN
        };
        return Ok(Some(DataElement::new(tag, vr, PrimitiveValue::from(value))));
    }
    let tag32 = (u32::from(tag.group()) << 16) | u32::from(tag.element());
    let code = actions::action_for(tag32, ctx.profile).map(Code::resolve);
    // Only values that are rewritten need reading; kept ones stay byte for byte.
    let elem = match code {
        Some(Code::D | Code::U | Code::C) => normalize_un(elem),
        _ => elem,
    };
    let vr = elem.vr();
    let (header, value) = elem.into_parts();
    match (code, value) {
        (Some(Code::X), _) => {
            ctx.summary.removed += 1;
            Ok(None)
        }
        (Some(Code::Z), Value::Sequence(_)) => {
            ctx.summary.emptied += 1;
            Ok(Some(sequence(tag, Vec::new())))
        }
        (Some(Code::Z), _) => {
            ctx.summary.emptied += 1;
            Ok(Some(DataElement::new(tag, vr, PrimitiveValue::Empty)))
        }
        // Kept, dummy or cleaned sequences, and those whose UIDs are replaced: every item is
        // de-identified with the table.
        (_, Value::Sequence(seq)) => {
            let mut items = seq.into_items().into_vec();
            ctx.path.push(tag);
            for item in &mut items {
                walk(item, ctx)?;
            }
            ctx.path.pop();
            Ok(Some(sequence(tag, items)))
        }
        (None | Some(Code::K), value) => Ok(Some(DataElement::new(tag, header.vr(), value))),
        (Some(Code::D), value) => {
            ctx.summary.replaced += 1;
            Ok(Some(dummy(tag, vr, &value, ctx)))
        }
        (Some(Code::U), value) => Ok(replace_uids(tag, vr, value, ctx)),
        (Some(Code::C), value) => Ok(clean(tag, vr, value, ctx)),
        // Compound codes were resolved above.
        (Some(_), value) => Ok(Some(DataElement::new(tag, vr, value))),
    }
}

fn sequence(tag: Tag, items: Vec<InMemDicomObject>) -> InMemElement {
    // Undefined length: the items changed, so any length read from the file is stale.
    DataElement::new(
        tag,
        VR::SQ,
        Value::Sequence(DataSetSequence::new(items, Length::UNDEFINED)),
    )
}

/// An element read as UN (implicit little endian without dictionary, or explicit UN) whose
/// attribute has a textual VR in the dictionary is re-read as text, so that U, C and D act on
/// its value rather than on opaque bytes.
fn normalize_un(elem: InMemElement) -> InMemElement {
    if elem.vr() != VR::UN {
        return elem;
    }
    let Some(VirtualVr::Exact(vr)) = StandardDataDictionary.by_tag(elem.tag()).map(|e| e.vr())
    else {
        return elem;
    };
    let textual = matches!(
        vr,
        VR::AE
            | VR::AS
            | VR::CS
            | VR::DA
            | VR::DS
            | VR::DT
            | VR::IS
            | VR::LO
            | VR::LT
            | VR::PN
            | VR::SH
            | VR::ST
            | VR::TM
            | VR::UC
            | VR::UI
            | VR::UR
            | VR::UT
    );
    let Some(bytes) = elem.value().primitive().map(|p| p.to_bytes().into_owned()) else {
        return elem;
    };
    if !textual {
        return elem;
    }
    let Ok(s) = String::from_utf8(bytes) else {
        return elem;
    };
    let values: Vec<String> = s
        .split('\\')
        .map(|v| v.trim_matches(['\0', ' ']).to_owned())
        .collect();
    DataElement::new(elem.tag(), vr, PrimitiveValue::Strs(values.into()))
}

/// The string values of a primitive value; `None` for binary values.
fn strings(value: &ElemValue) -> Option<Vec<String>> {
    match value.primitive()? {
        PrimitiveValue::Empty => Some(Vec::new()),
        p @ (PrimitiveValue::Str(_)
        | PrimitiveValue::Strs(_)
        | PrimitiveValue::Date(_)
        | PrimitiveValue::DateTime(_)
        | PrimitiveValue::Time(_)) => Some(
            p.to_multi_str()
                .iter()
                .map(|s| s.trim_matches(['\0', ' ']).to_owned())
                .collect(),
        ),
        _ => None,
    }
}

/// A non-zero-length value of the element's VR that carries no information.
fn dummy(tag: Tag, vr: VR, value: &ElemValue, ctx: &mut Ctx<'_>) -> InMemElement {
    let text = |s: &str| PrimitiveValue::from(s.to_owned());
    let v = match vr {
        VR::UI => {
            // A UID dummy must still be unique per original, so it is the pseudonymous UID.
            let originals = strings(value).unwrap_or_default();
            let originals = if originals.is_empty() {
                vec![String::new()]
            } else {
                originals
            };
            let new: Vec<String> = originals.iter().map(|u| ctx.pseudonyms.uid(u)).collect();
            PrimitiveValue::Strs(new.into())
        }
        VR::PN | VR::LO | VR::SH | VR::ST | VR::LT | VR::UT | VR::UC | VR::CS => text(DUMMY_TEXT),
        VR::AE => text("ANONYMOUS"),
        VR::AS => text("000D"),
        VR::DA => text("19000101"),
        VR::DT => text("19000101000000"),
        VR::TM => text("000000"),
        VR::DS | VR::IS => text("0"),
        VR::UR => text("urn:dicom:anonymized"),
        VR::AT => PrimitiveValue::Tags([Tag(0, 0)].into_iter().collect()),
        VR::US | VR::OW => PrimitiveValue::U16([0].into_iter().collect()),
        VR::SS => PrimitiveValue::I16([0].into_iter().collect()),
        VR::UL | VR::OL => PrimitiveValue::U32([0].into_iter().collect()),
        VR::SL => PrimitiveValue::I32([0].into_iter().collect()),
        VR::FL | VR::OF => PrimitiveValue::F32([0.0].into_iter().collect()),
        VR::FD | VR::OD => PrimitiveValue::F64([0.0].into_iter().collect()),
        VR::SV => PrimitiveValue::I64([0].into_iter().collect()),
        VR::UV | VR::OV => PrimitiveValue::U64([0].into_iter().collect()),
        // OB, UN and anything else opaque: two zero bytes (even length).
        _ => PrimitiveValue::U8([0, 0].into_iter().collect()),
    };
    DataElement::new(tag, vr, v)
}

/// U: every UID value replaced consistently; a value that is not text is dropped, since an
/// unreadable UID can neither be kept nor mapped.
fn replace_uids(tag: Tag, vr: VR, value: ElemValue, ctx: &mut Ctx<'_>) -> Option<InMemElement> {
    let Some(values) = strings(&value) else {
        tracing::debug!(%tag, ?vr, "UID attribute with a binary value removed");
        ctx.summary.removed += 1;
        return None;
    };
    let new: Vec<String> = values
        .iter()
        .map(|v| {
            if v.is_empty() {
                String::new()
            } else {
                ctx.summary.uids_replaced += 1;
                ctx.pseudonyms.uid(v)
            }
        })
        .collect();
    let value = if new.is_empty() {
        PrimitiveValue::Empty
    } else {
        PrimitiveValue::Strs(new.into())
    };
    Some(DataElement::new(tag, VR::UI, value))
}

/// C: dates shifted (Modified Dates option), text stripped of the object's identifiers,
/// anything else kept.
fn clean(tag: Tag, vr: VR, value: ElemValue, ctx: &mut Ctx<'_>) -> Option<InMemElement> {
    let Some(values) = strings(&value) else {
        // Binary values to clean (Maker Note, Device Setting Description, binary timestamps)
        // cannot be read, so cannot be cleaned or shifted: emptied rather than kept.
        ctx.summary.emptied += 1;
        return Some(DataElement::new(tag, vr, PrimitiveValue::Empty));
    };
    // The dictionary's VR decides too, so a date stored under a wrong VR (e.g. LO) is still
    // shifted or dropped rather than kept as a real date.
    let dict_vr = match StandardDataDictionary.by_tag(tag).map(|e| e.vr()) {
        Some(VirtualVr::Exact(v)) => v,
        _ => vr,
    };
    let modified = ctx.profile.retain_longitudinal_dates == DateOption::Modified;
    let shift: Option<fn(&str, i64) -> Option<String>> = match (vr, dict_vr) {
        (VR::DA, _) | (_, VR::DA) if modified => Some(dates::shift_da),
        (VR::DT, _) | (_, VR::DT) if modified => Some(dates::shift_dt),
        _ => None,
    };
    let new: Vec<String> = match shift {
        Some(f) => {
            let shifted: Option<Vec<String>> = values
                .iter()
                .map(|v| {
                    if v.is_empty() {
                        Some(String::new())
                    } else {
                        f(v, ctx.offset_days)
                    }
                })
                .collect();
            match shifted {
                Some(s) => s,
                None => {
                    // A real date that cannot be parsed cannot be moved: emptied.
                    ctx.summary.emptied += 1;
                    return Some(DataElement::new(tag, vr, PrimitiveValue::Empty));
                }
            }
        }
        None if matches!(
            vr,
            VR::LO | VR::SH | VR::ST | VR::LT | VR::UT | VR::UC | VR::PN
        ) =>
        {
            values.iter().map(|v| mask(v, &ctx.identifiers)).collect()
        }
        None => return Some(DataElement::new(tag, vr, value)),
    };
    if new != values {
        ctx.summary.replaced += 1;
    }
    let value = if new.is_empty() {
        PrimitiveValue::Empty
    } else {
        PrimitiveValue::Strs(new.into())
    };
    Some(DataElement::new(tag, vr, value))
}

/// The text with every occurrence (case-insensitive) of an identifier replaced by as many
/// asterisks, so the value's length and VR limits are unchanged.
fn mask(text: &str, identifiers: &[String]) -> String {
    let mut out: Vec<char> = text.chars().collect();
    let upper: Vec<char> = text.chars().flat_map(char::to_uppercase).collect();
    // Upper-casing may change the length (e.g. 'ß' -> "SS"); then match on the original.
    let hay = if upper.len() == out.len() {
        upper
    } else {
        out.clone()
    };
    for id in identifiers {
        let needle: Vec<char> = id.chars().collect();
        if needle.is_empty() || needle.len() > hay.len() {
            continue;
        }
        for start in 0..=hay.len() - needle.len() {
            if hay[start..start + needle.len()] == needle[..] {
                for c in &mut out[start..start + needle.len()] {
                    *c = '*';
                }
            }
        }
    }
    out.into_iter().collect()
}

/// PatientIdentityRemoved, DeidentificationMethod (and its code sequence) and
/// LongitudinalTemporalInformationModified, at the top level.
fn write_method(obj: &mut InMemDicomObject, profile: &Profile) {
    let codes = profile.method_codes();
    obj.put(DataElement::new(
        tags::PATIENT_IDENTITY_REMOVED,
        VR::CS,
        PrimitiveValue::from("YES"),
    ));
    // LO holds 64 characters a value: one value for the profile, one per option.
    let mut method = vec![format!("PS3.15 E.1-1 profile {}", profile.name)];
    method[0].truncate(64);
    method.extend(codes.iter().skip(1).map(|(_, meaning)| {
        let mut m = (*meaning).to_owned();
        m.truncate(64);
        m
    }));
    obj.put(DataElement::new(
        tags::DEIDENTIFICATION_METHOD,
        VR::LO,
        PrimitiveValue::Strs(method.into()),
    ));
    let items: Vec<InMemDicomObject> = codes
        .iter()
        .map(|(code, meaning)| {
            InMemDicomObject::from_element_iter([
                DataElement::new(tags::CODE_VALUE, VR::SH, PrimitiveValue::from(*code)),
                DataElement::new(
                    tags::CODING_SCHEME_DESIGNATOR,
                    VR::SH,
                    PrimitiveValue::from("DCM"),
                ),
                DataElement::new(tags::CODE_MEANING, VR::LO, PrimitiveValue::from(*meaning)),
            ])
        })
        .collect();
    obj.put(sequence(tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE, items));
    let longitudinal = match profile.retain_longitudinal_dates {
        DateOption::Remove => "REMOVED",
        DateOption::Full => "UNMODIFIED",
        DateOption::Modified => "MODIFIED",
    };
    obj.put(DataElement::new(
        tags::LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED,
        VR::CS,
        PrimitiveValue::from(longitudinal),
    ));
}
