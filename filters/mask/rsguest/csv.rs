//! CSV, as engine/csv.go: RFC 4180, the first record names the columns (its
//! fields are scanned too).

use crate::config::*;
use crate::detect::{FieldCtx, CL_CTRL};
use crate::masker::*;

pub const MAX_COLUMNS: usize = 1024;
const MAX_HEADER_NAME: usize = 256;

#[derive(Default)]
pub struct CsvState {
    pub record: u64,
    pub col: u64,
    pub headers: Vec<Vec<u8>>,
    /// How many of headers are in use (the rest are kept for reuse).
    pub nheaders: usize,
    pub ctxs: Vec<FieldCtx>,
}

fn index_byte(b: &[u8], c: u8) -> Option<usize> {
    let k = crate::swar::skip_while(b, 0, |x| x != c);
    if k < b.len() {
        Some(k)
    } else {
        None
    }
}

impl Masker {
    pub fn mask_csv(&mut self, p: &Profile, inp: &[u8], fin: bool) -> Result<usize, ErrKind> {
        self.tail_on = false;
        self.before = 0;
        self.trig |= CL_CTRL;
        let n = inp.len();
        let mut i = 0usize;
        let mut emitted = 0usize;
        let mut dec = std::mem::take(&mut self.dec);
        let r = (|| -> Result<usize, ErrKind> {
            while i < n {
                let content: &[u8];
                let end;
                let quoted = inp[i] == b'"';
                if quoted {
                    let mut j = i + 1;
                    let mut esc = false;
                    loop {
                        let k = match index_byte(&inp[j..], b'"') {
                            None => return self.incomplete(inp, i, emitted, fin),
                            Some(k) => k,
                        };
                        j += k;
                        if j + 1 < n && inp[j + 1] == b'"' {
                            j += 2;
                            esc = true;
                            continue;
                        }
                        if j + 1 == n && !fin {
                            return self.incomplete(inp, i, emitted, fin);
                        }
                        break;
                    }
                    let raw = &inp[i + 1..j];
                    if esc {
                        dec.clear();
                        let mut k = 0;
                        while k < raw.len() {
                            dec.push(raw[k]);
                            if raw[k] == b'"' && k + 1 < raw.len() && raw[k + 1] == b'"' {
                                k += 2;
                            } else {
                                k += 1;
                            }
                        }
                        content = &dec[..];
                    } else {
                        content = raw;
                    }
                    end = j + 1;
                } else {
                    let j = crate::swar::skip_while(inp, i, |c| c != b',' && c != b'\n' && c != b'\r');
                    if j == n && !fin {
                        return self.incomplete(inp, i, emitted, fin);
                    }
                    content = &inp[i..j];
                    end = j;
                }
                if end < n && inp[end] == b'\r' && end + 1 == n && !fin {
                    return self.incomplete(inp, i, emitted, fin);
                }
                if end < n && inp[end] != b',' && inp[end] != b'\n' && inp[end] != b'\r' {
                    return Err(ErrKind::Syntax);
                }
                let changed = self.csv_field(p, content, quoted)?;
                if changed {
                    self.out.extend_from_slice(&inp[emitted..i]);
                    let v = std::mem::take(&mut self.val);
                    self.out.extend_from_slice(&v);
                    self.val = v;
                    emitted = end;
                }
                if end == n {
                    i = n;
                    break;
                }
                match inp[end] {
                    b',' => {
                        self.cs.col += 1;
                        i = end + 1;
                    }
                    b'\r' => {
                        i = end + 1;
                        if i < n && inp[i] == b'\n' {
                            i += 1;
                        }
                        self.csv_record_done(p);
                    }
                    _ => {
                        i = end + 1;
                        self.csv_record_done(p);
                    }
                }
            }
            self.out.extend_from_slice(&inp[emitted..n]);
            Ok(n)
        })();
        self.dec = dec;
        r
    }

    fn csv_record_done(&mut self, p: &Profile) {
        if self.cs.record == 0 {
            self.csv_contexts(p);
        }
        self.cs.record += 1;
        self.cs.col = 0;
    }

    pub fn csv_contexts(&mut self, p: &Profile) {
        let mut ctxs = std::mem::take(&mut self.cs.ctxs);
        ctxs.clear();
        let headers = std::mem::take(&mut self.cs.headers);
        for h in &headers[..self.cs.nheaders] {
            ctxs.push(self.context(p, h));
        }
        self.cs.headers = headers;
        self.cs.ctxs = ctxs;
    }

    /// Masks one field's content; the new field text is in self.val.
    fn csv_field(&mut self, p: &Profile, content: &[u8], quoted: bool) -> Result<bool, ErrKind> {
        let mut fc = FieldCtx::default();
        let cs = &mut self.cs;
        if cs.record == 0 {
            if cs.col < MAX_COLUMNS as u64 {
                while cs.nheaders as u64 <= cs.col {
                    if cs.nheaders == cs.headers.len() {
                        cs.headers.push(Vec::new());
                    }
                    cs.headers[cs.nheaders].clear();
                    cs.nheaders += 1;
                }
                // a name longer than any field's is kept as none: a cut one
                // could end inside a value the whole name was not
                let h = if content.len() > MAX_HEADER_NAME { &[][..] } else { content };
                let hd = &mut cs.headers[cs.col as usize];
                hd.clear();
                hd.extend_from_slice(h);
            }
        } else if cs.col < cs.ctxs.len() as u64 {
            fc = cs.ctxs[cs.col as usize];
        }
        let mut s2 = std::mem::take(&mut self.scratch2);
        s2.clear();
        if fc.has {
            if content.is_empty() {
                self.scratch2 = s2;
                return Ok(false);
            }
            self.replace(&mut s2, p, fc.whole, content);
        } else {
            if let Err(e) = self.detect(p, content, &fc, true) {
                self.scratch2 = s2;
                return Err(e);
            }
            if self.matches.is_empty() {
                self.scratch2 = s2;
                return Ok(false);
            }
            let ms = std::mem::take(&mut self.matches);
            if nulls(p, &ms) {
                self.matches = ms;
                self.count_all(p);
            } else {
                self.apply(&mut s2, p, content, &ms);
                self.matches = ms;
            }
        }
        let v = &mut self.val;
        v.clear();
        if quoted || crate::swar::skip_while(&s2, 0, |c| c != b',' && c != b'"' && c != b'\r' && c != b'\n') < s2.len() {
            v.push(b'"');
            for &c in &s2 {
                if c == b'"' {
                    v.push(b'"');
                }
                v.push(c);
            }
            v.push(b'"');
        } else {
            v.extend_from_slice(&s2);
        }
        self.scratch2 = s2;
        let mut b = std::mem::take(&mut self.ptr_buf);
        b.clear();
        b.push(b'/');
        append_int(&mut b, self.cs.record);
        let cs = &self.cs;
        if cs.record > 0 && cs.col < cs.nheaders as u64 && !cs.headers[cs.col as usize].is_empty() {
            append_pointer_token(&mut b, &cs.headers[cs.col as usize]);
        } else {
            b.push(b'/');
            append_int(&mut b, cs.col);
        }
        self.pointer(&b);
        self.ptr_buf = b;
        Ok(true)
    }
}
