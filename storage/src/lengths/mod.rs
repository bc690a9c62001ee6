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

mod header;
mod input;
mod part10;

pub use input::{Input, Stream};
pub use part10::{check_part10, check_part10_file};

use dicom_core::{Tag, VR};
use dicom_encoding::transfer_syntax::{Codec, Endianness, TransferSyntax};

use header::{explicit_header, implicit_vr, is_xs, number_size};
use input::Source;

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

#[cfg(test)]
mod tests;
