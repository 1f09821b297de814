//! The masker, as engine/masker.go: one Mask call masks the bytes of a body
//! that follow what earlier calls consumed, under a profile, with the
//! stream's state.

use crate::config::*;
use crate::csv::CsvState;
use crate::detect::{is_alnum, is_digit, upper, CtxEntry, Group, Match, CL_CTRL};
use crate::json::JsonState;
use crate::regex::Vm;
use crate::swar::Prefilter;
use crate::text::TextState;

/// How a body is read.
pub const TEXT: u8 = 0;
pub const JSON: u8 = 1;
pub const NDJSON: u8 = 2;
pub const CSV: u8 = 3;

/// The most bytes a single JSON string, CSV field or private key block
/// may hold.
pub const MAX_TOKEN: usize = 1 << 20;

/// The JSON pointers one call reports.
const MAX_POINTERS: usize = 1024;

/// The errors a body fails with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ErrKind {
    Syntax,
    Binary,
    TooLarge,
    Truncated,
    State,
    Depth,
}

impl ErrKind {
    pub fn message(self) -> &'static str {
        match self {
            ErrKind::Syntax => "masking: body is not what its content type says (syntax)",
            ErrKind::Binary => "masking: body holds binary data",
            ErrKind::TooLarge => "masking: a single value is larger than the engine reads (1 MiB)",
            ErrKind::Truncated => "masking: body ended inside a value",
            ErrKind::State => "masking: stream state is corrupt",
            ErrKind::Depth => "masking: JSON nested deeper than 512",
        }
    }
}

/// Masks bodies; holds scratch space reused across calls.
pub struct Masker {
    pub trig: u8,
    pub before: u8,
    /// m.tail: the text state's tail is read by keyword_before (text only).
    pub tail_on: bool,
    pub matches: Vec<Match>,
    pub groups: Vec<Group>,
    pub digits: Vec<u8>,
    pub iban_buf: Vec<u8>,
    pub norm: Vec<u8>,
    pub out: Vec<u8>,
    pub dec: Vec<u8>,
    pub val: Vec<u8>,
    pub scratch: Vec<u8>,
    pub scratch2: Vec<u8>,
    /// A key being read, decoded or masked.
    pub keybuf: Vec<u8>,
    pub state: Vec<u8>,
    pub counts: [[u32; 4]; MAX_ENTITIES],
    pub used: u64,
    /// The call's pointers as the report's records ('p', length, bytes).
    pub ptr_data: Vec<u8>,
    /// How many pointers ptr_data holds.
    pub ptr_n: usize,
    pub ptr_buf: Vec<u8>,
    pub ptr_prefix: crate::json::PtrPrefix,
    pub dropped: usize,
    pub pf: Prefilter,
    pub ctx_cache: Vec<CtxEntry>,
    pub ctx_gen: u32,
    pub ctx_prof: usize,
    pub ctx_flip: usize,
    pub vm: Vm,
    pub js: JsonState,
    pub cs: CsvState,
    pub ts: TextState,
}

/// What one mask call produced: the output and state are in the Masker's
/// out and state.
pub struct MaskResult {
    pub consumed: usize,
}

impl Masker {
    pub fn new() -> Masker {
        Masker {
            trig: 0,
            before: 0,
            tail_on: false,
            matches: Vec::new(),
            groups: Vec::new(),
            digits: Vec::new(),
            iban_buf: Vec::new(),
            norm: Vec::new(),
            out: Vec::new(),
            dec: Vec::new(),
            val: Vec::new(),
            scratch: Vec::new(),
            scratch2: Vec::new(),
            keybuf: Vec::new(),
            state: Vec::new(),
            counts: [[0; 4]; MAX_ENTITIES],
            used: 0,
            ptr_data: Vec::new(),
            ptr_n: 0,
            ptr_buf: Vec::new(),
            ptr_prefix: crate::json::PtrPrefix::default(),
            dropped: 0,
            pf: Prefilter::default(),
            ctx_cache: vec![CtxEntry::default(); crate::detect::CTX_SLOTS],
            ctx_gen: 0,
            ctx_prof: usize::MAX,
            ctx_flip: 0,
            vm: Vm::default(),
            js: JsonState::default(),
            cs: CsvState::default(),
            ts: TextState::default(),
        }
    }

    /// Masks input, the bytes of a body in format f that follow what
    /// earlier calls consumed, under profile p; state is the previous
    /// call's (empty for a body's first call).
    pub fn mask(&mut self, p: &Profile, f: u8, state: &[u8], input: &[u8], fin: bool) -> Result<MaskResult, ErrKind> {
        self.out.clear();
        self.ptr_data.clear();
        self.ptr_n = 0;
        self.ptr_prefix.open = 0;
        if self.used != 0 {
            self.counts = [[0; 4]; MAX_ENTITIES];
        }
        self.used = 0;
        self.dropped = 0;
        self.trig = p.triggers();
        if f != JSON && f != NDJSON && f != CSV {
            self.trig |= CL_CTRL;
        }
        self.pf = Prefilter::new(self.trig);
        self.load_state(p, f, state)?;
        let n = match f {
            JSON | NDJSON => self.mask_json(p, input, fin, f == NDJSON)?,
            CSV => self.mask_csv(p, input, fin)?,
            _ => self.mask_text(p, input, fin)?,
        };
        if fin && n != input.len() {
            return Err(ErrKind::Truncated);
        }
        let mut st = std::mem::take(&mut self.state);
        st.clear();
        self.save_state(f, &mut st);
        self.state = st;
        Ok(MaskResult { consumed: n })
    }

