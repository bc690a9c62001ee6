//! A Part 10 file as dicom-object opens it: preamble, File Meta Information, then the data
//! set in its transfer syntax.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use dicom_core::Tag;
use dicom_encoding::transfer_syntax::Codec;
use dicom_encoding::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::header::explicit_header;
use super::input::{FileInput, Input, Source, Stream};
use super::{check, Encoding, LengthError, UNDEFINED};

/// Check a Part 10 file as `OpenFileOptions::open_file(path)` reads it, to its end: ingest
/// reads it up to Pixel Data, WADO-RS and rendering later read all of it. Values are passed
/// over by seeking, so Pixel Data is not read.
pub fn check_part10_file(path: &Path) -> Result<(), LengthError> {
    let file = std::fs::File::open(path)?;
    let left = file.metadata()?.len();
    let mut input = FileInput {
        reader: BufReader::new(file),
        left,
    };
    check_part10(&mut input)
}

/// Check a Part 10 file as dicom-object reads it from a path: the preamble when one is
/// detected (or none is detected either way), the File Meta Information, then the data set
/// in its transfer syntax, inflated first when deflated.
pub fn check_part10<R: BufRead + Input>(reader: &mut R) -> Result<(), LengthError> {
    // dicom-object's `detect_preamble`: only a missing preamble with "DICM" first skips none.
    let head = reader.fill_buf()?;
    let no_preamble = !(head.len() >= 132 && head[128..132] == *b"DICM")
        && head.len() >= 4
        && head[..4] == *b"DICM";
    if !no_preamble {
        let mut preamble = [0u8; 128];
        if read_all(reader, &mut preamble)?.is_none() {
            return Ok(());
        }
    }
    let mut src = Source {
        reader: &mut *reader,
        pos: 0,
        big_endian: false,
    };
    // File Meta Information as `FileMetaTable::read_from` reads it: "DICM", the group length
    // (4 bytes, checked), then elements until that many bytes are read.
    let Some(magic) = src.bytes::<4>()? else {
        return Ok(());
    };
    if magic != *b"DICM" {
        return Ok(());
    }
    let Some((tag, _, len, _)) = explicit_header(&mut src)? else {
        return Ok(());
    };
    if tag != Tag(0x0002, 0x0000) || len != 4 {
        return Ok(());
    }
    let Some(group_length) = src.bytes::<4>()? else {
        return Ok(());
    };
    let group_length = u32::from_le_bytes(group_length);
    let mut read = 0u32;
    let mut ts_uid = None;
    while read < group_length {
        let Some((tag, _, len, header_len)) = explicit_header(&mut src)? else {
            return Ok(());
        };
        if len == UNDEFINED {
            return Ok(());
        }
        if tag == Tag(0x0002, 0x0010) && len <= 256 {
            let mut uid = vec![0u8; len as usize];
            if read_all(src.reader, &mut uid)?.is_none() {
                return Ok(());
            }
            src.pos += u64::from(len);
            ts_uid = Some(String::from_utf8_lossy(&uid).into_owned());
        } else {
            if tag == Tag(0x0002, 0x0010) {
                ts_uid = None; // not a transfer syntax dicom-object knows either
            }
            src.skip(tag, len)?;
        }
        read = read.saturating_add(header_len).saturating_add(len);
    }
    // dicom-object fails on a transfer syntax it does not know or cannot read.
    let Some(ts) = ts_uid.as_deref().and_then(|uid| {
        TransferSyntaxRegistry.get(uid.trim_end_matches(|c: char| c.is_whitespace() || c == '\0'))
    }) else {
        return Ok(());
    };
    match ts.codec() {
        Codec::Dataset(Some(adapter)) => {
            // Deflated data sets are Explicit VR Little Endian (PS3.5 A.5).
            let mut inflated = Stream(adapter.adapt_reader(Box::new(&mut *reader)));
            check(&mut inflated, Encoding::ExplicitVrLittleEndian).map_err(|e| match e {
                LengthError::Io(e) => LengthError::Inflate(e),
                e => e,
            })
        }
        Codec::Dataset(None) => Ok(()),
        _ => match Encoding::of(ts) {
            Some(encoding) => check(reader, encoding),
            None => Ok(()),
        },
    }
}

/// `read_exact` that says `None` at the end of the input.
fn read_all<R: Read + ?Sized>(reader: &mut R, buf: &mut [u8]) -> Result<Option<()>, LengthError> {
    match reader.read_exact(buf) {
        Ok(()) => Ok(Some(())),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e.into()),
    }
}
