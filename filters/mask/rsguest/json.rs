//! JSON and NDJSON, as engine/json.go: a streaming tokenizer (a stack of
//! containers with the current key or index), never a decoded document. A
//! string or number is consumed only once it is whole in the input.

use crate::config::*;
use crate::detect::{ctx_slot_words, is_digit, FieldCtx, CLS};
use crate::masker::*;
use crate::swar::*;

pub const J_TOP: u8 = 0;
pub const J_VALUE: u8 = 1;
pub const J_VALUE_OR_END: u8 = 2;
pub const J_KEY_OR_END: u8 = 3;
pub const J_KEY: u8 = 4;
pub const J_COLON: u8 = 5;
pub const J_COMMA_OR_END: u8 = 6;

pub const MAX_DEPTH: usize = 512;

/// The length of the shortest value a built-in detector matches.
const MIN_VALUE: usize = 6;

/// The fewest digits a numeric detector matches.
pub const MIN_DIGITS: usize = 8;

#[derive(Clone, Default)]
pub struct Frame {
    /// Which container this is: JsonState::opened when it was opened (or
    /// loaded from the state), unique within a Masker.
    pub open: u64,
    pub arr: bool,
    pub idx: u64,
    /// The current member's key: in short (zeros after it) when it has at
    /// most 16 bytes, else in long. A short key is stored and compared as
    /// two words, without a copy loop or a call.
    pub short: [u8; 16],
    pub klen: usize,
    pub long: Vec<u8>,
    pub ctx: FieldCtx,
}

impl Frame {
    /// The current member's key (empty in an array, or before the first).
    #[inline(always)]
    pub fn key(&self) -> &[u8] {
        if self.klen <= 16 {
            &self.short[..self.klen]
        } else {
            &self.long
        }
    }

    /// Makes k the current member's key.
    pub fn set_key(&mut self, k: &[u8]) {
        self.klen = k.len();
        if k.len() <= 16 {
            let (lo, hi) = short_words(k);
            self.set_short(lo, hi, k.len());
        } else {
            self.long.clear();
            self.long.extend_from_slice(k);
        }
    }

    /// Makes the short key whose words are lo and hi (short_words) of n
    /// bytes the current member's key.
    #[inline(always)]
    pub fn set_short(&mut self, lo: u64, hi: u64, n: usize) {
        self.klen = n;
        self.short[..8].copy_from_slice(&lo.to_le_bytes());
        self.short[8..].copy_from_slice(&hi.to_le_bytes());
    }
}

/// A key of at most 16 bytes as two little-endian words, zeros after it.
pub fn short_words(k: &[u8]) -> (u64, u64) {
    let mut b = [0u8; 16];
    b[..k.len()].copy_from_slice(k);
    (load8(&b, 0), load8(&b, 8))
}

/// The n bytes at inp[s..] as short_words gives them; the caller checks
/// s + 16 <= inp.len() and n <= 16.
#[inline(always)]
fn window_words(inp: &[u8], s: usize, n: usize) -> (u64, u64) {
    let (lo, hi) = (load8(inp, s), load8(inp, s + 8));
    let keep = |w: u64, k: usize| if k >= 8 { w } else { w & ((1u64 << (8 * k)) - 1) };
    (keep(lo, n), if n > 8 { keep(hi, n - 8) } else { 0 })
}

#[derive(Default)]
pub struct JsonState {
    pub doc: u64,
    pub st: u8,
    pub depth: usize,
    pub frames: Vec<Frame>,
    /// The containers opened so far (Frame::open's counter; never reset).
    pub opened: u64,
}

impl JsonState {
    pub fn reset(&mut self) {
        self.doc = 0;
        self.st = J_TOP;
        self.depth = 0;
    }
}

/// What scan_string found.
struct Scan {
    end: usize,
    esc: bool,
    hit: bool,
    ok: bool,
}

