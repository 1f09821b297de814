//! SWAR ("SIMD within a register"), as engine/swar.go: the scan loops look
//! at eight bytes at a time in a u64 to skip the bytes that cannot start a
//! value. Each mask has the high bit of byte k set when byte k matches,
//! exactly (no carries cross bytes), so the lowest set bit is the first
//! match.

use crate::detect::{CL_AT, CL_CTRL, CL_DASH, CL_DIGIT, CL_EQ, CL_LEAD, CL_SPACE};

pub const LO8: u64 = 0x0101010101010101;
pub const HI8: u64 = 0x8080808080808080;

/// The eight bytes at b[i..] as a little-endian word (the caller checks
/// i + 8 <= b.len()).
#[inline(always)]
pub fn load8(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(w)
}

/// Marks the bytes of x equal to c.
#[inline(always)]
pub fn eq_mask(x: u64, c: u8) -> u64 {
    let v = x ^ LO8.wrapping_mul(c as u64);
    !(((v & !HI8).wrapping_add(0x7f * LO8)) | v) & HI8
}

/// Marks the ASCII digits of x.
#[inline(always)]
pub fn digit_mask(x: u64) -> u64 {
    let t = x & !HI8;
    (t.wrapping_add(0x50 * LO8)) & !(t.wrapping_add(0x46 * LO8)) & !x & HI8
}

/// Marks the ASCII letters of x.
#[cfg(not(target_arch = "wasm32"))]
#[inline(always)]
pub fn letter_mask(x: u64) -> u64 {
    let l = x | 0x20 * LO8;
    let t = l & !HI8;
    (t.wrapping_add(0x1f * LO8)) & !(t.wrapping_add(0x05 * LO8)) & !l & HI8
}

/// Marks the bytes of x below 0x20.
#[inline(always)]
pub fn ctrl_mask(x: u64) -> u64 {
    let t = x & !HI8;
    !(t.wrapping_add(0x60 * LO8)) & !x & HI8
}

/// Marks the spaces of x that may end a "Bearer": those after "er", in
/// either case, and those in x's first two bytes.
#[inline(always)]
pub fn bearer_spaces(x: u64) -> u64 {
    let l = x | 0x20 * LO8;
    let v = (l ^ 0x20 * LO8)
        | (((l << 8) | b'r' as u64) ^ (b'r' as u64).wrapping_mul(LO8))
        | (((l << 16) | ((b'e' as u64) << 8) | b'e' as u64) ^ (b'e' as u64).wrapping_mul(LO8));
    !(((v & !HI8).wrapping_add(0x7f * LO8)) | v) & HI8
}

/// Marks the dashes of x that may start "-----BEGIN": those followed by a
/// dash, and x's last byte.
#[inline(always)]
pub fn pem_dashes(x: u64) -> u64 {
    let d = eq_mask(x, b'-');
    d & ((d >> 8) | (0x80u64 << 56))
}

/// The index of the first marked byte of a non-zero mask.
#[inline(always)]
pub fn first_byte(mask: u64) -> usize {
    (mask.trailing_zeros() / 8) as usize
}

/// A profile's trigger classes as all-ones or all-zeros words.
#[derive(Clone, Copy, Default)]
pub struct Prefilter {
    pub digit: u64,
    pub lead: u64,
    pub at: u64,
    pub eq: u64,
    pub dash: u64,
    pub space: u64,
    pub ctrl: u64,
    pub trig: u8,
}

fn on_if(b: bool) -> u64 {
    if b {
        !0
    } else {
        0
    }
}

impl Prefilter {
    pub fn new(trig: u8) -> Prefilter {
        Prefilter {
            digit: on_if(trig & CL_DIGIT != 0),
            lead: on_if(trig & CL_LEAD != 0),
            at: on_if(trig & CL_AT != 0),
            eq: on_if(trig & CL_EQ != 0),
            dash: on_if(trig & CL_DASH != 0),
            space: on_if(trig & CL_SPACE != 0),
            ctrl: on_if(trig & CL_CTRL != 0),
            trig,
        }
    }

    /// Marks the bytes of x that may start a value under the trigger
    /// classes (without the control bytes: scan_string's form).
    #[inline(always)]
    pub fn candidates_noctrl(&self, x: u64) -> u64 {
        digit_mask(x) & self.digit
            | (eq_mask(x, b'+') | eq_mask(x, b'(')) & self.lead
            | eq_mask(x, b'@') & self.at
            | eq_mask(x, b'=') & self.eq
            | pem_dashes(x) & self.dash
            | bearer_spaces(x) & self.space
    }

    /// Marks the bytes of x that may start a value, control bytes included.
    #[inline(always)]
    pub fn candidates(&self, x: u64) -> u64 {
        self.candidates_noctrl(x) | (ctrl_mask(x) | eq_mask(x, 0x7f)) & self.ctrl
    }

