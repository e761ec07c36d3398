//! nom helpers shared by the decoders. Every parser works on a slice of the
//! message; offsets for errors are computed from what is left
//! (`msg.len() - rest.len()`).

use nom::error::Error as NomError;
use nom::IResult;

pub(crate) type PResult<'a, T> = IResult<&'a [u8], T, NomError<&'a [u8]>>;

pub(crate) fn u8_(i: &[u8]) -> PResult<'_, u8> {
    nom::number::complete::be_u8(i)
}

pub(crate) fn u16_(i: &[u8]) -> PResult<'_, u16> {
    nom::number::complete::be_u16(i)
}

pub(crate) fn u32_(i: &[u8]) -> PResult<'_, u32> {
    nom::number::complete::be_u32(i)
}

pub(crate) fn take(i: &[u8], n: usize) -> PResult<'_, &[u8]> {
    nom::bytes::complete::take(n)(i)
}

/// Byte offset of `part` (a sub-slice of `whole`) from the start of `whole`.
/// Address arithmetic only, nothing is dereferenced; a slice from elsewhere
/// gives 0.
pub(crate) fn offset(whole: &[u8], part: &[u8]) -> usize {
    let start = whole.as_ptr() as usize;
    let at = part.as_ptr() as usize;
    if at >= start && at <= start + whole.len() {
        at - start
    } else {
        0
    }
}