/// Finds the closing quote of the string whose content starts at inp[j],
/// eight bytes at a time.
#[inline(always)]
fn scan_string(inp: &[u8], mut j: usize, pf: &Prefilter) -> Result<Scan, ErrKind> {
    let n = inp.len();
    let s0 = j;
    let mut cand: u64 = 0;
    let mut esc = false;
    while j < n {
        if j + 16 <= n {
            // sixteen bytes an iteration (see swar.rs: loop iterations cost)
            let b = Block16::load(inp, j);
            let s = b.string_stops();
            if cand == 0 {
                cand = string_candidates(pf, &b, inp, j, s0) as u64 & ((s & s.wrapping_neg()).wrapping_sub(1)) as u64;
            }
            if s == 0 {
                j += 16;
                continue;
            }
            j += s.trailing_zeros() as usize;
        } else if j + 8 <= n {
            let x = load8(inp, j);
            let s = string_stops(x);
            if cand == 0 {
                cand = pf.candidates_noctrl(x) & ((s & s.wrapping_neg()).wrapping_sub(1));
            }
            if s == 0 {
                j += 8;
                continue;
            }
            j += first_byte(s);
        }
        let c = inp[j];
        if c == b'"' {
            return Ok(Scan { end: j, esc, hit: cand != 0, ok: true });
        } else if c == b'\\' {
            esc = true;
            j += 2;
            continue;
        } else if c < 0x20 {
            return Err(ErrKind::Syntax);
        }
        if CLS[c as usize] & pf.trig != 0 {
            cand = 1;
        }
        j += 1;
    }
    Ok(Scan { end: 0, esc, hit: false, ok: false })
}

/// Marks (bit k for inp[j + k]) the bytes of b, the block at inp[j] in a
/// string whose content starts at inp[s0], that may start a value: what
/// Prefilter::candidates16 marks, read across the block's edges rather
/// than word by word. A space is marked only after "er" (a bearer token's
/// end), a dash only before a dash ("-----BEGIN"), looking at the bytes
/// before and after the block; the spaces at a word's start that
/// candidates16 marks because it cannot look back sent every long string
/// with a space there ("called about the last statement") to detect.
#[inline(always)]
fn string_candidates(pf: &Prefilter, b: &Block16, inp: &[u8], j: usize, s0: usize) -> u32 {
    let mut m = b.digits() & pf.digit as u32
        | b.eq2(b'+', b'(') & pf.lead as u32
        | b.eq(b'@') & pf.at as u32
        | b.eq(b'=') & pf.eq as u32;
    let dash = b.eq(b'-') & pf.dash as u32;
    if dash != 0 {
        // the last byte's dash: the byte after the block decides (the
        // input's end leaves it open)
        let next = if j + 16 >= inp.len() || inp[j + 16] == b'-' { 0x8000 } else { 0 };
        m |= dash & ((dash >> 1) | next);
    }
    let space = b.eq(b' ') & pf.space as u32;
    if space != 0 {
        // "er" before each space, the first two read before the block
        let (mut rc, mut ec) = (0, 0);
        if j > s0 {
            let c = inp[j - 1] | 0x20;
            rc = (c == b'r') as u32;
            ec = ((c == b'e') as u32) << 1;
        }
        if j > s0 + 1 && inp[j - 2] | 0x20 == b'e' {
            ec |= 1;
        }
        m |= space & (b.eq_fold(b'r') << 1 | rc) & (b.eq_fold(b'e') << 2 | ec);
    }
    m
}

/// Whether the built-in detectors may find a value in t, a short string's
/// raw content (no escapes), read whole as detect reads it: false only when
/// they certainly find none. The numeric detectors need nine digits in one
/// run of digits and separators (eight when t has a '+': an E.164 phone),
/// an IBAN a digit after two letters, an e-mail an '@', the Azure and SAS
/// keys a '=', a private key "-----BEGIN" and a bearer token "bearer ".
/// Reading t here, a block or two at a time, is cheaper than a detect call
/// finding nothing (names such as "Customer 12", amounts such as 79659.23,
/// times such as 2026-03-05T10:20:30Z).
#[inline(always)]
fn may_match(inp: &[u8], s: usize, e: usize) -> bool {
    let l = e - s;
    if l > 32 || s + 32 > inp.len() {
        return may_match_bytes(&inp[s..e]);
    }
    // bit k of each mask for t[k]
    let (b0, b1) = (Block16::load(inp, s), Block16::load(inp, s + 16));
    let two = |m0: u32, m1: u32| (m0 | m1 << 16) & ((1u64 << l) - 1) as u32;
    let d = two(b0.digits(), b1.digits());
    let a = two(b0.letters(), b1.letters());
    // an '@', a '=' or a digit after two letters
    if two(b0.eq2(b'@', b'='), b1.eq2(b'@', b'=')) | d & (a << 1) & (a << 2) != 0 {
        return true;
    }
    let dash = two(b0.eq(b'-'), b1.eq(b'-'));
    let space = two(b0.eq(b' '), b1.eq(b' '));
    // "--", or a space after "bearer": rare, read byte by byte
    if dash & (dash >> 1) != 0 {
        return may_match_bytes(&inp[s..e]);
    }
    if space != 0 {
        let (r, e_) = (two(b0.eq_fold(b'r'), b1.eq_fold(b'r')), two(b0.eq_fold(b'e'), b1.eq_fold(b'e')));
        let sp = space & r << 1 & e_ << 2 & r << 3;
        if sp != 0 && sp & two(b0.eq_fold(b'a'), b1.eq_fold(b'a')) << 4 & e_ << 5 & two(b0.eq_fold(b'b'), b1.eq_fold(b'b')) << 6 != 0 {
            return may_match_bytes(&inp[s..e]);
        }
    }
    if d.count_ones() < MIN_DIGITS as u32 {
        return false;
    }
    let need = if two(b0.eq(b'+'), b1.eq(b'+')) != 0 { MIN_DIGITS } else { MIN_DIGITS + 1 } as u32;
    // the runs of digits and separators, lowest first
    let mut r = d | dash | space | two(b0.eq2(b'.', b'('), b1.eq2(b'.', b'(')) | two(b0.eq(b')'), b1.eq(b')'));
    while r != 0 {
        let run = r & !r.wrapping_add(r & r.wrapping_neg());
        if (d & run).count_ones() >= need {
            return true;
        }
        r &= !run;
    }
    false
}

