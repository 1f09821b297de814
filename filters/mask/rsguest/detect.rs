//! The detectors, as engine/detect.go: byte classes, field contexts, the
//! scan loop and each value's reader.

use crate::config::*;
use crate::masker::{Masker, ErrKind};
use crate::validate::*;
use crate::swar::{bytes_eq, skip_back_while, skip_digits, skip_while};

// byte classes: what a byte can start.
pub const CL_DIGIT: u8 = 1;
pub const CL_LEAD: u8 = 2;
pub const CL_AT: u8 = 4;
pub const CL_EQ: u8 = 8;
pub const CL_DASH: u8 = 16;
pub const CL_SPACE: u8 = 32;
pub const CL_CTRL: u8 = 64;
pub const CL_STR: u8 = 128;

// char kinds, for the validators' boundaries.
const K_DIGIT: u8 = 1;
const K_UPPER: u8 = 2;
const K_LOWER: u8 = 4;
const K_WORD_OTHER: u8 = 8;
const K_LOCAL: u8 = 16;
const K_TOKEN: u8 = 32;

const fn make_cls() -> [u8; 256] {
    let mut cls = [0u8; 256];
    let mut c = b'0';
    while c <= b'9' {
        cls[c as usize] |= CL_DIGIT;
        c += 1;
    }
    cls[b'+' as usize] |= CL_LEAD;
    cls[b'(' as usize] |= CL_LEAD;
    cls[b'@' as usize] |= CL_AT;
    cls[b'=' as usize] |= CL_EQ;
    cls[b'-' as usize] |= CL_DASH;
    cls[b' ' as usize] |= CL_SPACE;
    let mut c = 0usize;
    while c < 0x20 {
        if c != 9 && c != 10 && c != 13 && c != 12 {
            cls[c] |= CL_CTRL;
        }
        c += 1;
    }
    cls[0x7f] |= CL_CTRL;
    cls[b'"' as usize] |= CL_STR;
    cls[b'\\' as usize] |= CL_STR;
    cls
}

const fn make_kind() -> [u8; 256] {
    let mut kind = [0u8; 256];
    let mut c = b'0';
    while c <= b'9' {
        kind[c as usize] |= K_DIGIT;
        c += 1;
    }
    let mut c = b'A';
    while c <= b'Z' {
        kind[c as usize] |= K_UPPER;
        c += 1;
    }
    let mut c = b'a';
    while c <= b'z' {
        kind[c as usize] |= K_LOWER;
        c += 1;
    }
    kind[b'_' as usize] |= K_WORD_OTHER;
    let local = b".%+-";
    let mut k = 0;
    while k < local.len() {
        kind[local[k] as usize] |= K_LOCAL;
        k += 1;
    }
    let token = b"-._@+=/%():~&?#,";
    let mut k = 0;
    while k < token.len() {
        kind[token[k] as usize] |= K_TOKEN;
        k += 1;
    }
    kind
}

pub static CLS: [u8; 256] = make_cls();
static KIND: [u8; 256] = make_kind();

#[inline(always)]
pub fn is_digit(c: u8) -> bool {
    KIND[c as usize] & K_DIGIT != 0
}
#[inline(always)]
pub fn is_alpha(c: u8) -> bool {
    KIND[c as usize] & (K_UPPER | K_LOWER) != 0
}
#[inline(always)]
pub fn is_alnum(c: u8) -> bool {
    KIND[c as usize] & (K_DIGIT | K_UPPER | K_LOWER) != 0
}
#[inline(always)]
pub fn is_word(c: u8) -> bool {
    KIND[c as usize] & (K_DIGIT | K_UPPER | K_LOWER | K_WORD_OTHER) != 0
}
#[inline(always)]
pub fn is_local(c: u8) -> bool {
    KIND[c as usize] & (K_DIGIT | K_UPPER | K_LOWER | K_WORD_OTHER | K_LOCAL) != 0
}
#[inline(always)]
pub fn is_token(c: u8) -> bool {
    KIND[c as usize] & (K_DIGIT | K_UPPER | K_LOWER | K_WORD_OTHER | K_TOKEN) != 0
}

