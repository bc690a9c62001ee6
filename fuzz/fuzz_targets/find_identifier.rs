//! C-FIND / C-MOVE / C-GET identifiers: `identifier::parse_request` (a data set from the peer
//! in the presentation context's transfer syntax, its keys turned into matchers), then the
//! response identifier built from it for a match holding a value for every key.
//!
//! Also differential: when pacs_storage::lengths refuses an identifier because a value runs
//! a little past the end, dicom-parser must fail on it too (else the walk frames the data
//! set differently from the parser, and could miss what the parser reads).
//!
//! Input: byte 0 picks the transfer syntax (those negotiation accepts for these services) and
//! the match options; the rest is the identifier.
#![no_main]

use dicom_core::Tag;
use dicom_dictionary_std::uids;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use libfuzzer_sys::fuzz_target;
use pacs::dimse::services::identifier::{parse_request, response_identifier};
use pacs_fuzz::on_small_stack;
use pacs_storage::lengths::{self, Encoding, LengthError};
use pacs_storage::query::{MatchOptions, QueryMatch};
use pacs_storage::records::AttrValue;

const TRANSFER_SYNTAXES: [&str; 3] = [
    uids::IMPLICIT_VR_LITTLE_ENDIAN,
    uids::EXPLICIT_VR_LITTLE_ENDIAN,
    "1.2.840.10008.1.2.2",
];

fuzz_target!(|data: &[u8]| {
    let [sel, identifier @ ..] = data else {
        return;
    };
    let ts = TRANSFER_SYNTAXES[usize::from(sel % 3)];
    let options = MatchOptions {
        case_insensitive_names: sel & 4 != 0,
    };
    let syntax = TransferSyntaxRegistry.get(ts).expect("registered");
    let encoding = Encoding::of(syntax).expect("not deflated");
    if let Err(LengthError::PastEnd {
        tag,
        len,
        remaining,
    }) = lengths::check_bytes(identifier, encoding)
    {
        // Pixel data fragments are copied as far as they go, not read exactly: no failure.
        if tag != Tag(0xFFFE, 0xE000) && u64::from(len) - remaining <= 1 << 16 {
            assert!(
                InMemDicomObject::read_dataset_with_ts(identifier, syntax).is_err(),
                "lengths refused {tag} ({len} bytes, {remaining} remain) but dicom-parser reads it"
            );
        }
    }
    on_small_stack(|| {
        let Ok(request) = parse_request(identifier, ts, options) else {
            return;
        };
        let mut found = QueryMatch::default();
        for key in &request.query.keys {
            let _ = key.matcher.literal_prefix();
            let value = match key.vr.as_str() {
                "US" | "UL" | "SS" | "SL" | "FL" | "FD" => "7",
                "DA" => "20240102",
                _ => "X",
            };
            found.attributes.insert(
                key.tag.clone(),
                AttrValue {
                    vr: key.vr.clone(),
                    values: vec![value.to_string()],
                },
            );
        }
        let _ = response_identifier(&request, &found, "PACS");
    });
});