/// may_match's reading of t, byte by byte.
fn may_match_bytes(t: &[u8]) -> bool {
    // digits in the current run (numeric's groups and their separators,
    // any number of separators: more than numeric joins)
    let mut run = 0;
    for (k, &c) in t.iter().enumerate() {
        match c {
            b'0'..=b'9' => {
                run += 1;
                if run > MIN_DIGITS || (run == MIN_DIGITS && t.contains(&b'+')) || (k >= 2 && t[k - 1].is_ascii_alphabetic() && t[k - 2].is_ascii_alphabetic()) {
                    return true;
                }
            }
            b'@' | b'=' => return true,
            b'-' if k + 1 < t.len() && t[k + 1] == b'-' => return true,
            b' ' if k >= 6 && t[k - 6..k].eq_ignore_ascii_case(b"bearer") => return true,
            b' ' | b'-' | b'.' | b'(' | b')' => {}
            _ => run = 0,
        }
    }
    false
}

/// skip_while(inp, j, is_num_char), eight bytes a step.
#[inline(always)]
fn skip_number(inp: &[u8], mut j: usize) -> usize {
    while j + 8 <= inp.len() {
        let x = load8(inp, j);
        let num = digit_mask(x) | eq_mask(x, b'-') | eq_mask(x, b'+') | eq_mask(x, b'.') | eq_mask(x | 0x20 * LO8, b'e');
        if num != HI8 {
            return j + first_byte(!num & HI8);
        }
        j += 8;
    }
    skip_while(inp, j, is_num_char)
}

fn is_num_char(c: u8) -> bool {
    is_digit(c) || c == b'-' || c == b'+' || c == b'.' || c == b'e' || c == b'E'
}

const NO_FILTER: Prefilter = Prefilter { digit: 0, lead: 0, at: 0, eq: 0, dash: 0, space: 0, ctrl: 0, trig: 0 };

impl Masker {
    fn value_ctx(&self) -> FieldCtx {
        let js = &self.js;
        if js.depth == 0 {
            return FieldCtx::default();
        }
        js.frames[js.depth - 1].ctx
    }

    fn push(&mut self, arr: bool) -> Result<(), ErrKind> {
        if self.js.depth == MAX_DEPTH {
            return Err(ErrKind::Depth);
        }
        let ctx = if arr { self.value_ctx() } else { FieldCtx::default() };
        let js = &mut self.js;
        if js.depth == js.frames.len() {
            js.frames.push(Frame::default());
        }
        js.opened += 1;
        let f = &mut js.frames[js.depth];
        f.open = js.opened;
        f.arr = arr;
        f.idx = 0;
        f.klen = 0;
        f.ctx = ctx;
        js.depth += 1;
        js.st = if arr { J_VALUE_OR_END } else { J_KEY_OR_END };
        Ok(())
    }

    fn value_done(&mut self) {
        let js = &mut self.js;
        if js.depth == 0 {
            js.st = J_TOP;
            js.doc += 1;
        } else {
            js.st = J_COMMA_OR_END;
        }
    }