impl Profile {
    /// The set of byte classes p's detectors start on.
    pub fn triggers(&self) -> u8 {
        let mut t = 0u8;
        let on = self.on;
        if on & (1 << ENT_CARD | 1 << ENT_IBAN | 1 << ENT_ABA | 1 << ENT_SSN | 1 << ENT_PHONE) != 0 {
            t |= CL_DIGIT;
        }
        if on & (1 << ENT_PHONE) != 0 {
            t |= CL_LEAD;
        }
        if on & (1 << ENT_EMAIL) != 0 {
            t |= CL_AT;
        }
        if on & (1 << ENT_AZURE_KEY | 1 << ENT_SAS) != 0 {
            t |= CL_EQ;
        }
        if on & (1 << ENT_PRIVATE_KEY) != 0 {
            t |= CL_DASH;
        }
        if on & (1 << ENT_BEARER) != 0 {
            t |= CL_SPACE;
        }
        t
    }
}

// field hints: what a field's name says its bare values are.
pub const HINT_SSN: u8 = 1;
pub const HINT_PHONE: u8 = 2;
pub const HINT_ABA: u8 = 4;

/// What a field's (or CSV column's) name says about its values.
#[derive(Clone, Copy, Default, PartialEq)]
pub struct FieldCtx {
    pub off: u64,
    pub hint: u8,
    pub whole: u8,
    pub has: bool,
}

/// One slot of Masker::ctx_cache.
#[derive(Clone, Default)]
pub struct CtxEntry {
    pub gen: u32,
    /// The key's length; a key of at most 16 bytes is in lo and hi
    /// (short_words), a longer one in key.
    pub klen: usize,
    pub lo: u64,
    pub hi: u64,
    pub key: Vec<u8>,
    pub ctx: FieldCtx,
}

/// The slot of Masker::ctx_cache for a non-empty field name.
pub fn ctx_slot(name: &[u8]) -> usize {
    if name.len() <= 16 {
        let (lo, hi) = crate::json::short_words(name);
        return ctx_slot_words(lo, hi, name.len());
    }
    let n = name.len();
    (n.wrapping_mul(31)
        .wrapping_add(name[0] as usize * 7)
        .wrapping_add(name[n - 1] as usize * 3)
        .wrapping_add(name[n / 2] as usize))
        & (CTX_SLOTS - 1)
}

/// The slots of Masker::ctx_cache: a name is looked for in its slot h
/// and in h ^ 1 (two ways, so two names that share a slot do not evict
/// each other on every record).
pub const CTX_SLOTS: usize = 128;

/// The slot of a field name of n bytes, at most 16, whose words are lo
/// and hi (short_words).
#[inline(always)]
pub fn ctx_slot_words(lo: u64, hi: u64, n: usize) -> usize {
    ((lo ^ hi.rotate_left(23) ^ n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 57) as usize
}

fn contains(h: &[u8], n: &[u8]) -> bool {
    find(h, n).is_some()
}

/// The offset of the first n in h (n non-empty).
pub fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    if n.is_empty() {
        return Some(0);
    }
    if h.len() < n.len() {
        return None;
    }
    let first = n[0];
    let last = h.len() - n.len();
    let mut i = 0;
    // the first byte's candidates a word at a time, each checked whole
    while i + 8 <= h.len() && i <= last {
        let mut m = crate::swar::eq_mask(crate::swar::load8(h, i), first);
        while m != 0 {
            let k = i + crate::swar::first_byte(m);
            if k > last {
                return None;
            }
            if bytes_eq(&h[k..k + n.len()], n) {
                return Some(k);
            }
            m &= m - 1;
        }
        i += 8;
    }
    while i <= last {
        if h[i] == first && bytes_eq(&h[i..i + n.len()], n) {
            return Some(i);
        }
        i += 1;
    }
    None
}

fn eq_fold_ascii(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_ascii_lowercase() == y.to_ascii_lowercase())
}

