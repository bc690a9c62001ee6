//! Element lengths checked before dicom-parser reads a data set from a peer or a client.
//!
//! dicom-parser 0.10 reserves and zero-fills an element's declared length before it reads the
//! value, so a data set of a few bytes that declares a 4 GiB value makes it allocate and touch
//! 4 GiB (found by fuzzing). [`check`] walks the data set as dicom-parser's `DataSetReader`
//! frames it (the same headers, the same sequence and item states, the same ends of
//! defined-length items), passing over values without keeping them, and refuses a value
//! longer than the bytes that follow it. It also refuses a binary number value whose length is
//! not a multiple of the number's size: dicom-parser would read the whole numbers, leave the
//! rest unread, and frame everything after it differently from this walk.
//! It also refuses sequences nested deeper than [`MAX_SEQUENCE_DEPTH`]: dicom-object builds
//! and drops nested items recursively, and a few thousand levels (under 200 KB) overflow a
//! thread's stack and abort the whole process.
//! [`check_part10_file`] does the same for a Part 10 file as `OpenFileOptions::open_file`
//! reads it: preamble, File Meta Information (whose reader has the same flaw), data set (to
//! its end, Pixel Data included, as WADO-RS and rendering read stored files whole).

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use dicom_encoding::transfer_syntax::{Codec, Endianness, TransferSyntax};
use dicom_encoding::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

const UNDEFINED: u32 = u32::MAX;
const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);
const ITEM: Tag = Tag(0xFFFE, 0xE000);
const ITEM_DELIMITER: Tag = Tag(0xFFFE, 0xE00D);
const SEQUENCE_DELIMITER: Tag = Tag(0xFFFE, 0xE0DD);

/// Deepest nesting of sequences accepted. Real objects stay far below it (structured reports,
/// the deepest in practice, nest a few tens of levels); recursive readers and writers of a
/// data set use a small, bounded amount of stack at this depth.
pub const MAX_SEQUENCE_DEPTH: usize = 64;

/// How a data set's elements are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    ImplicitVrLittleEndian,
    ExplicitVrLittleEndian,
    ExplicitVrBigEndian,
}