    fn pop(&mut self) {
        self.js.depth -= 1;
        self.value_done();
    }

    /// Masks JSON (or NDJSON) and returns how much of inp it consumed.
    pub fn mask_json(&mut self, p: &Profile, inp: &[u8], fin: bool, nd: bool) -> Result<usize, ErrKind> {
        self.tail_on = false;
        self.before = 0;
        let n = inp.len();
        let mut i = 0usize;
        let mut emitted = 0usize;
        let no_rules = p.rules.is_empty() && p.patterns.is_empty();
        while i < n {
            let c = inp[i];
            if c == b' ' || c == b'\n' || c == b'\r' || c == b'\t' {
                i += 1;
                continue;
            }
            match self.js.st {
                J_TOP | J_VALUE | J_VALUE_OR_END => {
                    if c == b']' && self.js.st == J_VALUE_OR_END {
                        self.pop();
                        i += 1;
                        continue;
                    }
                    let start = i;
                    if c == b'{' || c == b'[' {
                        self.push(c == b'[')?;
                        i += 1;
                        continue;
                    } else if c == b'"' {
                        let pf = self.pf;
                        let sc = scan_string(inp, i + 1, &pf)?;
                        if !sc.ok {
                            return self.incomplete(inp, i, emitted, fin);
                        }
                        let e = sc.end;
                        if no_rules
                            && !self.value_ctx().has
                            && !sc.esc
                            && (!sc.hit || e - i - 1 < MIN_VALUE || (e - i - 1 <= 32 && !may_match(inp, i + 1, e)))
                        {
                            i = e + 1;
                            self.value_done();
                            continue;
                        }
                        let changed = self.json_value(p, &inp[i + 1..e], true, sc.esc, sc.hit, nd)?;
                        if changed {
                            self.out.extend_from_slice(&inp[emitted..start]);
                            self.out.extend_from_slice(&self.val);
                            emitted = e + 1;
                        }
                        i = e + 1;
                    } else if c == b'-' || is_digit(c) {
                        let j = skip_number(inp, i + 1);
                        if j == n && !fin {
                            return self.incomplete(inp, i, emitted, fin);
                        }
                        if no_rules && !self.value_ctx().has && (j - i < MIN_DIGITS || (j - i <= 32 && !may_match(inp, i, j))) {
                            i = j;
                            self.value_done();
                            continue;
                        }
                        let changed = self.json_value(p, &inp[i..j], false, false, true, nd)?;
                        if changed {
                            self.out.extend_from_slice(&inp[emitted..start]);
                            self.out.extend_from_slice(&self.val);
                            emitted = j;
                        }
                        i = j;
                    } else if c == b't' || c == b'f' || c == b'n' {
                        let lit: &[u8] = if c == b't' {
                            b"true"
                        } else if c == b'f' {
                            b"false"
                        } else {
                            b"null"
                        };
                        if n - i < lit.len() {
                            if fin || inp[i..] != lit[..n - i] {
                                return Err(ErrKind::Syntax);
                            }
                            return self.incomplete(inp, i, emitted, fin);
                        }
                        if &inp[i..i + lit.len()] != lit {
                            return Err(ErrKind::Syntax);
                        }
                        i += lit.len();
                    } else {
                        return Err(ErrKind::Syntax);
                    }
                    self.value_done();
                    // the comma after it, as the next iteration would read it
                    if self.js.st == J_COMMA_OR_END && i < n && inp[i] == b',' {
                        let d = self.js.depth - 1;
                        if self.js.frames[d].arr {
                            self.js.frames[d].idx += 1;
                            self.js.st = J_VALUE;
                        } else {
                            self.js.st = J_KEY;
                        }
                        i += 1;
                    }
                }
                J_KEY_OR_END | J_KEY => {
                    if c == b'}' && self.js.st == J_KEY_OR_END {
                        self.pop();
                        i += 1;
                        continue;
                    }
                    if c != b'"' {
                        return Err(ErrKind::Syntax);
                    }
                    let mut e = usize::MAX;
                    let mut esc = false;
                    let mut ok = false;
                    if i + 9 <= n {
                        let x = load8(inp, i + 1);
                        let st = string_stops(x);
                        if st != 0 {
                            let k = first_byte(st);
                            if inp[i + 1 + k] == b'"' {
                                e = i + 1 + k;
                                ok = true;
                            }
                        }
                    }
                    if e == usize::MAX {
                        let sc = scan_string(inp, i + 1, &NO_FILTER)?;
                        e = sc.end;
                        esc = sc.esc;
                        ok = sc.ok;
                    }
                    if !ok {
                        return self.incomplete(inp, i, emitted, fin);
                    }
                    let d = self.js.depth - 1;
                    let len = e - i - 1;
                    let plain = !esc && len <= 16 && i + 17 <= n;
                    if plain && p.patterns.is_empty() && (len < MIN_VALUE || !key_hit(&inp[i + 1..e], self.pf.trig)) {
                        // The common key: short, no escapes, no value in
                        // it. Stored as two words; the context cache's
                        // lookup inlined.
                        let (lo, hi) = window_words(inp, i + 1, len);
                        let ctx = if len == 0 {
                            FieldCtx::default()
                        } else {
                            let h = ctx_slot_words(lo, hi, len);
                            let gen = self.ctx_gen;
                            let (a, b) = (&self.ctx_cache[h], &self.ctx_cache[h ^ 1]);
                            if self.ctx_prof == p.id && a.gen == gen && a.klen == len && a.lo == lo && a.hi == hi {
                                a.ctx
                            } else if self.ctx_prof == p.id && b.gen == gen && b.klen == len && b.lo == lo && b.hi == hi {
                                b.ctx
                            } else {
                                self.context(p, &inp[i + 1..e])
                            }
                        };
                        let f = &mut self.js.frames[d];
                        f.set_short(lo, hi, len);
                        f.ctx = ctx;
                    } else {
                        let mut key = std::mem::take(&mut self.keybuf);
                        key.clear();
                        if esc {
                            if let Err(err) = decode_string(&mut key, &inp[i + 1..e]) {
                                self.keybuf = key;
                                return Err(err);
                            }
                        } else {
                            key.extend_from_slice(&inp[i + 1..e]);
                        }
                        self.js.frames[d].set_key(&key);
                        self.keybuf = key;
                        if !p.patterns.is_empty() || (self.js.frames[d].klen >= MIN_VALUE && key_hit(self.js.frames[d].key(), self.pf.trig)) {
                            // A key can be a value: masked as a string is,
                            // before its context and the pointers are taken.
                            if self.json_key(p, d, nd)? {
                                self.out.extend_from_slice(&inp[emitted..i]);
                                self.out.extend_from_slice(&self.val);
                                emitted = e + 1;
                            }
                        }
                        let mut key = std::mem::take(&mut self.keybuf);
                        key.clear();
                        key.extend_from_slice(self.js.frames[d].key());
                        let ctx = self.context(p, &key);
                        self.keybuf = key;
                        self.js.frames[d].ctx = ctx;
                    }
                    i = e + 1;
                    self.js.st = J_COLON;
                    // the colon, as the next iteration would read it
                    if i < n && inp[i] == b':' {
                        i += 1;
                        self.js.st = J_VALUE;
                    }
                }
                J_COLON => {
                    if c != b':' {
                        return Err(ErrKind::Syntax);
                    }
                    i += 1;
                    self.js.st = J_VALUE;
                }
                _ => {
                    // J_COMMA_OR_END
                    let d = self.js.depth - 1;
                    let arr = self.js.frames[d].arr;
                    if c == b',' {
                        if arr {
                            self.js.frames[d].idx += 1;
                            self.js.st = J_VALUE;
                        } else {
                            self.js.st = J_KEY;
                        }
                        i += 1;
                    } else if (c == b'}' && !arr) || (c == b']' && arr) {
                        self.pop();
                        i += 1;
                    } else {
                        return Err(ErrKind::Syntax);
                    }
                }
            }
        }
        if fin && self.js.st != J_TOP {
            return Err(ErrKind::Truncated);
        }
        self.out.extend_from_slice(&inp[emitted..n]);
        Ok(n)
    }