/// A detected value: t[s..e] is entity ent.
#[derive(Clone, Copy)]
pub struct Match {
    pub s: usize,
    pub e: usize,
    pub ent: u8,
}

#[derive(Clone, Copy)]
pub struct Group {
    pub s: usize,
    pub e: usize,
}

const MAX_GROUPS: usize = 24;
/// More groups than a value spans, but a phone led by '+' (read within a
/// run's first window).
const MAX_SPAN: usize = 8;

pub const PEM_BEGIN: &[u8] = b"-----BEGIN ";
pub const PEM_END: &[u8] = b"-----END ";
pub const PEM_DASH: &[u8] = b"-----";

const ABA_WORDS: [&[u8]; 4] = [b"routing", b"aba", b"rtn", b"transit"];
const SSN_WORDS: [&[u8]; 3] = [b"ssn", b"social security", b"social sec"];

impl Masker {
    /// The fieldCtx of a field named name (cached).
    pub fn context(&mut self, p: &Profile, name: &[u8]) -> FieldCtx {
        if name.is_empty() {
            return FieldCtx::default();
        }
        if p.id != self.ctx_prof {
            self.ctx_prof = p.id;
            self.ctx_gen = self.ctx_gen.wrapping_add(1);
        }
        let h = ctx_slot(name);
        let (lo, hi) = if name.len() <= 16 { crate::json::short_words(name) } else { (0, 0) };
        for s in [h, h ^ 1] {
            let e = &self.ctx_cache[s];
            if e.gen == self.ctx_gen && e.klen == name.len() && (if name.len() <= 16 { e.lo == lo && e.hi == hi } else { bytes_eq(&e.key, name) }) {
                return e.ctx;
            }
        }
        let fc = self.new_context(p, name);
        if name.len() <= 64 {
            let gen = self.ctx_gen;
            // a free way if there is one, else each way in turn
            let s = if self.ctx_cache[h].gen != gen {
                h
            } else if self.ctx_cache[h ^ 1].gen != gen {
                h ^ 1
            } else {
                self.ctx_flip ^= 1;
                h ^ self.ctx_flip
            };
            let e = &mut self.ctx_cache[s];
            e.gen = gen;
            e.klen = name.len();
            e.lo = lo;
            e.hi = hi;
            e.key.clear();
            if name.len() > 16 {
                e.key.extend_from_slice(name);
            }
            e.ctx = fc;
        }
        fc
    }

    /// Computes the fieldCtx of a field named name.
    fn new_context(&mut self, p: &Profile, name: &[u8]) -> FieldCtx {
        self.norm.clear();
        append_normalized(&mut self.norm, name);
        let n = &self.norm[..];
        let mut fc = FieldCtx::default();
        if n.is_empty() {
            return fc;
        }
        fc.off = p.ignore.get(n).copied().unwrap_or(0);
        let secret = secret_field(n);
        if p.on & (1 << ENT_ACCOUNT) != 0 && p.accounts.contains(n) && fc.off & (1 << ENT_ACCOUNT) == 0 {
            fc.whole = ENT_ACCOUNT;
            fc.has = true;
        } else if let Some(e) = secret {
            if p.on & (1 << e) != 0 && fc.off & (1 << e) == 0 {
                fc.whole = e;
                fc.has = true;
            }
        }
        if p.field_hints {
            if contains(n, b"ssn") || contains(n, b"socialsecurity") {
                fc.hint |= HINT_SSN;
            }
            if contains(n, b"phone") || contains(n, b"mobile") || contains(n, b"fax") {
                fc.hint |= HINT_PHONE;
            }
            if contains(n, b"routing") || n.starts_with(b"aba") || n == b"rtn" {
                fc.hint |= HINT_ABA;
            }
        }
        fc
    }