    /// Appends the masked form of v, a value of entity ent.
    pub fn replace(&mut self, dst: &mut Vec<u8>, p: &Profile, ent: u8, v: &[u8]) {
        let op = p.ops[ent as usize];
        self.counts[ent as usize][op as usize] += 1;
        self.used |= 1 << ent;
        match op {
            OP_LAST4 => {
                let alnum = v.iter().filter(|&&c| is_alnum(c)).count();
                let mut k = 0;
                for &c in v {
                    let mut c = c;
                    if is_alnum(c) {
                        if k + 4 < alnum || alnum <= 4 {
                            c = b'*';
                        }
                        k += 1;
                    }
                    dst.push(c);
                }
            }
            OP_HMAC => {
                let mut s = std::mem::take(&mut self.scratch);
                s.clear();
                normalize_value(&mut s, ent, v);
                let sum = match &p.key {
                    Some(k) => k.mac(&[&p.names[ent as usize], &[0], &s]),
                    None => [0; 32],
                };
                self.scratch = s;
                dst.push(b'[');
                dst.extend_from_slice(&p.upper[ent as usize]);
                dst.push(b':');
                const HEX: &[u8; 16] = b"0123456789abcdef";
                for &b in &sum[..8] {
                    dst.push(HEX[(b >> 4) as usize]);
                    dst.push(HEX[(b & 15) as usize]);
                }
                dst.push(b']');
            }
            OP_NULL => {}
            _ => dst.extend_from_slice(&p.redacted[ent as usize]),
        }
    }

    /// Appends t with the matches ms replaced.
    pub fn apply(&mut self, dst: &mut Vec<u8>, p: &Profile, t: &[u8], ms: &[Match]) {
        let mut prev = 0;
        for x in ms {
            dst.extend_from_slice(&t[prev..x.s]);
            self.replace(dst, p, x.ent, &t[x.s..x.e]);
            prev = x.e;
        }
        dst.extend_from_slice(&t[prev..]);
    }

    /// Counts the matches, masked with null: the value is dropped.
    pub fn count_all(&mut self, p: &Profile) {
        for k in 0..self.matches.len() {
            let x = self.matches[k];
            self.counts[x.ent as usize][p.ops[x.ent as usize] as usize] += 1;
            self.used |= 1 << x.ent;
        }
    }

    /// Records the JSON pointer of the value being masked.
    pub fn pointer(&mut self, b: &[u8]) {
        if self.pointers_full() {
            self.dropped += 1;
            return;
        }
        self.ptr_data.push(b'p');
        append_bytes(&mut self.ptr_data, b);
        self.ptr_n += 1;
    }

    /// Whether the pointer list is full (the next one is dropped).
    pub fn pointers_full(&self) -> bool {
        self.ptr_n >= MAX_POINTERS
    }
}

/// Ends the pointer record begun at ptr_data[start] (its 'p' and a one-byte
/// length, then the pointer): writes its length, widening the length field
/// when the pointer is 128 bytes or more.
pub fn end_pointer_record(b: &mut Vec<u8>, start: usize) {
    let n = b.len() - start - 2;
    if n < 0x80 {
        b[start + 1] = n as u8;
        return;
    }
    let mut v = Vec::new();
    append_uvarint(&mut v, n as u64);
    b.splice(start + 1..start + 2, v);
}

/// The form of v the hmac operator keys on.
fn normalize_value(dst: &mut Vec<u8>, ent: u8, v: &[u8]) {
    match ent {
        ENT_CARD | ENT_ABA | ENT_SSN | ENT_PHONE => dst.extend(v.iter().filter(|&&c| is_digit(c))),
        ENT_IBAN | ENT_ACCOUNT => dst.extend(v.iter().filter(|&&c| is_alnum(c)).map(|&c| upper(c))),
        ENT_EMAIL => dst.extend(v.iter().map(|&c| c.to_ascii_lowercase())),
        _ => dst.extend_from_slice(v),
    }
}

/// Whether one of ms is masked with the null operator.
pub fn nulls(p: &Profile, ms: &[Match]) -> bool {
    ms.iter().any(|x| p.ops[x.ent as usize] == OP_NULL)
}

/// Appends "/" and s escaped as a JSON pointer token.
pub fn append_pointer_token(dst: &mut Vec<u8>, s: &[u8]) {
    dst.push(b'/');
    if !crate::swar::has_either(s, b'~', b'/') {
        dst.extend_from_slice(s);
        return;
    }
    for &c in s {
        match c {
            b'~' => dst.extend_from_slice(b"~0"),
            b'/' => dst.extend_from_slice(b"~1"),
            _ => dst.push(c),
        }
    }
}

/// Appends the decimal form of v.
pub fn append_int(dst: &mut Vec<u8>, v: u64) {
    let mut b = [0u8; 20];
    let mut i = b.len();
    let mut v = v;
    loop {
        i -= 1;
        b[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    dst.extend_from_slice(&b[i..]);
}

/// Appends v as a uvarint.
pub fn append_uvarint(dst: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        dst.push(v as u8 | 0x80);
        v >>= 7;
    }
    dst.push(v as u8);
}

/// Appends a uvarint length then s.
pub fn append_bytes(dst: &mut Vec<u8>, s: &[u8]) {
    append_uvarint(dst, s.len() as u64);
    dst.extend_from_slice(s);
}