    /// Ends a call at inp[i], where a token starts that is not whole.
    pub fn incomplete(&mut self, inp: &[u8], i: usize, emitted: usize, fin: bool) -> Result<usize, ErrKind> {
        if fin {
            return Err(ErrKind::Truncated);
        }
        if inp.len() - i > MAX_TOKEN {
            return Err(ErrKind::TooLarge);
        }
        self.out.extend_from_slice(&inp[emitted..i]);
        Ok(i)
    }

    /// Masks one string (raw content, still escaped when esc) or number;
    /// whether the value changed, its new JSON text in self.val.
    fn json_value(&mut self, p: &Profile, raw: &[u8], str_: bool, esc: bool, hit: bool, nd: bool) -> Result<bool, ErrKind> {
        let fc = self.value_ctx();
        let (mut whole, mut has) = (fc.whole, fc.has);
        if !p.rules.is_empty() {
            if let Some(ent) = self.rule_at(p) {
                whole = ent;
                has = true;
            }
        }
        if !has && p.patterns.is_empty() && ((!esc && !hit) || raw.len() < MIN_VALUE) {
            return Ok(false);
        }
        let mut dec = std::mem::take(&mut self.dec);
        let r = self.json_value_text(p, raw, str_, esc, nd, fc, whole, has, &mut dec);
        self.dec = dec;
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn json_value_text(
        &mut self,
        p: &Profile,
        raw: &[u8],
        str_: bool,
        esc: bool,
        nd: bool,
        fc: FieldCtx,
        whole: u8,
        has: bool,
        dec: &mut Vec<u8>,
    ) -> Result<bool, ErrKind> {
        let text: &[u8] = if esc {
            dec.clear();
            decode_string(dec, raw)?;
            dec
        } else {
            raw
        };
        let mut v = std::mem::take(&mut self.val);
        v.clear();
        if has {
            if p.ops[whole as usize] == OP_NULL {
                self.counts[whole as usize][OP_NULL as usize] += 1;
                self.used |= 1 << whole;
                v.extend_from_slice(b"null");
            } else {
                v.push(b'"');
                let mut s2 = std::mem::take(&mut self.scratch2);
                s2.clear();
                self.replace(&mut s2, p, whole, text);
                append_json_string(&mut v, &s2);
                self.scratch2 = s2;
                v.push(b'"');
            }
            self.val = v;
            self.json_pointer(nd);
            return Ok(true);
        }
        if let Err(e) = self.detect(p, text, &fc, true) {
            self.val = v;
            return Err(e);
        }
        if self.matches.is_empty() {
            self.val = v;
            return Ok(false);
        }
        let ms = std::mem::take(&mut self.matches);
        if nulls(p, &ms) {
            self.matches = ms;
            self.count_all(p);
            v.extend_from_slice(b"null");
        } else if !esc && str_ {
            v.push(b'"');
            self.apply(&mut v, p, text, &ms);
            v.push(b'"');
            self.matches = ms;
        } else {
            let mut s2 = std::mem::take(&mut self.scratch2);
            s2.clear();
            self.apply(&mut s2, p, text, &ms);
            v.push(b'"');
            append_json_string(&mut v, &s2);
            v.push(b'"');
            self.scratch2 = s2;
            self.matches = ms;
        }
        self.val = v;
        self.json_pointer(nd);
        Ok(true)
    }

    /// Masks the values in frame d's key (decoded), with no field context;
    /// null drops a value from a key. Whether the key changed, its new JSON
    /// text in self.val, the frame's key masked and the member's pointer
    /// recorded.
    fn json_key(&mut self, p: &Profile, d: usize, nd: bool) -> Result<bool, ErrKind> {
        let mut key = std::mem::take(&mut self.keybuf);
        key.clear();
        key.extend_from_slice(self.js.frames[d].key());
        let fc = FieldCtx::default();
        let r = self.detect(p, &key, &fc, true);
        if r.is_err() || self.matches.is_empty() {
            self.keybuf = key;
            return r.map(|_| false);
        }
        let ms = std::mem::take(&mut self.matches);
        let mut s2 = std::mem::take(&mut self.scratch2);
        s2.clear();
        self.apply(&mut s2, p, &key, &ms);
        self.matches = ms;
        key.clear();
        key.extend_from_slice(&s2);
        self.scratch2 = s2;
        let mut v = std::mem::take(&mut self.val);
        v.clear();
        v.push(b'"');
        append_json_string(&mut v, &key);
        v.push(b'"');
        self.val = v;
        self.js.frames[d].set_key(&key);
        self.keybuf = key;
        self.json_pointer(nd);
        Ok(true)
    }

    /// The entity of the field rule matching the current value's path.
    fn rule_at(&self, p: &Profile) -> Option<u8> {
        let js = &self.js;
        let mut num = Vec::new();
        for r in &p.rules {
            if r.segs.len() != js.depth {
                continue;
            }
            let mut ok = true;
            for (k, s) in r.segs.iter().enumerate() {
                let f = &js.frames[k];
                if s.as_slice() == b"*" {
                    continue;
                }
                if f.arr {
                    num.clear();
                    append_int(&mut num, f.idx);
                    if *s != num {
                        ok = false;
                        break;
                    }
                } else if s.as_slice() != f.key() {
                    ok = false;
                    break;
                }
            }
            if ok {
                return Some(r.ent);
            }
        }
        None
    }

    /// Records the JSON pointer of the value being masked, written straight
    /// into the pointer records. The pointer's prefix (the document number
    /// and the containers above the innermost one) does not change while
    /// the innermost container is open: it is kept in ptr_prefix and
    /// copied rather than built again.
    fn json_pointer(&mut self, nd: bool) {
        if self.pointers_full() {
            self.dropped += 1;
            return;
        }
        let js = &self.js;
        let d = js.depth;
        let pc = &mut self.ptr_prefix;
        if d > 0 && (pc.open != js.frames[d - 1].open || pc.depth != d) {
            pc.open = js.frames[d - 1].open;
            pc.depth = d;
            pc.b.clear();
            if nd {
                pc.b.push(b'/');
                append_int(&mut pc.b, js.doc);
            }
            for f in &js.frames[..d - 1] {
                append_segment(&mut pc.b, f);
            }
        }
        let b = &mut self.ptr_data;
        let start = b.len();
        b.push(b'p');
        b.push(0);
        if d > 0 {
            b.extend_from_slice(&pc.b);
            append_segment(b, &js.frames[d - 1]);
        } else if nd {
            b.push(b'/');
            append_int(b, js.doc);
        }
        end_pointer_record(b, start);
        self.ptr_n += 1;
    }
}

/// Appends the JSON pointer segment of a container's current member.
fn append_segment(b: &mut Vec<u8>, f: &Frame) {
    if f.arr {
        b.push(b'/');
        if f.idx >= 100_000_000 {
            append_int(b, f.idx);
            return;
        }
        // up to eight digits built in a word, written in one piece
        let (mut w, mut k, mut v) = (0u64, 0, f.idx);
        loop {
            w = w << 8 | (b'0' + (v % 10) as u8) as u64;
            v /= 10;
            k += 1;
            if v == 0 {
                break;
            }
        }
        let start = b.len();
        b.extend_from_slice(&w.to_le_bytes());
        b.truncate(start + k);
    } else if f.klen <= 16 {
        let (lo, hi) = (load8(&f.short, 0), load8(&f.short, 8));
        if eq_mask(lo, b'~') | eq_mask(lo, b'/') | eq_mask(hi, b'~') | eq_mask(hi, b'/') != 0 {
            append_pointer_token(b, f.key());
            return;
        }
        // nothing to escape: the key's sixteen bytes (zeros after it)
        // written in one piece, then cut to its length
        let start = b.len();
        b.push(b'/');
        b.extend_from_slice(&f.short);
        b.truncate(start + 1 + f.klen);
    } else {
        append_pointer_token(b, &f.long);
    }
}

/// The pointer prefix of the container opened as open (at depth depth):
/// the document number and the members above it (open 0: none yet).
#[derive(Clone, Default)]
pub struct PtrPrefix {
    pub open: u64,
    pub depth: usize,
    pub b: Vec<u8>,
}

/// Appends the decoded content of a JSON string (without its quotes).
pub fn decode_string(dst: &mut Vec<u8>, raw: &[u8]) -> Result<(), ErrKind> {
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        if c != b'\\' {
            let j = skip_while(raw, i + 1, |c| c != b'\\');
            dst.extend_from_slice(&raw[i..j]);
            i = j;
            continue;
        }
        if i + 1 >= raw.len() {
            return Err(ErrKind::Syntax);
        }
        match raw[i + 1] {
            b'"' | b'\\' | b'/' => dst.push(raw[i + 1]),
            b'b' => dst.push(8),
            b'f' => dst.push(12),
            b'n' => dst.push(b'\n'),
            b'r' => dst.push(b'\r'),
            b't' => dst.push(b'\t'),
            b'u' => {
                let mut r = match hex4(&raw[i + 2..]) {
                    Some(r) => r,
                    None => return Err(ErrKind::Syntax),
                };
                i += 6;
                if (0xd800..0xdc00).contains(&r) && i + 1 < raw.len() && raw[i] == b'\\' && raw[i + 1] == b'u' {
                    if let Some(r2) = hex4(&raw[i + 2..]) {
                        if (0xdc00..0xe000).contains(&r2) {
                            r = ((r - 0xd800) << 10 | (r2 - 0xdc00)) + 0x10000;
                            i += 6;
                        }
                    }
                }
                if (0xd800..0xe000).contains(&r) {
                    r = 0xfffd;
                }
                let ch = char::from_u32(r).unwrap_or('\u{fffd}');
                let mut buf = [0u8; 4];
                dst.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                continue;
            }
            _ => return Err(ErrKind::Syntax),
        }
        i += 2;
    }
    Ok(())
}