    /// Finds the sensitive values in t, into self.matches in order. It
    /// returns the offset of a value that may continue past t (a private
    /// key whose end is not in t) or t.len() when there is none.
    pub fn detect(&mut self, p: &Profile, t: &[u8], fc: &FieldCtx, fin: bool) -> Result<usize, ErrKind> {
        self.matches.clear();
        let trig = self.trig;
        let on = p.on & !fc.off;
        let n = t.len();
        let pending = n;
        let pf = self.pf;
        let mut i = 0usize;
        while i < n {
            let c = CLS[t[i] as usize];
            if c & trig == 0 {
                i = pf.skip(t, i + 1);
                if i < n && CLS[t[i] as usize] & trig == 0 {
                    i += 1;
                }
                continue;
            }
            if c & CL_CTRL != 0 {
                return Err(ErrKind::Binary);
            } else if c & (CL_DIGIT | CL_LEAD) != 0 {
                if c & CL_DIGIT != 0
                    && on & (1 << ENT_IBAN) != 0
                    && i >= 2
                    && is_alpha(t[i - 1])
                    && is_alpha(t[i - 2])
                    && self.boundary_before(t, i - 2)
                {
                    let e = self.iban(t, i - 2);
                    if e > 0 {
                        self.add(i - 2, e, ENT_IBAN);
                        i = e;
                        continue;
                    }
                }
                i = self.numeric(t, i, fc, on);
            } else if c & CL_AT != 0 {
                if on & (1 << ENT_EMAIL) != 0 {
                    let (s, e) = email(t, i);
                    if e > 0 && (self.matches.is_empty() || self.matches[self.matches.len() - 1].e <= s) {
                        self.add(s, e, ENT_EMAIL);
                        i = e;
                        continue;
                    }
                }
                i += 1;
            } else if c & CL_EQ != 0 {
                let (e, ent) = secret_after_eq(t, i, on);
                if e > 0 {
                    self.add(i + 1, e, ent);
                    i = e;
                    continue;
                }
                i += 1;
            } else if c & CL_DASH != 0 {
                if on & (1 << ENT_PRIVATE_KEY) != 0 && t[i..].starts_with(PEM_BEGIN) {
                    let (mut e, complete) = pem_block(t, i);
                    if !complete {
                        if !fin {
                            return Ok(i);
                        }
                        e = n;
                    }
                    if e > 0 {
                        self.add(i, e, ENT_PRIVATE_KEY);
                        i = e;
                        continue;
                    }
                } else if on & (1 << ENT_PRIVATE_KEY) != 0
                    && !fin
                    && n - i < PEM_BEGIN.len()
                    && PEM_BEGIN.starts_with(&t[i..])
                {
                    return Ok(i);
                }
                i += 1;
            } else if c & CL_SPACE != 0 {
                if on & (1 << ENT_BEARER) != 0
                    && i >= 6
                    && t[i - 1] | 0x20 == b'r'
                    && eq_fold_ascii(&t[i - 6..i], b"bearer")
                    && (i == 6 || !is_alpha(t[i - 7]))
                {
                    let j = skip_while(t, i + 1, |c| {
                        is_word(c) || c == b'-' || c == b'.' || c == b'~' || c == b'+' || c == b'/'
                    });
                    let j = skip_while(t, j, |c| c == b'=');
                    if j - (i + 1) >= 8 {
                        self.add(i + 1, j, ENT_BEARER);
                        i = j;
                        continue;
                    }
                }
                i += 1;
            } else {
                i += 1;
            }
        }
        if !p.patterns.is_empty() {
            self.custom_patterns(p, t, fc.off);
        }
        Ok(pending)
    }

    #[inline(always)]
    pub fn add(&mut self, s: usize, e: usize, ent: u8) {
        self.matches.push(Match { s, e, ent });
    }

    /// Whether t[i] starts a token.
    fn boundary_before(&self, t: &[u8], i: usize) -> bool {
        let (b, bb) = if i >= 2 {
            (t[i - 1], t[i - 2])
        } else if i == 1 {
            (t[0], self.before)
        } else {
            (self.before, 0)
        };
        if is_word(b) {
            return false;
        }
        !(b == b'.' && is_digit(bb))
    }