    /// The index of the first byte at or after t[i] that may start a value,
    /// or a position within 8 bytes of the end of t.
    #[inline(always)]
    pub fn skip(&self, t: &[u8], mut i: usize) -> usize {
        while i + 16 <= t.len() {
            // sixteen bytes an iteration (see below: loop iterations cost)
            let b = Block16::load(t, i);
            let c = self.candidates16(&b, true);
            if c != 0 {
                return i + c.trailing_zeros() as usize;
            }
            i += 16;
        }
        if i + 8 <= t.len() {
            let c = self.candidates(load8(t, i));
            if c != 0 {
                return i + first_byte(c);
            }
            i += 8;
        }
        i
    }

    /// Marks (bit k for byte k) the bytes of b that may start a value,
    /// exactly as candidates (ctrl) or candidates_noctrl (!ctrl) mark its
    /// two words (the spaces of each word's first two bytes, the dash of
    /// its last byte): where skip stops decides which bytes detect reads
    /// one by one, and so whether a control byte is seen (CSV).
    #[inline(always)]
    pub fn candidates16(&self, b: &Block16, ctrl: bool) -> u32 {
        let dash = b.eq(b'-');
        // bearer_spaces also marks NUL bytes (x | 0x20 is a space)
        let space = b.eq2(b' ', 0);
        let mut m = b.digits() & self.digit as u32
            | b.eq2(b'+', b'(') & self.lead as u32
            | b.eq(b'@') & self.at as u32
            | b.eq(b'=') & self.eq as u32
            | dash & ((dash >> 1) | 0x8080) & self.dash as u32;
        if space & self.space as u32 != 0 {
            m |= space & ((b.eq_fold(b'r') << 1) | 0x0101) & ((b.eq_fold(b'e') << 2) | 0x0303);
        }
        if ctrl {
            m |= b.ctrl() & self.ctrl as u32;
        }
        m
    }
}

/// Sixteen bytes of input, tested a byte class at a time: each test
/// returns a bitmask, bit k set when byte k is in the class. WebAssembly
/// SIMD (v128) on wasm32, two SWAR words elsewhere (native tests).
#[cfg(target_arch = "wasm32")]
pub struct Block16(core::arch::wasm32::v128);