fn hex4(b: &[u8]) -> Option<u32> {
    if b.len() < 4 {
        return None;
    }
    let mut r = 0u32;
    for &c in &b[..4] {
        let v = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        r = r << 4 | v as u32;
    }
    Some(r)
}

/// Whether a key may hold a value: a byte of the trigger classes.
fn key_hit(k: &[u8], trig: u8) -> bool {
    k.iter().any(|&c| CLS[c as usize] & trig != 0)
}

/// Appends s escaped for the inside of a JSON string.
pub fn append_json_string(dst: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &c in s {
        match c {
            b'"' | b'\\' => {
                dst.push(b'\\');
                dst.push(c);
            }
            b'\n' => dst.extend_from_slice(b"\\n"),
            b'\r' => dst.extend_from_slice(b"\\r"),
            b'\t' => dst.extend_from_slice(b"\\t"),
            _ if c < 0x20 || c == 0x7f => {
                dst.extend_from_slice(b"\\u00");
                dst.push(HEX[(c >> 4) as usize]);
                dst.push(HEX[(c & 15) as usize]);
            }
            _ => dst.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{compile, parse_config};
    use crate::swar::Prefilter;

    /// may_match is false only where detect finds nothing: short strings
    /// built from the pieces the detectors look for, each one may_match
    /// turns away handed to detect under every built-in entity.
    #[test]
    fn may_match_never_hides_a_value() {
        let cfg = br#"{"entities":["aba","account","azure_key","bearer","card","email","iban","phone","private_key","sas","ssn"]}"#;
        let p = compile(parse_config(cfg).unwrap(), 0).unwrap();
        let mut m = Masker::new();
        m.trig = p.triggers();
        m.pf = Prefilter::new(m.trig);
        let pieces: &[&[u8]] = &[
            b"0", b"1", b"4", b"9", b"5", b"12", b"555", b"2026", b"a", b"Z", b"e", b"r", b"B", b"T", b"bearer ", b"Bearer ",
            b" ", b"-", b"--", b"@", b"=", b"+", b"+1", b"(", b")", b".", b":", b"x", b"GB", b"NO", b"DE89", b"sig=",
            b"accountkey=", b"4111111111111111", b"123-45-6789", b"021000021", b"\x01", b"_", b"/",
        ];
        let mut seed: u64 = 12345;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            seed >> 33
        };
        let mut turned = 0;
        for _ in 0..400_000 {
            let mut s: Vec<u8> = Vec::new();
            let n = next() % 12 + 1;
            for _ in 0..n {
                s.extend_from_slice(pieces[next() as usize % pieces.len()]);
            }
            s.truncate(32);
            // the string in a larger input, as mask_json reads it
            let mut inp = s.clone();
            for k in 0..40 {
                inp.push(pieces[(next() as usize + k) % pieces.len()][0]);
            }
            let may = may_match(&inp, 0, s.len());
            assert_eq!(may, may_match_bytes(&s), "{:?}", String::from_utf8_lossy(&s));
            if may {
                continue;
            }
            turned += 1;
            let r = m.detect(&p, &s, &FieldCtx::default(), true);
            assert!(
                r.is_ok() && m.matches.is_empty(),
                "may_match turned away {:?}, where detect finds a value",
                String::from_utf8_lossy(&s)
            );
        }
        // the test means something only if many strings are turned away
        assert!(turned > 40_000, "only {} strings turned away", turned);
        for t in [&b"2026-03-05T10:20:30Z"[..], b"Customer 12", b"79659.23", b"+1234567", b"12:34:56.789"] {
            assert!(!may_match_bytes(t), "{:?}", String::from_utf8_lossy(t));
        }
        for t in [&b"123-45-6789"[..], b"+12345678", b"(555) 123-4567", b"DE89", b"a@b", b"x=", b"--", b"Bearer ", b"12.345.678 9"] {
            assert!(may_match_bytes(t), "{:?}", String::from_utf8_lossy(t));
        }
    }
}