    /// Reads the number-like run at t[i] and adds the values it holds; it
    /// returns where scanning resumes.
    #[inline(never)]
    fn numeric(&mut self, t: &[u8], mut i: usize, fc: &FieldCtx, on: u64) -> usize {
        let n = t.len();
        let mut start = i;
        let mut lead = 0u8;
        if t[i] == b'+' || t[i] == b'(' {
            lead = t[i];
            i += 1;
            if i >= n || !is_digit(t[i]) {
                return i;
            }
        }
        if lead != 0 && !self.boundary_before(t, start) {
            start = i;
            lead = 0;
        }
        if !self.boundary_before(t, start) {
            return skip_while(t, i, is_word);
        }
        let mut gs = std::mem::take(&mut self.groups);
        gs.clear();
        let mut a = 0;
        let mut led = lead != 0;
        let mut j = i;
        loop {
            let s = j;
            j = skip_digits(t, j);
            gs.push(Group { s, e: j });
            let mut k = j;
            if k < n && is_sep(t[k]) {
                k += 1;
                if k < n && is_sep(t[k]) {
                    k += 1;
                }
            }
            if k == j || k >= n || !is_digit(t[k]) {
                break;
            }
            if gs.len() == MAX_GROUPS {
                // A long run: decide the values that start where none can
                // reach past the groups read, and slide on (bounded memory,
                // and a value astride the window still read whole).
                a = self.values(t, &gs, a, MAX_GROUPS - MAX_SPAN, led, start, fc, on);
                gs.drain(..a);
                a = 0;
                led = false;
            }
            j = k;
        }
        let mut next = gs[gs.len() - 1].e;
        let mut ng = gs.len();
        if !boundary_after(t, next) {
            ng -= 1;
            next = skip_while(t, next, is_word);
        }
        self.values(t, &gs[..ng], a, ng, led, start, fc, on);
        self.groups = gs;
        next
    }

    /// Adds the values starting at groups a..limit of gs, at each the
    /// longest, and returns the first group not yet decided.
    #[allow(clippy::too_many_arguments)]
    fn values(&mut self, t: &[u8], gs: &[Group], mut a: usize, limit: usize, led: bool, start: usize, fc: &FieldCtx, on: u64) -> usize {
        while a < limit {
            let mut found = false;
            let mut b = gs.len();
            if b - a > MAX_SPAN && !(a == 0 && led) {
                b = a + MAX_SPAN; // no longer span is a value
            }
            while b > a {
                if let Some((s, e, ent)) = self.classify(t, &gs[a..b], a == 0 && led, start, fc, on) {
                    self.add(s, e, ent);
                    a = b;
                    found = true;
                    break;
                }
                b -= 1;
            }
            if !found {
                a += 1;
            }
        }
        a
    }

