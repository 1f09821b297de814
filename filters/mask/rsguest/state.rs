//! The state a stream carries between calls, as engine/state.go: version,
//! format, then the format's own (the same encoding as the Go engine's).
//!
//!   text: flags (1 = inside a private key block), tail
//!   json: document number, tokenizer state, depth, per frame: array flag, index, key
//!   csv:  record, column, header names
//!
//! Numbers are uvarints; byte strings a uvarint length then the bytes.

use crate::config::*;
use crate::csv::MAX_COLUMNS;
use crate::detect::FieldCtx;
use crate::json::{Frame, J_COMMA_OR_END, J_KEY_OR_END, J_TOP, MAX_DEPTH};
use crate::masker::*;

const STATE_VERSION: u8 = 1;

struct Reader<'a> {
    b: &'a [u8],
    bad: bool,
}

impl<'a> Reader<'a> {
    /// encoding/binary.Uvarint, then at most 1<<40.
    fn uvarint(&mut self) -> u64 {
        let mut x: u64 = 0;
        let mut s: u32 = 0;
        for (i, &b) in self.b.iter().enumerate() {
            if i == 10 {
                self.bad = true; // overflow
                return 0;
            }
            if b < 0x80 {
                if i == 9 && b > 1 {
                    self.bad = true;
                    return 0;
                }
                let v = x | (b as u64) << s;
                if v > 1 << 40 {
                    self.bad = true;
                    return 0;
                }
                self.b = &self.b[i + 1..];
                return v;
            }
            x |= ((b & 0x7f) as u64) << s;
            s += 7;
        }
        self.bad = true;
        0
    }

    fn bytes(&mut self) -> &'a [u8] {
        let l = self.uvarint();
        if self.bad || l > self.b.len() as u64 {
            self.bad = true;
            return &[];
        }
        let (s, rest) = self.b.split_at(l as usize);
        self.b = rest;
        s
    }
}

impl Masker {
    pub fn load_state(&mut self, p: &Profile, f: u8, b: &[u8]) -> Result<(), ErrKind> {
        self.js.reset();
        self.cs.record = 0;
        self.cs.col = 0;
        self.cs.nheaders = 0;
        self.cs.ctxs.clear();
        self.ts.pem = false;
        self.ts.tail.clear();
        if b.is_empty() {
            return Ok(());
        }
        if b.len() < 2 || b[0] != STATE_VERSION || b[1] != f {
            return Err(ErrKind::State);
        }
        let mut r = Reader { b: &b[2..], bad: false };
        match f {
            TEXT => {
                self.ts.pem = r.uvarint() == 1;
                let t = r.bytes();
                self.ts.tail.extend_from_slice(t);
            }
            JSON | NDJSON => {
                self.js.doc = r.uvarint();
                let st = r.uvarint();
                self.js.st = st as u8;
                let depth64 = r.uvarint();
                let depth = if depth64 > MAX_DEPTH as u64 { MAX_DEPTH + 1 } else { depth64 as usize };
                // only a top-level state has no container open, and it has none
                if depth > MAX_DEPTH || (st as u8) > J_COMMA_OR_END || (depth == 0) != ((st as u8) == J_TOP) {
                    return Err(ErrKind::State);
                }
                let js = &mut self.js;
                let mut k = 0;
                while k < depth && !r.bad {
                    if k == js.frames.len() {
                        js.frames.push(Frame::default());
                    }
                    js.opened += 1;
                    let fr = &mut js.frames[k];
                    fr.open = js.opened;
                    fr.arr = r.uvarint() == 1;
                    fr.idx = r.uvarint();
                    fr.set_key(r.bytes());
                    fr.ctx = FieldCtx::default();
                    k += 1;
                }
                js.depth = depth;
                if r.bad {
                    return Err(ErrKind::State);
                }
                // contexts are not carried: they follow from the keys
                for k in 0..depth {
                    if self.js.frames[k].arr {
                        if k > 0 {
                            self.js.frames[k].ctx = self.js.frames[k - 1].ctx;
                        }
                    } else if self.js.st != J_KEY_OR_END || k != depth - 1 {
                        let mut key = std::mem::take(&mut self.keybuf);
                        key.clear();
                        key.extend_from_slice(self.js.frames[k].key());
                        let ctx = self.context(p, &key);
                        self.keybuf = key;
                        self.js.frames[k].ctx = ctx;
                    }
                }
            }
            CSV => {
                self.cs.record = r.uvarint();
                self.cs.col = r.uvarint();
                let nh64 = r.uvarint();
                let nh = if nh64 > MAX_COLUMNS as u64 { MAX_COLUMNS + 1 } else { nh64 as usize };
                if nh > MAX_COLUMNS {
                    return Err(ErrKind::State);
                }
                let cs = &mut self.cs;
                let mut k = 0;
                while k < nh && !r.bad {
                    let h = r.bytes();
                    if cs.nheaders == cs.headers.len() {
                        cs.headers.push(Vec::new());
                    }
                    let hd = &mut cs.headers[cs.nheaders];
                    hd.clear();
                    hd.extend_from_slice(h);
                    cs.nheaders += 1;
                    k += 1;
                }
                if self.cs.record > 0 {
                    self.csv_contexts(p);
                }
            }
            _ => {}
        }
        if r.bad {
            return Err(ErrKind::State);
        }
        Ok(())
    }

    pub fn save_state(&self, f: u8, b: &mut Vec<u8>) {
        b.push(STATE_VERSION);
        b.push(f);
        match f {
            TEXT => {
                append_uvarint(b, self.ts.pem as u64);
                append_bytes(b, &self.ts.tail);
            }
            JSON | NDJSON => {
                let js = &self.js;
                append_uvarint(b, js.doc);
                append_uvarint(b, js.st as u64);
                append_uvarint(b, js.depth as u64);
                for fr in &js.frames[..js.depth] {
                    append_uvarint(b, fr.arr as u64);
                    append_uvarint(b, fr.idx);
                    append_bytes(b, fr.key());
                }
            }
            CSV => {
                let cs = &self.cs;
                append_uvarint(b, cs.record);
                append_uvarint(b, cs.col);
                append_uvarint(b, cs.nheaders as u64);
                for h in &cs.headers[..cs.nheaders] {
                    append_bytes(b, h);
                }
            }
            _ => {}
        }
    }
}
