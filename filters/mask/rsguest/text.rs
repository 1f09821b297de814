//! Plain text, as engine/text.go: every byte is scanned; the end of a
//! chunk that may be the start of a value is left unconsumed.

use crate::config::*;
use crate::detect::{find, is_token, FieldCtx, PEM_DASH, PEM_END};
use crate::masker::*;

/// The private key block held back waiting for its end.
const MAX_PEM: usize = 64 << 10;

/// How much already-emitted text a stream keeps for the context detectors.
const TAIL_LEN: usize = 40;

/// The longest value a text detector matches across a chunk boundary.
const MAX_CARRY: usize = 512;

#[derive(Default)]
pub struct TextState {
    pub pem: bool,
    pub tail: Vec<u8>,
}

impl Masker {
    pub fn mask_text(&mut self, p: &Profile, inp: &[u8], fin: bool) -> Result<usize, ErrKind> {
        let mut i = 0;
        if self.ts.pem {
            match end_of_pem(inp) {
                Some(k) => {
                    i = k;
                    self.ts.pem = false;
                }
                None => {
                    const KEEP: usize = 80;
                    if fin || inp.len() <= KEEP {
                        if fin {
                            return Ok(inp.len());
                        }
                        return Ok(0);
                    }
                    return Ok(inp.len() - KEEP);
                }
            }
        }
        let t = &inp[i..];
        self.tail_on = true;
        self.before = 0;
        if let Some(&b) = self.ts.tail.last() {
            self.before = b;
        }
        let pending = self.detect(p, t, &FieldCtx::default(), fin)?;
        let mut cut = t.len();
        let mut overflow = false;
        if !fin {
            cut = trailing_cut(t);
            if pending < cut {
                cut = pending;
                if t.len() - pending > MAX_PEM {
                    overflow = true;
                }
            }
        }
        let ms = std::mem::take(&mut self.matches);
        let mut k = 0;
        while k < ms.len() && ms[k].s < cut {
            if ms[k].e > cut {
                cut = ms[k].e;
            }
            k += 1;
        }
        let mut out = std::mem::take(&mut self.out);
        self.apply(&mut out, p, &t[..cut], &ms[..k]);
        self.matches = ms;
        self.keep_tail(&t[..cut]);
        if overflow {
            self.replace(&mut out, p, ENT_PRIVATE_KEY, &[]);
            self.out = out;
            self.ts.pem = true;
            self.ts.tail.clear();
            return Ok(inp.len() - 80);
        }
        self.out = out;
        Ok(i + cut)
    }

    fn keep_tail(&mut self, emitted: &[u8]) {
        let tail = &mut self.ts.tail;
        if emitted.len() >= TAIL_LEN {
            tail.clear();
            tail.extend_from_slice(&emitted[emitted.len() - TAIL_LEN..]);
            return;
        }
        tail.extend_from_slice(emitted);
        if tail.len() > TAIL_LEN {
            let k = tail.len() - TAIL_LEN;
            tail.drain(..k);
        }
    }
}

/// Where the run of bytes that may start a value at the end of t begins.
fn trailing_cut(t: &[u8]) -> usize {
    let n = t.len();
    let mut j = n;
    while j > 0 && n - j < MAX_CARRY {
        let c = t[j - 1];
        if is_token(c) {
            j -= 1;
            continue;
        }
        if c == b' ' && j >= 2 && (is_token(t[j - 2]) || (t[j - 2] == b' ' && j >= 3 && is_token(t[j - 3]))) {
            j -= 1;
            continue;
        }
        break;
    }
    j
}

/// The offset just past "-----END … -----" in inp.
fn end_of_pem(inp: &[u8]) -> Option<usize> {
    let k = find(inp, PEM_END)?;
    let d = find(&inp[k + PEM_END.len()..], PEM_DASH)?;
    Some(k + PEM_END.len() + d + PEM_DASH.len())
}
