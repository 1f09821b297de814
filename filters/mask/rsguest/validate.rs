//! The checksums and number rules each detector validates with, as
//! engine/validate.go. Each takes ASCII digits (or, for IBAN, upper-case
//! letters and digits) without separators.

/// Whether the digits pass the Luhn (mod 10) check.
pub fn luhn(d: &[u8]) -> bool {
    // from the last digit: plain, doubled, plain, … two an iteration
    const DOUBLED: [u32; 10] = [0, 2, 4, 6, 8, 1, 3, 5, 7, 9];
    let mut sum = 0u32;
    let mut k = d.len();
    while k >= 2 {
        sum += (d[k - 1] - b'0') as u32 + DOUBLED[(d[k - 2] - b'0') as usize];
        k -= 2;
    }
    if k == 1 {
        sum += (d[0] - b'0') as u32;
    }
    sum % 10 == 0
}

/// Whether d starts as an issued card number does (2-6).
pub fn card_prefix(d: &[u8]) -> bool {
    d[0] >= b'2' && d[0] <= b'6'
}

/// Whether nine digits are an ABA routing transit number.
pub fn aba_valid(d: &[u8]) -> bool {
    if d.len() != 9 {
        return false;
    }
    let n = |i: usize| (d[i] - b'0') as i32;
    let p = n(0) * 10 + n(1);
    if !(p <= 12 || (21..=32).contains(&p) || (61..=72).contains(&p) || p == 80) {
        return false;
    }
    let sum = 3 * (n(0) + n(3) + n(6)) + 7 * (n(1) + n(4) + n(7)) + (n(2) + n(5) + n(8));
    if sum == 0 {
        return false;
    }
    sum % 10 == 0
}

/// Whether nine digits are a possible US social security number.
pub fn ssn_valid(d: &[u8]) -> bool {
    if d.len() != 9 {
        return false;
    }
    let area = &d[0..3];
    if area == b"000" || area == b"666" || d[0] == b'9' {
        return false;
    }
    if d[3] == b'0' && d[4] == b'0' {
        return false;
    }
    !(d[5] == b'0' && d[6] == b'0' && d[7] == b'0' && d[8] == b'0')
}

/// Whether ten digits are a North American number.
pub fn nanp_valid(d: &[u8]) -> bool {
    d.len() == 10 && d[0] >= b'2' && d[3] >= b'2'
}

/// The length of an IBAN per country (SWIFT IBAN registry), 0 when none.
pub fn iban_length(cc: [u8; 2]) -> usize {
    match &cc {
        b"AD" => 24, b"AE" => 23, b"AL" => 28, b"AT" => 20, b"AZ" => 28,
        b"BA" => 20, b"BE" => 16, b"BG" => 22, b"BH" => 22, b"BI" => 27,
        b"BR" => 29, b"BY" => 28, b"CH" => 21, b"CR" => 22, b"CY" => 28,
        b"CZ" => 24, b"DE" => 22, b"DJ" => 27, b"DK" => 18, b"DO" => 28,
        b"EE" => 20, b"EG" => 29, b"ES" => 24, b"FI" => 18, b"FK" => 18,
        b"FO" => 18, b"FR" => 27, b"GB" => 22, b"GE" => 22, b"GI" => 23,
        b"GL" => 18, b"GR" => 27, b"GT" => 28, b"HN" => 28, b"HR" => 21,
        b"HU" => 28, b"IE" => 22, b"IL" => 23, b"IQ" => 23, b"IS" => 26,
        b"IT" => 27, b"JO" => 30, b"KW" => 30, b"KZ" => 20, b"LB" => 28,
        b"LC" => 32, b"LI" => 21, b"LT" => 20, b"LU" => 20, b"LV" => 21,
        b"LY" => 25, b"MC" => 27, b"MD" => 24, b"ME" => 22, b"MK" => 19,
        b"MN" => 20, b"MR" => 27, b"MT" => 31, b"MU" => 30, b"NI" => 28,
        b"NL" => 18, b"NO" => 15, b"OM" => 23, b"PK" => 24, b"PL" => 28,
        b"PS" => 29, b"PT" => 25, b"QA" => 29, b"RO" => 24, b"RS" => 22,
        b"RU" => 33, b"SA" => 24, b"SC" => 31, b"SD" => 18, b"SE" => 24,
        b"SI" => 19, b"SK" => 24, b"SM" => 27, b"SO" => 23, b"ST" => 25,
        b"SV" => 28, b"TL" => 23, b"TN" => 24, b"TR" => 26, b"UA" => 29,
        b"VA" => 22, b"VG" => 24, b"XK" => 20, b"YE" => 30,
        _ => 0,
    }
}

/// Whether s (upper-case letters and digits, of its country's length)
/// passes the ISO 13616 mod-97 check.
pub fn iban_valid(s: &[u8]) -> bool {
    if s.len() < 15 || !s[2].is_ascii_digit() || !s[3].is_ascii_digit() {
        return false;
    }
    // r*100 + 35 stays far below 2^64 while r < 2^56: reduce only then
    // (the same remainder as reducing at every step).
    let mut r: u64 = 0;
    let mut add = |c: u8| {
        if c.is_ascii_digit() {
            r = r * 10 + (c - b'0') as u64;
        } else if c.is_ascii_uppercase() {
            r = r * 100 + (c - b'A') as u64 + 10;
        }
        if r >= 1 << 56 {
            r %= 97;
        }
    };
    let mut k = 4;
    while k + 4 <= s.len() {
        add(s[k]);
        add(s[k + 1]);
        add(s[k + 2]);
        add(s[k + 3]);
        k += 4;
    }
    while k < s.len() {
        add(s[k]);
        k += 1;
    }
    add(s[0]);
    add(s[1]);
    add(s[2]);
    add(s[3]);
    let r = r % 97;
    r == 1
}