    /// Which entity the digit groups gs are, if any.
    fn classify(
        &mut self,
        t: &[u8],
        gs: &[Group],
        led: bool,
        start: usize,
        fc: &FieldCtx,
        on: u64,
    ) -> Option<(usize, usize, u8)> {
        // One pass over the groups: the digits, their count, the one
        // separator throughout (uniform: 1 when there is none such) and the
        // card's group shape.
        let mut d = std::mem::take(&mut self.digits);
        d.clear();
        let mut nd = 0;
        let mut uniform = 0u8;
        let mut shape = true;
        let last = gs.len() - 1;
        if gs.len() > 1 {
            uniform = t[gs[0].e];
        }
        for (k, g) in gs.iter().enumerate() {
            let l = g.e - g.s;
            nd += l;
            if nd <= 19 {
                d.extend_from_slice(&t[g.s..g.e]);
            }
            if k < last && uniform != 1 && (gs[k + 1].s - g.e != 1 || t[g.e] != uniform) {
                uniform = 1;
            }
            if l > 6 || (l < 3 && k != last) {
                shape = false;
            }
        }
        let r = if nd > 19 || nd < crate::json::MIN_DIGITS {
            None
        } else {
            self.classify_digits(t, gs, led, start, fc, on, &d, nd, uniform, gs.len() == 1 || shape)
        };
        self.digits = d;
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn classify_digits(
        &self,
        t: &[u8],
        gs: &[Group],
        led: bool,
        start: usize,
        fc: &FieldCtx,
        on: u64,
        d: &[u8],
        nd: usize,
        uniform: u8,
        shape: bool,
    ) -> Option<(usize, usize, u8)> {
        let mut s = gs[0].s;
        let e = gs[gs.len() - 1].e;
        if on & (1 << ENT_CARD) != 0
            && nd >= 13
            && card_prefix(d)
            && (gs.len() == 1 || uniform == b' ' || uniform == b'-')
            && shape
            && luhn(d)
        {
            return Some((s, e, ENT_CARD));
        }
        if on & (1 << ENT_PHONE) != 0 {
            if led && t[start] == b'+' && (8..=15).contains(&nd) && d[0] != b'0' {
                return Some((start, e, ENT_PHONE));
            }
            if nd == 10 || (nd == 11 && d[0] == b'1') {
                let dd = &d[nd - 10..];
                if nanp_valid(dd) && phone_shape(gs, nd) {
                    if led {
                        s = start;
                    }
                    return Some((s, e, ENT_PHONE));
                }
                if gs.len() == 1 && fc.hint & HINT_PHONE != 0 && nanp_valid(dd) {
                    return Some((s, e, ENT_PHONE));
                }
            }
        }
        if nd == 9
            && on & (1 << ENT_SSN) != 0
            && gs.len() == 3
            && (uniform == b'-' || uniform == b' ')
            && gs[0].e - gs[0].s == 3
            && gs[1].e - gs[1].s == 2
            && ssn_valid(d)
        {
            return Some((s, e, ENT_SSN));
        }
        if nd == 9 && gs.len() == 1 && !led {
            if fc.hint & HINT_SSN != 0 && on & (1 << ENT_SSN) != 0 && ssn_valid(d) {
                return Some((s, e, ENT_SSN));
            }
            if on & (1 << ENT_ABA) != 0 && aba_valid(d) && (fc.hint & HINT_ABA != 0 || self.keyword_before(t, s, &ABA_WORDS)) {
                return Some((s, e, ENT_ABA));
            }
            if on & (1 << ENT_SSN) != 0 && ssn_valid(d) && self.keyword_before(t, s, &SSN_WORDS) {
                return Some((s, e, ENT_SSN));
            }
        }
        None
    }

    /// Whether one of words (lower case) appears, in any case, in the 40
    /// bytes before t[s] (reaching into the stream's tail).
    fn keyword_before(&self, t: &[u8], s: usize, words: &[&[u8]]) -> bool {
        const WINDOW: usize = 40;
        let mut w = [0u8; 2 * WINDOW];
        let mut l = 0;
        let tail: &[u8] = if self.tail_on { &self.ts.tail } else { &[] };
        if s < WINDOW && !tail.is_empty() {
            let k = tail.len().saturating_sub(WINDOW - s);
            let src = &tail[k..];
            w[..src.len()].copy_from_slice(src);
            l = src.len();
        }
        let lo = s.saturating_sub(WINDOW);
        w[l..l + (s - lo)].copy_from_slice(&t[lo..s]);
        l += s - lo;
        // lower-case A-Z, a word at a time (bytes >= 0x80 stay)
        for k in 0..(2 * WINDOW) / 8 {
            let x = crate::swar::load8(&w, 8 * k);
            let v = x & !crate::swar::HI8;
            let upper = (v + (0x80 - 0x41) * crate::swar::LO8) & !(v + (0x80 - 0x5b) * crate::swar::LO8) & !x & crate::swar::HI8;
            w[8 * k..8 * k + 8].copy_from_slice(&(x + (upper >> 2)).to_le_bytes());
        }
        let w = &w[..l];
        words.iter().any(|kw| contains(w, kw))
    }

    /// The end of a valid IBAN starting at t[s] (two letters), or 0.
    #[inline(never)]
    fn iban(&mut self, t: &[u8], s: usize) -> usize {
        let cc = [t[s] & !0x20, t[s + 1] & !0x20];
        let want = iban_length(cc);
        if want == 0 {
            return 0;
        }
        let b = &mut self.iban_buf;
        b.clear();
        let mut j = s;
        let n = t.len();
        // the electronic form, want letters and digits in a row, as the
        // loop below reads it, a word at a time
        let e = skip_while(&t[..n.min(s + want)], s, is_alnum);
        if e == s + want {
            let mut k = s;
            while k + 8 <= e {
                let x = crate::swar::load8(t, k);
                // letters and digits only: the lower-case letters are the bytes >= 'a'
                let lower = ((x & !crate::swar::HI8) + (0x80 - 0x61) * crate::swar::LO8) & crate::swar::HI8;
                b.extend_from_slice(&(x - (lower >> 2)).to_le_bytes());
                k += 8;
            }
            for _ in 0..7 {
                if k < e {
                    b.push(upper(t[k]));
                    k += 1;
                }
            }
            j = e;
        }
        while j < n && b.len() < want {
            let c = t[j];
            if is_alnum(c) {
                b.push(upper(c));
                j += 1;
            } else if c == b' ' && b.len() % 4 == 0 && j + 1 < n && is_alnum(t[j + 1]) {
                j += 1;
            } else {
                return 0;
            }
        }
        if b.len() != want || !boundary_after(t, j) || !iban_valid(b) {
            return 0;
        }
        j
    }

    /// Adds the matches of p's regular expressions and puts the matches back
    /// in order, the first and longest winning an overlap.
    #[inline(never)]
    fn custom_patterns(&mut self, p: &Profile, t: &[u8], off: u64) {
        let mut added = false;
        for pr in &p.patterns {
            if off & (1u64 << pr.ent) != 0 {
                continue;
            }
            let ent = pr.ent;
            let matches = &mut self.matches;
            self.vm.find_all(&pr.prog, t, |s, e| {
                if e > s {
                    matches.push(Match { s, e, ent });
                    added = true;
                }
            });
        }
        if !added {
            return;
        }
        let ms = &mut self.matches;
        ms.sort_by(|a, b| {
            if a.s != b.s {
                a.s.cmp(&b.s)
            } else {
                b.e.cmp(&a.e)
            }
        });
        let mut w = 0;
        let mut end: isize = -1;
        for r in 0..ms.len() {
            let x = ms[r];
            if (x.s as isize) < end {
                continue;
            }
            ms[w] = x;
            w += 1;
            end = x.e as isize;
        }
        ms.truncate(w);
    }
}

/// Whether a token ending at t[e] ends there.
pub fn boundary_after(t: &[u8], e: usize) -> bool {
    if e >= t.len() {
        return true;
    }
    if is_word(t[e]) {
        return false;
    }
    !(t[e] == b'.' && e + 1 < t.len() && is_digit(t[e + 1]))
}

fn is_sep(c: u8) -> bool {
    c == b' ' || c == b'-' || c == b'.' || c == b'(' || c == b')'
}

/// Whether the groups are written as a North American number is.
fn phone_shape(gs: &[Group], nd: usize) -> bool {
    let l = |k: usize| gs[k].e - gs[k].s;
    if gs.len() == 3 && nd == 10 {
        return l(0) == 3 && l(1) == 3;
    }
    if gs.len() == 4 && nd == 11 {
        return l(0) == 1 && l(1) == 3 && l(2) == 3;
    }
    false
}

pub fn upper(c: u8) -> u8 {
    if c.is_ascii_lowercase() {
        c - (b'a' - b'A')
    } else {
        c
    }
}

/// The span of the address around the '@' at t[at], or e == 0.
#[inline(never)]
fn email(t: &[u8], at: usize) -> (usize, usize) {
    let s = skip_back_while(t, at, at.saturating_sub(64), is_local);
    if s == at || t[s] == b'.' || (s > 0 && is_local(t[s - 1])) {
        return (0, 0);
    }
    let mut j = at + 1;
    let n = t.len();
    let mut labels = 0;
    let mut last_start;
    loop {
        let ls = j;
        j = skip_while(t, j, |c| is_alnum(c) || c == b'-');
        if j == ls {
            return (0, 0);
        }
        labels += 1;
        last_start = ls;
        if j + 1 < n && t[j] == b'.' && is_alnum(t[j + 1]) {
            j += 1;
            continue;
        }
        break;
    }
    if labels < 2 || j - last_start < 2 || j - at > 253 {
        return (0, 0);
    }
    if skip_while(&t[..j], last_start, is_alpha) != j {
        return (0, 0);
    }
    if j < n && (is_word(t[j]) || t[j] == b'@') {
        return (0, 0);
    }
    (s, j)
}

/// Reads a secret value after the '=' at t[i]: an Azure Storage
/// AccountKey= (or SharedAccessKey=) and a SAS sig=.
#[inline(never)]
fn secret_after_eq(t: &[u8], i: usize, on: u64) -> (usize, u8) {
    let ks = skip_back_while(t, i, i.saturating_sub(16), is_alpha);
    let key = &t[ks..i];
    if ks > 0 && is_word(t[ks - 1]) {
        return (0, 0);
    }

    let mut j = i + 1;
    if on & (1 << ENT_AZURE_KEY) != 0 && (eq_fold_ascii(key, b"accountkey") || eq_fold_ascii(key, b"sharedaccesskey")) {
        j = skip_while(t, j, |c| is_alnum(c) || c == b'+' || c == b'/');
        j = skip_while(t, j, |c| c == b'=');
        if j - (i + 1) >= 20 {
            return (j, ENT_AZURE_KEY);
        }
    } else if on & (1 << ENT_SAS) != 0 && eq_fold_ascii(key, b"sig") {
        j = skip_while(t, j, |c| {
            is_alnum(c) || c == b'%' || c == b'+' || c == b'/' || c == b'=' || c == b'_' || c == b'-'
        });
        if j - (i + 1) >= 8 {
            return (j, ENT_SAS);
        }
    }
    (0, 0)
}

/// The end of the private key block starting at t[i]: complete is false
/// when its end is not in t; e is 0 when the block is not a private key.
#[inline(never)]
fn pem_block(t: &[u8], i: usize) -> (usize, bool) {
    let rest = &t[i + PEM_BEGIN.len()..];
    let k = match find(rest, PEM_DASH) {
        None => {
            if rest.len() < 80 {
                return (0, false);
            }
            return (0, true);
        }
        Some(k) => k,
    };
    if k > 64 || !rest[..k].ends_with(b"PRIVATE KEY") {
        return (0, true);
    }
    let body = &rest[k + PEM_DASH.len()..];
    let off = i + PEM_BEGIN.len() + k + PEM_DASH.len();
    let ke = match find(body, PEM_END) {
        None => return (0, false),
        Some(x) => x,
    };
    let tail = &body[ke + PEM_END.len()..];
    let kd = match find(tail, PEM_DASH) {
        None => return (0, false),
        Some(x) => x,
    };
    (off + ke + PEM_END.len() + kd + PEM_DASH.len(), true)
}

/// The entity a secret field's normalised name counts as.
fn secret_field(n: &[u8]) -> Option<u8> {
    Some(match n {
        b"accesstoken" | b"refreshtoken" | b"idtoken" | b"bearertoken" | b"clientsecret" | b"apikey"
        | b"authorization" => ENT_BEARER,
        b"privatekey" => ENT_PRIVATE_KEY,
        b"accountkey" => ENT_AZURE_KEY,
        _ => return None,
    })
}

/// Appends s lower-cased without '_', '-', ' ' and '.'.
pub fn append_normalized(dst: &mut Vec<u8>, s: &[u8]) {
    for &c in s {
        if c.is_ascii_uppercase() {
            dst.push(c + b'a' - b'A');
        } else if c == b'_' || c == b'-' || c == b' ' || c == b'.' {
        } else {
            dst.push(c);
        }
    }
}