#[cfg(target_arch = "wasm32")]
impl Block16 {
    /// The sixteen bytes at t[i..] (the caller checks i + 16 <= t.len()).
    #[inline(always)]
    pub fn load(t: &[u8], i: usize) -> Block16 {
        let w: &[u8; 16] = t[i..i + 16].try_into().unwrap();
        Block16(core::arch::wasm32::u8x16(
            w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], w[8], w[9], w[10], w[11], w[12], w[13], w[14], w[15],
        ))
    }

    /// The bytes equal to c.
    #[inline(always)]
    pub fn eq(&self, c: u8) -> u32 {
        use core::arch::wasm32::*;
        u8x16_bitmask(u8x16_eq(self.0, u8x16_splat(c))) as u32
    }

    /// The bytes equal to a or b.
    #[inline(always)]
    pub fn eq2(&self, a: u8, b: u8) -> u32 {
        use core::arch::wasm32::*;
        u8x16_bitmask(v128_or(u8x16_eq(self.0, u8x16_splat(a)), u8x16_eq(self.0, u8x16_splat(b)))) as u32
    }

    /// The bytes equal to the lower-case letter c in either case.
    #[inline(always)]
    pub fn eq_fold(&self, c: u8) -> u32 {
        use core::arch::wasm32::*;
        u8x16_bitmask(u8x16_eq(v128_or(self.0, u8x16_splat(0x20)), u8x16_splat(c))) as u32
    }

    /// The ASCII digits.
    #[inline(always)]
    pub fn digits(&self) -> u32 {
        use core::arch::wasm32::*;
        u8x16_bitmask(u8x16_lt(u8x16_sub(self.0, u8x16_splat(b'0')), u8x16_splat(10))) as u32
    }

    /// The ASCII letters.
    #[inline(always)]
    pub fn letters(&self) -> u32 {
        use core::arch::wasm32::*;
        u8x16_bitmask(u8x16_lt(u8x16_sub(v128_or(self.0, u8x16_splat(0x20)), u8x16_splat(b'a')), u8x16_splat(26))) as u32
    }

    /// The control bytes: below 0x20, and 0x7f.
    #[inline(always)]
    pub fn ctrl(&self) -> u32 {
        use core::arch::wasm32::*;
        u8x16_bitmask(v128_or(u8x16_lt(self.0, u8x16_splat(0x20)), u8x16_eq(self.0, u8x16_splat(0x7f)))) as u32
    }

    /// What ends a JSON string's raw run: '"', '\\' and the bytes below 0x20.
    #[inline(always)]
    pub fn string_stops(&self) -> u32 {
        use core::arch::wasm32::*;
        let x = self.0;
        u8x16_bitmask(v128_or(
            v128_or(u8x16_eq(x, u8x16_splat(b'"')), u8x16_eq(x, u8x16_splat(b'\\'))),
            u8x16_lt(x, u8x16_splat(0x20)),
        )) as u32
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub struct Block16(u64, u64);

#[cfg(not(target_arch = "wasm32"))]
impl Block16 {
    #[inline(always)]
    pub fn load(t: &[u8], i: usize) -> Block16 {
        Block16(load8(t, i), load8(t, i + 8))
    }

    /// The high bits of two SWAR masks as a 16-bit mask.
    #[inline(always)]
    fn bits(&self, f: impl Fn(u64) -> u64) -> u32 {
        // gathers the eight high bits into one byte, bit k from byte k
        let pack = |m: u64| ((((m & HI8) >> 7).wrapping_mul(0x0102040810204080)) >> 56) as u32;
        pack(f(self.0)) | pack(f(self.1)) << 8
    }

    pub fn eq(&self, c: u8) -> u32 {
        self.bits(|x| eq_mask(x, c))
    }
    pub fn eq2(&self, a: u8, b: u8) -> u32 {
        self.bits(|x| eq_mask(x, a) | eq_mask(x, b))
    }
    pub fn eq_fold(&self, c: u8) -> u32 {
        self.bits(|x| eq_mask(x | 0x20 * LO8, c))
    }
    pub fn digits(&self) -> u32 {
        self.bits(digit_mask)
    }
    pub fn letters(&self) -> u32 {
        self.bits(letter_mask)
    }
    pub fn ctrl(&self) -> u32 {
        self.bits(|x| ctrl_mask(x) | eq_mask(x, 0x7f))
    }
    pub fn string_stops(&self) -> u32 {
        self.bits(string_stops)
    }
}

/// Marks the bytes that end a JSON string's raw run: '"', '\\' and control
/// bytes.
#[inline(always)]
pub fn string_stops(x: u64) -> u64 {
    eq_mask(x, b'"') | eq_mask(x, b'\\') | ctrl_mask(x)
}

// Scans with few loop iterations. Under wazero, a module the host cannot
// vouch for runs interruptible: every loop iteration (loop header) calls
// out to check the call's deadline, which costs more than the loop's body.
// These helpers test eight bytes per iteration (SWAR, or a body unrolled
// eight times) and finish with a fixed-length tail LLVM unrolls.

/// The first index at or after j where f(t[index]) fails, or t.len().
#[inline(always)]
pub fn skip_while<F: Fn(u8) -> bool>(t: &[u8], mut j: usize, f: F) -> usize {
    let n = t.len();
    while j + 8 <= n {
        let w = &t[j..j + 8];
        for k in 0..8 {
            if !f(w[k]) {
                return j + k;
            }
        }
        j += 8;
    }
    for _ in 0..7 {
        if j < n && f(t[j]) {
            j += 1;
        } else {
            return j;
        }
    }
    j
}

/// The lowest index s in lo..=j such that f holds for every byte of
/// t[s..j] (scanning back from j, stopping at lo).
#[inline(always)]
pub fn skip_back_while<F: Fn(u8) -> bool>(t: &[u8], mut j: usize, lo: usize, f: F) -> usize {
    while j >= lo + 8 {
        let w = &t[j - 8..j];
        for k in 0..8 {
            if !f(w[7 - k]) {
                return j - k;
            }
        }
        j -= 8;
    }
    for _ in 0..7 {
        if j > lo && f(t[j - 1]) {
            j -= 1;
        } else {
            return j;
        }
    }
    j
}

/// The first index at or after j that is not an ASCII digit, or t.len().
#[inline(always)]
pub fn skip_digits(t: &[u8], mut j: usize) -> usize {
    let n = t.len();
    while j + 8 <= n {
        let m = !digit_mask(load8(t, j)) & HI8;
        if m != 0 {
            return j + first_byte(m);
        }
        j += 8;
    }
    skip_while(t, j, |c| c.is_ascii_digit())
}

/// a == b, eight bytes per iteration.
#[inline(always)]
pub fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let mut j = 0;
    while j + 8 <= n {
        if load8(a, j) != load8(b, j) {
            return false;
        }
        j += 8;
    }
    for _ in 0..7 {
        if j < n {
            if a[j] != b[j] {
                return false;
            }
            j += 1;
        }
    }
    true
}

/// Whether s holds a byte equal to a or b.
#[inline(always)]
pub fn has_either(s: &[u8], a: u8, b: u8) -> bool {
    let n = s.len();
    let mut j = 0;
    while j + 8 <= n {
        let x = load8(s, j);
        if eq_mask(x, a) | eq_mask(x, b) != 0 {
            return true;
        }
        j += 8;
    }
    skip_while(s, j, |c| c != a && c != b) < n
}