impl Encoding {
    /// The element encoding of a transfer syntax; `None` when the data set itself is encoded
    /// (deflated), which this walk cannot see through.
    pub fn of(ts: &TransferSyntax) -> Option<Encoding> {
        if matches!(ts.codec(), Codec::Dataset(_)) {
            return None;
        }
        Some(if ts.uid().trim_end_matches('\0') == "1.2.840.10008.1.2" {
            Encoding::ImplicitVrLittleEndian
        } else if ts.endianness() == Endianness::Big {
            Encoding::ExplicitVrBigEndian
        } else {
            Encoding::ExplicitVrLittleEndian
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LengthError {
    #[error("element {tag} declares {len} bytes but {remaining} remain")]
    PastEnd { tag: Tag, len: u32, remaining: u64 },
    #[error("element {tag} ({vr}) has a length of {len}, not a multiple of {unit}")]
    PartialNumber {
        tag: Tag,
        vr: VR,
        len: u32,
        unit: u32,
    },
    /// The deflated data set is not a deflate stream (the sender's fault, unlike `Io`).
    #[error("sequences nested more than {limit} deep (at {tag})")]
    TooDeep { tag: Tag, limit: usize },
    #[error("inflating the data set: {0}")]
    Inflate(std::io::Error),
    #[error("reading the data set: {0}")]
    Io(#[from] std::io::Error),
}

/// An open sequence or item, as dicom-parser's `SeqToken`.
struct Open {
    item: bool,
    pixel_data: bool,
    /// Where a defined-length sequence or item ends.
    end: Option<u64>,
}

/// Open a sequence (not an item), refusing one nested deeper than [`MAX_SEQUENCE_DEPTH`].
fn open_sequence(open: &mut Vec<Open>, tag: Tag, sequence: Open) -> Result<(), LengthError> {
    if open.iter().filter(|o| !o.item).count() >= MAX_SEQUENCE_DEPTH {
        return Err(LengthError::TooDeep {
            tag,
            limit: MAX_SEQUENCE_DEPTH,
        });
    }
    open.push(sequence);
    Ok(())
}

/// What the walk reads: headers are read, values passed over.
pub trait Input: Read {
    /// Pass over up to `n` bytes; how many there were.
    fn pass(&mut self, n: u64) -> std::io::Result<u64>;
}

impl Input for &[u8] {
    fn pass(&mut self, n: u64) -> std::io::Result<u64> {
        let k = usize::try_from(n).unwrap_or(usize::MAX).min(self.len());
        *self = &self[k..];
        Ok(k as u64)
    }
}

/// Any reader (an inflated data set), passed over by reading.
pub struct Stream<R>(pub R);

impl<R: Read> Read for Stream<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: Read> Input for Stream<R> {
    fn pass(&mut self, n: u64) -> std::io::Result<u64> {
        std::io::copy(&mut (&mut self.0).take(n), &mut std::io::sink())
    }
}

/// A file, passed over by seeking (pixel data is not read to be checked).
struct FileInput {
    reader: BufReader<std::fs::File>,
    /// Bytes after the reader's position.
    left: u64,
}

impl Read for FileInput {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.reader.read(buf)?;
        self.left = self.left.saturating_sub(n as u64);
        Ok(n)
    }
}

impl BufRead for FileInput {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.reader.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        self.reader.consume(n);
        self.left = self.left.saturating_sub(n as u64);
    }
}

impl Input for FileInput {
    fn pass(&mut self, n: u64) -> std::io::Result<u64> {
        let k = n.min(self.left);
        self.reader
            .seek_relative(i64::try_from(k).map_err(std::io::Error::other)?)?;
        self.left -= k;
        Ok(k)
    }
}

/// The source and the position in it (which defined-length sequences and items end at).
struct Source<'a, R: ?Sized> {
    reader: &'a mut R,
    pos: u64,
    big_endian: bool,
}

impl<R: Input + ?Sized> Source<'_, R> {
    /// `n` bytes, or `None` at the end (where dicom-parser stops, ending or failing).
    fn bytes<const N: usize>(&mut self) -> Result<Option<[u8; N]>, LengthError> {
        let mut buf = [0u8; N];
        match self.reader.read_exact(&mut buf) {
            Ok(()) => {
                self.pos += N as u64;
                Ok(Some(buf))
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn u16(&self, b: [u8; 2]) -> u16 {
        if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    }

    fn u32(&self, b: [u8; 4]) -> u32 {
        if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }

    fn tag(&self, b: [u8; 4]) -> Tag {
        Tag(self.u16([b[0], b[1]]), self.u16([b[2], b[3]]))
    }

    /// Pass over a value of `len` bytes, refusing it when fewer follow.
    fn skip(&mut self, tag: Tag, len: u32) -> Result<(), LengthError> {
        let passed = self.reader.pass(u64::from(len))?;
        if passed < u64::from(len) {
            return Err(LengthError::PastEnd {
                tag,
                len,
                remaining: passed,
            });
        }
        self.pos += passed;
        Ok(())
    }
}

/// Check the lengths of the data set that `reader` holds, in `encoding`, to its end.
pub fn check<R: Input + ?Sized>(reader: &mut R, encoding: Encoding) -> Result<(), LengthError> {
    let mut src = Source {
        reader,
        pos: 0,
        big_endian: encoding == Encoding::ExplicitVrBigEndian,
    };
    let explicit = encoding != Encoding::ImplicitVrLittleEndian;
    let mut open: Vec<Open> = Vec::new();
    let mut in_sequence = false;
    let mut delimiter_check = false;
    let mut offset_table_next = false;
    loop {
        // Defined-length sequences and items end where their length says.
        if delimiter_check {
            match open.last() {
                Some(Open {
                    item, end: Some(e), ..
                }) if *e == src.pos => {
                    in_sequence = *item;
                    open.pop();
                    continue;
                }
                // dicom-parser fails on an element running past its item's end.
                Some(Open { end: Some(e), .. }) if *e < src.pos => return Ok(()),
                _ => delimiter_check = false,
            }
        }
        if in_sequence {
            let Some(header) = src.bytes::<8>()? else {
                return Ok(());
            };
            let tag = src.tag([header[0], header[1], header[2], header[3]]);
            let len = src.u32([header[4], header[5], header[6], header[7]]);
            match tag {
                ITEM => {
                    let Some(pixel_data) = open.last().map(|o| o.pixel_data) else {
                        return Ok(()); // an item outside a sequence: dicom-parser fails
                    };
                    in_sequence = false;
                    open.push(Open {
                        item: true,
                        pixel_data,
                        end: (len != UNDEFINED).then(|| src.pos + u64::from(len)),
                    });
                    delimiter_check = len == 0;
                }
                // dicom-core refuses an item delimiter with a length, not a sequence delimiter.
                ITEM_DELIMITER if len != 0 => return Ok(()),
                ITEM_DELIMITER => {
                    open.pop();
                    in_sequence = true;
                    delimiter_check = true;
                }
                SEQUENCE_DELIMITER => {
                    open.pop();
                    in_sequence = false;
                    delimiter_check = true;
                }
                _ => return Ok(()),
            }
            continue;
        }
        if let Some(Open {
            item: true,
            pixel_data: true,
            end,
        }) = open.last()
        {
            // A fragment of encapsulated pixel data; the first is the offset table of u32s.
            let Some(end) = *end else {
                return Ok(()); // undefined length: dicom-parser fails
            };
            let len = u32::try_from(end - src.pos).unwrap_or(UNDEFINED);
            if std::mem::take(&mut offset_table_next) {
                check_offset_table(len)?;
            }
            src.skip(ITEM, len)?;
            delimiter_check = true;
            continue;
        }
        // An element header.
        let header = if explicit {
            explicit_header(&mut src)?.map(|(tag, vr, len, _)| (tag, vr, len))
        } else {
            match (src.bytes::<4>()?, src.bytes::<4>()?) {
                (Some(t), Some(l)) => {
                    let tag = src.tag(t);
                    Some((tag, implicit_vr(tag), src.u32(l)))
                }
                _ => None,
            }
        };
        let Some((tag, vr, len)) = header else {
            return Ok(());
        };
        if vr == VR::SQ {
            in_sequence = true;
            let end = (len != UNDEFINED).then(|| src.pos + u64::from(len));
            open_sequence(
                &mut open,
                tag,
                Open {
                    item: false,
                    pixel_data: false,
                    end,
                },
            )?;
            delimiter_check = len == 0;
        } else if tag == ITEM_DELIMITER {
            // Outside a sequence dicom-parser ignores it; inside, it closes the item.
            if !open.is_empty() {
                open.pop();
                in_sequence = true;
                delimiter_check = true;
            }
        } else if tag == PIXEL_DATA && len == UNDEFINED {
            // Encapsulated pixel data: a sequence of fragments, the first the offset table.
            open_sequence(
                &mut open,
                tag,
                Open {
                    item: false,
                    pixel_data: true,
                    end: None,
                },
            )?;
            let Some(header) = src.bytes::<8>()? else {
                return Ok(());
            };
            let item_tag = src.tag([header[0], header[1], header[2], header[3]]);
            let item_len = src.u32([header[4], header[5], header[6], header[7]]);
            match item_tag {
                ITEM => {
                    in_sequence = false;
                    open.push(Open {
                        item: true,
                        pixel_data: true,
                        end: (item_len != UNDEFINED).then(|| src.pos + u64::from(item_len)),
                    });
                    delimiter_check = item_len == 0;
                    offset_table_next = item_len != 0;
                }
                SEQUENCE_DELIMITER => {
                    open.pop();
                    in_sequence = false;
                }
                _ => return Ok(()),
            }
        } else if len == UNDEFINED {
            // Any other element of undefined length is read as a sequence.
            in_sequence = true;
            open_sequence(
                &mut open,
                tag,
                Open {
                    item: false,
                    pixel_data: false,
                    end: None,
                },
            )?;
        } else {
            // dicom-parser reads a value whose dictionary VR is "US or SS" as SS once it has
            // seen signed pixel data, whatever VR the header gives: both sizes must fit.
            let mut unit = number_size(vr);
            if is_xs(tag) {
                unit = unit.max(2);
            }
            if len % unit != 0 {
                return Err(LengthError::PartialNumber { tag, vr, len, unit });
            }
            src.skip(tag, len)?;
            delimiter_check = true;
        }
    }
}

fn check_offset_table(len: u32) -> Result<(), LengthError> {
    if len % 4 == 0 {
        Ok(())
    } else {
        Err(LengthError::PartialNumber {
            tag: ITEM,
            vr: VR::UL,
            len,
            unit: 4,
        })
    }
}

/// Check a data set held in memory.
pub fn check_bytes(mut bytes: &[u8], encoding: Encoding) -> Result<(), LengthError> {
    check(&mut bytes, encoding)
}

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

/// An Explicit VR header as dicom-encoding decodes it: tag, VR, length, header size.
fn explicit_header<R: Input + ?Sized>(
    src: &mut Source<'_, R>,
) -> Result<Option<(Tag, VR, u32, u32)>, LengthError> {
    let Some(t) = src.bytes::<4>()? else {
        return Ok(None);
    };
    let tag = src.tag(t);
    if tag.group() == 0xFFFE {
        let Some(l) = src.bytes::<4>()? else {
            return Ok(None);
        };
        return Ok(Some((tag, VR::UN, src.u32(l), 8)));
    }
    let Some(v) = src.bytes::<2>()? else {
        return Ok(None);
    };
    let vr = VR::from_binary(v).unwrap_or(VR::UN);
    if short_length(vr) {
        let Some(l) = src.bytes::<2>()? else {
            return Ok(None);
        };
        Ok(Some((tag, vr, u32::from(src.u16(l)), 8)))
    } else {
        let Some(l) = src.bytes::<6>()? else {
            return Ok(None);
        };
        Ok(Some((tag, vr, src.u32([l[2], l[3], l[4], l[5]]), 12)))
    }
}

/// The VR dicom-encoding's Implicit VR Little Endian decoder gives a tag.
fn implicit_vr(tag: Tag) -> VR {
    if tag == PIXEL_DATA || (tag.group() >> 8 == 0x60 && tag.element() == 0x3000) {
        VR::OW
    } else {
        StandardDataDictionary
            .by_tag(tag)
            .map_or(VR::UN, |e| e.vr().relaxed())
    }
}

fn is_xs(tag: Tag) -> bool {
    StandardDataDictionary
        .by_tag(tag)
        .is_some_and(|e| e.vr() == VirtualVr::Xs)
}

/// VRs whose explicit header has a 16-bit length (PS3.5 7.1.2), as dicom-encoding decodes.
fn short_length(vr: VR) -> bool {
    use VR::*;
    matches!(
        vr,
        AE | AS
            | AT
            | CS
            | DA
            | DS
            | DT
            | FL
            | FD
            | IS
            | LO
            | LT
            | PN
            | SH
            | SL
            | SS
            | ST
            | TM
            | UI
            | UL
            | US
    )
}

/// Size of one binary number of a VR that dicom-parser reads as numbers (1: read as bytes).
fn number_size(vr: VR) -> u32 {
    use VR::*;
    match vr {
        US | SS | OW => 2,
        AT | UL | SL | FL | OF | OL => 4,
        FD | OD | SV | UV | OV => 8,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::value::DataSetSequence;
    use dicom_core::{DataElement, PrimitiveValue};
    use dicom_dictionary_std::tags;
    use dicom_object::InMemDicomObject;
    use dicom_transfer_syntax_registry::entries::{
        EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN,
    };

    fn identifier() -> InMemDicomObject {
        let mut item = InMemDicomObject::new_empty();
        item.put(DataElement::new(
            tags::REFERENCED_SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from("1.2.840.10008.5.1.4.1.1.2"),
        ));
        let mut obj = InMemDicomObject::new_empty();
        obj.put(DataElement::new(
            tags::QUERY_RETRIEVE_LEVEL,
            VR::CS,
            PrimitiveValue::from("SERIES"),
        ));
        obj.put(DataElement::new(
            tags::PATIENT_NAME,
            VR::PN,
            PrimitiveValue::from("DOE*"),
        ));
        obj.put(DataElement::new(
            tags::REFERENCED_IMAGE_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(vec![item]),
        ));
        obj.put(DataElement::new(
            tags::ROWS,
            VR::US,
            PrimitiveValue::from(512_u16),
        ));
        obj
    }

    #[test]
    fn well_formed_data_sets_pass_in_every_encoding() {
        for (ts, encoding) in [
            (
                IMPLICIT_VR_LITTLE_ENDIAN.erased(),
                Encoding::ImplicitVrLittleEndian,
            ),
            (
                EXPLICIT_VR_LITTLE_ENDIAN.erased(),
                Encoding::ExplicitVrLittleEndian,
            ),
            (
                EXPLICIT_VR_BIG_ENDIAN.erased(),
                Encoding::ExplicitVrBigEndian,
            ),
        ] {
            assert_eq!(Encoding::of(&ts), Some(encoding));
            let mut bytes = Vec::new();
            identifier()
                .write_dataset_with_ts(&mut bytes, &ts)
                .expect("encode");
            check_bytes(&bytes, encoding).unwrap_or_else(|e| panic!("{}: {e}", ts.uid()));
        }
    }

    #[test]
    fn a_value_past_the_end_is_refused() {
        // (0010,0020) UT declaring 3.5 GiB, then one byte.
        let bytes = [
            0x10, 0x00, 0x20, 0x00, b'U', b'T', 0, 0, 0, 0, 0, 0xE0, b'1',
        ];
        assert!(matches!(
            check_bytes(&bytes, Encoding::ExplicitVrLittleEndian),
            Err(LengthError::PastEnd {
                len: 0xE000_0000,
                remaining: 1,
                ..
            })
        ));
    }

    #[test]
    fn a_value_past_the_end_inside_a_sequence_item_is_refused() {
        // (0008,1140) SQ undefined, item undefined, (0008,1150) UI declaring 64 KiB.
        let mut bytes = vec![
            0x08, 0x00, 0x40, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ];
        bytes.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        bytes.extend_from_slice(&[0x08, 0x00, 0x50, 0x11, b'U', b'N', 0, 0, 0, 0, 1, 0, b'1']);
        assert!(matches!(
            check_bytes(&bytes, Encoding::ExplicitVrLittleEndian),
            Err(LengthError::PastEnd { len: 0x1_0000, .. })
        ));
    }

    #[test]
    fn a_partial_binary_number_is_refused() {
        // (0028,0010) Rows, US of 3 bytes.
        let bytes = [0x28, 0x00, 0x10, 0x00, 3, 0, 0, 0, 1, 2, 3];
        assert!(matches!(
            check_bytes(&bytes, Encoding::ImplicitVrLittleEndian),
            Err(LengthError::PartialNumber { unit: 2, .. })
        ));
    }

    #[test]
    fn pixel_data_and_what_follows_it_are_checked() {
        // (0010,0010) PN "A", Pixel Data OW of 2 bytes, then (FFFC,FFFC) OB declaring 4 GiB.
        let mut bytes = vec![0x10, 0x00, 0x10, 0x00, b'P', b'N', 2, 0, b'A', b' '];
        bytes.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0, 2, 0, 0, 0, 0, 0]);
        let encoding = Encoding::ExplicitVrLittleEndian;
        assert!(check_bytes(&bytes, encoding).is_ok());
        bytes.extend_from_slice(&[0xFC, 0xFF, 0xFC, 0xFF, b'O', b'B', 0, 0, 0, 0, 0, 0xF0]);
        assert!(matches!(
            check_bytes(&bytes, encoding),
            Err(LengthError::PastEnd {
                tag: Tag(0xFFFC, 0xFFFC),
                ..
            })
        ));
        // Pixel Data itself declaring more than there is.
        bytes.truncate(10);
        bytes.extend_from_slice(&[
            0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0, 0, 0, 0, 0xF0, 0, 0,
        ]);
        assert!(matches!(
            check_bytes(&bytes, encoding),
            Err(LengthError::PastEnd {
                tag: PIXEL_DATA,
                ..
            })
        ));
    }

    /// `depth` sequences of undefined length, each in the one item of the one above.
    fn nested(depth: usize, encoding: Encoding) -> Vec<u8> {
        let mut bytes = Vec::new();
        for _ in 0..depth {
            // (0040,A730) Content Sequence, undefined length; an item of undefined length.
            match encoding {
                Encoding::ImplicitVrLittleEndian => {
                    bytes.extend_from_slice(&[0x40, 0x00, 0x30, 0xA7, 0xFF, 0xFF, 0xFF, 0xFF])
                }
                _ => bytes.extend_from_slice(&[
                    0x40, 0x00, 0x30, 0xA7, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
                ]),
            }
            bytes.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        }
        for _ in 0..depth {
            bytes.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
            bytes.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        }
        bytes
    }

    #[test]
    fn nesting_is_refused_beyond_the_limit_before_any_parser_sees_it() {
        for encoding in [
            Encoding::ImplicitVrLittleEndian,
            Encoding::ExplicitVrLittleEndian,
        ] {
            check_bytes(&nested(MAX_SEQUENCE_DEPTH, encoding), encoding)
                .unwrap_or_else(|e| panic!("{encoding:?} at the limit: {e}"));
            for depth in [MAX_SEQUENCE_DEPTH + 1, 30_000] {
                assert!(
                    matches!(
                        check_bytes(&nested(depth, encoding), encoding),
                        Err(LengthError::TooDeep { .. })
                    ),
                    "{encoding:?} {depth} deep"
                );
            }
        }
        // Elements of undefined length that are not SQ are read as sequences too (UN).
        let mut un = Vec::new();
        for _ in 0..=MAX_SEQUENCE_DEPTH {
            un.extend_from_slice(&[
                0x09, 0x00, 0x10, 0x10, b'U', b'N', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
            ]);
            un.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        }
        assert!(matches!(
            check_bytes(&un, Encoding::ExplicitVrLittleEndian),
            Err(LengthError::TooDeep { .. })
        ));
    }

    /// The repository's sample-dicom/ (found upward, as this file is also built in fuzz/).
    fn samples() -> Vec<std::path::PathBuf> {
        let mut dir = Some(Path::new(env!("CARGO_MANIFEST_DIR")));
        while let Some(d) = dir {
            let samples = d.join("sample-dicom");
            if let Ok(entries) = std::fs::read_dir(&samples) {
                return entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "dcm"))
                    .collect();
            }
            dir = d.parent();
        }
        Vec::new()
    }

    #[test]
    fn sample_files_pass_whole_and_up_to_pixel_data() {
        let files = samples();
        assert!(files.len() >= 5, "sample-dicom not found");
        for path in files {
            check_part10_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let bytes = std::fs::read(&path).expect("read sample");
            check_part10(&mut &bytes[..])
                .unwrap_or_else(|e| panic!("{} whole: {e}", path.display()));
        }
    }

    #[test]
    fn a_part10_file_declaring_a_huge_value_is_refused() {
        let meta = dicom_object::meta::FileMetaTableBuilder::new()
            .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.2")
            .media_storage_sop_instance_uid("1.2.3")
            .transfer_syntax("1.2.840.10008.1.2.1")
            .build()
            .expect("meta");
        let mut file = vec![0u8; 128];
        file.extend_from_slice(b"DICM");
        meta.write(&mut file).expect("write meta");
        // (0010,1010) UN declaring 4 GiB - 16, then one byte.
        file.extend_from_slice(&[
            0x10, 0x00, 0x10, 0x10, b'U', b'N', 0, 0, 0xF0, 0xFF, 0xFF, 0xFF,
        ]);
        file.push(b'1');
        assert!(matches!(
            check_part10(&mut &file[..]),
            Err(LengthError::PastEnd { remaining: 1, .. })
        ));
        // The same in the File Meta Information: Media Storage SOP Class UID as UN.
        let mut file = vec![0u8; 128];
        file.extend_from_slice(b"DICM");
        file.extend_from_slice(&[2, 0, 0, 0, b'U', b'L', 4, 0, 24, 0, 0, 0]);
        file.extend_from_slice(&[2, 0, 2, 0, b'U', b'N', 0, 0, 0xF0, 0xFF, 0xFF, 0xFF, b'1']);
        assert!(matches!(
            check_part10(&mut &file[..]),
            Err(LengthError::PastEnd { remaining: 1, .. })
        ));
    }
}
