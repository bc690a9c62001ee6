//! Element lengths checked before dicom-parser reads a data set from a peer or a client.
//!
//! dicom-parser 0.10 reserves and zero-fills an element's declared length before it reads the
//! value, so a data set of a few bytes that declares a 4 GiB value makes it allocate and touch
//! 4 GiB (found by fuzzing). [`check`] walks the data set as dicom-parser's `DataSetReader`
//! frames it (the same headers, the same sequence and item states, the same ends of
//! defined-length items) without reading values, and refuses a value longer than the bytes
//! that follow it. It also refuses a binary number value whose length is not a multiple of the
//! number's size: dicom-parser would read the whole numbers, leave the rest unread, and frame
//! everything after it differently from this walk.

use std::io::{Read, Seek, SeekFrom};

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use dicom_encoding::transfer_syntax::{Codec, Endianness, TransferSyntax};

const UNDEFINED: u32 = u32::MAX;
const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);
const ITEM: Tag = Tag(0xFFFE, 0xE000);
const ITEM_DELIMITER: Tag = Tag(0xFFFE, 0xE00D);
const SEQUENCE_DELIMITER: Tag = Tag(0xFFFE, 0xE0DD);

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

/// The source, with the position and the end the walk needs.
struct Source<'a, R> {
    reader: &'a mut R,
    pos: u64,
    end: u64,
    big_endian: bool,
}

impl<R: Read + Seek> Source<'_, R> {
    fn remaining(&self) -> u64 {
        self.end.saturating_sub(self.pos)
    }

    /// `n` bytes, or `None` when fewer remain (where dicom-parser stops, ending or failing).
    fn bytes<const N: usize>(&mut self) -> Result<Option<[u8; N]>, LengthError> {
        if self.remaining() < N as u64 {
            return Ok(None);
        }
        let mut buf = [0u8; N];
        self.reader.read_exact(&mut buf)?;
        self.pos += N as u64;
        Ok(Some(buf))
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

    /// Skip a value of `len` bytes after checking that they are there.
    fn skip(&mut self, tag: Tag, len: u32) -> Result<(), LengthError> {
        let remaining = self.remaining();
        if u64::from(len) > remaining {
            return Err(LengthError::PastEnd {
                tag,
                len,
                remaining,
            });
        }
        self.reader.seek(SeekFrom::Current(i64::from(len)))?;
        self.pos += u64::from(len);
        Ok(())
    }
}

/// Check the lengths of the data set that `reader` holds from its current position to `len`
/// bytes further, in `encoding`. With `read_until`, stop where
/// `OpenFileOptions::read_until` makes dicom-object stop (a top-level tag at or past it).
pub fn check<R: Read + Seek>(
    reader: &mut R,
    len: u64,
    encoding: Encoding,
    read_until: Option<Tag>,
) -> Result<(), LengthError> {
    let mut src = Source {
        reader,
        pos: 0,
        end: len,
        big_endian: encoding == Encoding::ExplicitVrBigEndian,
    };
    let explicit = encoding != Encoding::ImplicitVrLittleEndian;
    let mut open: Vec<Open> = Vec::new();
    let mut in_sequence = false;
    let mut delimiter_check = false;
    let mut offset_table_next = false;
    let stops = |tag: Tag, open: &[Open]| open.is_empty() && read_until.is_some_and(|t| t <= tag);
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
            if std::mem::take(&mut offset_table_next) && len % 4 != 0 {
                return Err(LengthError::PartialNumber {
                    tag: ITEM,
                    vr: VR::UL,
                    len,
                    unit: 4,
                });
            }
            src.skip(ITEM, len)?;
            delimiter_check = true;
            continue;
        }
        // An element header.
        let Some(t) = src.bytes::<4>()? else {
            return Ok(());
        };
        let tag = src.tag(t);
        let (vr, len) = if tag.group() == 0xFFFE {
            let Some(l) = src.bytes::<4>()? else {
                return Ok(());
            };
            let len = src.u32(l);
            let vr = if explicit { VR::UN } else { implicit_vr(tag) };
            (vr, len)
        } else if explicit {
            let Some(v) = src.bytes::<2>()? else {
                return Ok(());
            };
            let vr = VR::from_binary(v).unwrap_or(VR::UN);
            let len = if short_length(vr) {
                let Some(l) = src.bytes::<2>()? else {
                    return Ok(());
                };
                u32::from(src.u16(l))
            } else {
                let Some(l) = src.bytes::<6>()? else {
                    return Ok(());
                };
                src.u32([l[2], l[3], l[4], l[5]])
            };
            (vr, len)
        } else {
            let Some(l) = src.bytes::<4>()? else {
                return Ok(());
            };
            (implicit_vr(tag), src.u32(l))
        };
        if vr == VR::SQ {
            if stops(tag, &open) {
                return Ok(());
            }
            in_sequence = true;
            open.push(Open {
                item: false,
                pixel_data: false,
                end: (len != UNDEFINED).then(|| src.pos + u64::from(len)),
            });
            delimiter_check = len == 0;
        } else if tag == ITEM_DELIMITER {
            // Outside a sequence dicom-parser ignores it; inside, it closes the item.
            if !open.is_empty() {
                open.pop();
                in_sequence = true;
                delimiter_check = true;
            }
        } else if tag == PIXEL_DATA && len == UNDEFINED {
            if stops(tag, &open) {
                return Ok(());
            }
            // Encapsulated pixel data: a sequence of fragments, the first the offset table.
            open.push(Open {
                item: false,
                pixel_data: true,
                end: None,
            });
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
            if stops(tag, &open) {
                return Ok(());
            }
            in_sequence = true;
            open.push(Open {
                item: false,
                pixel_data: false,
                end: None,
            });
        } else {
            if stops(tag, &open) {
                return Ok(());
            }
            // dicom-parser reads US/SS-or-other "xs" values as SS once it has seen signed
            // pixel data, whatever VR the header gives: both sizes must fit.
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

/// Check a data set held in memory.
pub fn check_bytes(bytes: &[u8], encoding: Encoding) -> Result<(), LengthError> {
    check(
        &mut std::io::Cursor::new(bytes),
        bytes.len() as u64,
        encoding,
        None,
    )
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
    fn reading_stops_where_read_until_stops() {
        // (0010,0010) PN "A", then Pixel Data declaring 4 GiB - 2: not read when stopping there.
        let bytes = [
            0x10, 0x00, 0x10, 0x00, b'P', b'N', 2, 0, b'A', b' ', 0xE0, 0x7F, 0x10, 0x00, b'O',
            b'W', 0, 0, 0xFE, 0xFF, 0xFF, 0xFF,
        ];
        let mut reader = std::io::Cursor::new(&bytes[..]);
        let encoding = Encoding::ExplicitVrLittleEndian;
        assert!(check(&mut reader, bytes.len() as u64, encoding, Some(PIXEL_DATA)).is_ok());
        assert!(check_bytes(&bytes, encoding).is_err());
    }
}
