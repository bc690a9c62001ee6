//! Pixel data of BitsAllocated 1 (binary segmentations, overlays stored as images): frames
//! follow each other bit by bit, least significant bit first (PS3.5 8.1.1, D.2), so a frame
//! may start inside a byte.

/// Frame `frame` (1-based) of `pixels` pixels, one byte (0 or 1) per pixel; None when the
/// data is too short.
pub fn unpack_frame(bytes: &[u8], pixels: usize, frame: u32) -> Option<Vec<u8>> {
    let start = (frame as usize).checked_sub(1)?.checked_mul(pixels)?;
    let end = start.checked_add(pixels)?;
    if end.div_ceil(8) > bytes.len() {
        return None;
    }
    Some(
        (start..end)
            .map(|i| (bytes[i / 8] >> (i % 8)) & 1)
            .collect(),
    )
}

/// One frame's bits packed again from bit 0 (as WADO-RS sends a frame on its own).
pub fn pack(bits: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; bits.len().div_ceil(8)];
    for (i, b) in bits.iter().enumerate() {
        out[i / 8] |= (b & 1) << (i % 8);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_that_start_inside_a_byte_unpack_and_repack() {
        // Two frames of 5 pixels: 1,0,1,1,0 then 0,1,1,1,1 -> bits 0..10, LSB first.
        let bits = [1u8, 0, 1, 1, 0, 0, 1, 1, 1, 1];
        let packed = pack(&bits);
        assert_eq!(packed, [0b1100_1101, 0b0000_0011]);
        assert_eq!(unpack_frame(&packed, 5, 1).as_deref(), Some(&bits[..5]));
        assert_eq!(unpack_frame(&packed, 5, 2).as_deref(), Some(&bits[5..]));
        assert_eq!(unpack_frame(&packed, 5, 4), None);
        assert_eq!(unpack_frame(&packed, 5, 0), None);
        assert_eq!(pack(&bits[5..]), [0b0001_1110]);
    }
}
