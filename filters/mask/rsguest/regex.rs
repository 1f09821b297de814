//! Custom patterns: Go's regexp/syntax program of each regex (compiled by
//! the host: syntax.Parse(re, syntax.Perl), Simplify, syntax.Compile, with
//! case folding expanded into the rune ranges) run by a Pike VM with Go's
//! leftmost-first semantics and Go's FindAllIndex loop (regexp/exec.go,
//! regexp.go allMatches).

// Go's syntax.InstOp.
pub const OP_ALT: u8 = 0;
pub const OP_ALT_MATCH: u8 = 1;
pub const OP_CAPTURE: u8 = 2;
pub const OP_EMPTY_WIDTH: u8 = 3;
pub const OP_MATCH: u8 = 4;
pub const OP_FAIL: u8 = 5;
pub const OP_NOP: u8 = 6;
pub const OP_RUNE: u8 = 7;
pub const OP_RUNE1: u8 = 8;
pub const OP_RUNE_ANY: u8 = 9;
pub const OP_RUNE_ANY_NOT_NL: u8 = 10;

// Go's syntax.EmptyOp.
const EMPTY_BEGIN_LINE: u32 = 1;
const EMPTY_END_LINE: u32 = 2;
const EMPTY_BEGIN_TEXT: u32 = 4;
const EMPTY_END_TEXT: u32 = 8;
const EMPTY_WORD_BOUNDARY: u32 = 16;
const EMPTY_NO_WORD_BOUNDARY: u32 = 32;

/// No rune: the start or the end of the text.
const END_OF_TEXT: i32 = -1;

#[derive(Clone, Debug)]
pub struct Inst {
    pub op: u8,
    pub out: u32,
    pub arg: u32,
    /// Inclusive ranges, lo0, hi0, lo1, hi1, …
    pub runes: Vec<i32>,
}

#[derive(Clone, Debug)]
pub struct Prog {
    pub start: u32,
    pub inst: Vec<Inst>,
    /// The empty-width flags the start needs (Prog.StartCond).
    pub start_cond: u32,
}

impl Prog {
    /// Checks a program the host sent: every instruction's targets in range.
    pub fn new(start: u32, inst: Vec<Inst>) -> Result<Prog, String> {
        let n = inst.len() as u32;
        if n == 0 || start >= n {
            return Err("the program's start is out of range".into());
        }
        for (k, i) in inst.iter().enumerate() {
            if i.op > OP_RUNE_ANY_NOT_NL {
                return Err(format!("instruction {} has an unknown op {}", k, i.op));
            }
            let uses_out = !matches!(i.op, OP_MATCH | OP_FAIL);
            if uses_out && i.out >= n {
                return Err(format!("instruction {} jumps out of the program", k));
            }
            if (i.op == OP_ALT || i.op == OP_ALT_MATCH) && i.arg >= n {
                return Err(format!("instruction {} jumps out of the program", k));
            }
            if (i.op == OP_RUNE || i.op == OP_RUNE1) && i.runes.len() % 2 != 0 {
                return Err(format!("instruction {} has an odd rune list", k));
            }
        }
        let mut p = Prog { start, inst, start_cond: 0 };
        p.start_cond = p.compute_start_cond();
        Ok(p)
    }

    fn compute_start_cond(&self) -> u32 {
        let mut flag = 0u32;
        let mut pc = self.start as usize;
        for _ in 0..=self.inst.len() {
            let i = &self.inst[pc];
            match i.op {
                OP_EMPTY_WIDTH => flag |= i.arg,
                OP_FAIL => return !0,
                OP_CAPTURE | OP_NOP => {}
                _ => break,
            }
            pc = i.out as usize;
        }
        flag
    }
}

/// The rune at b[0..] and its width, Go's utf8.DecodeRune (an invalid
/// byte is U+FFFD of width 1); END_OF_TEXT, 0 at the end.
#[inline]
pub fn decode_rune(b: &[u8]) -> (i32, usize) {
    let n = b.len();
    if n == 0 {
        return (END_OF_TEXT, 0);
    }
    let c0 = b[0];
    if c0 < 0x80 {
        return (c0 as i32, 1);
    }
    const RE: (i32, usize) = (0xfffd, 1);
    let (size, lo, hi) = match c0 {
        0xc2..=0xdf => (2, 0x80, 0xbf),
        0xe0 => (3, 0xa0, 0xbf),
        0xe1..=0xec | 0xee..=0xef => (3, 0x80, 0xbf),
        0xed => (3, 0x80, 0x9f),
        0xf0 => (4, 0x90, 0xbf),
        0xf1..=0xf3 => (4, 0x80, 0xbf),
        0xf4 => (4, 0x80, 0x8f),
        _ => return RE,
    };
    if n < size {
        // too short: the bytes there may still be invalid first
        return RE;
    }
    let c1 = b[1];
    if c1 < lo || c1 > hi {
        return RE;
    }
    if size == 2 {
        return (((c0 & 0x1f) as i32) << 6 | (c1 & 0x3f) as i32, 2);
    }
    let c2 = b[2];
    if !(0x80..=0xbf).contains(&c2) {
        return RE;
    }
    if size == 3 {
        return (((c0 & 0x0f) as i32) << 12 | ((c1 & 0x3f) as i32) << 6 | (c2 & 0x3f) as i32, 3);
    }
    let c3 = b[3];
    if !(0x80..=0xbf).contains(&c3) {
        return RE;
    }
    (
        ((c0 & 0x07) as i32) << 18 | ((c1 & 0x3f) as i32) << 12 | ((c2 & 0x3f) as i32) << 6 | (c3 & 0x3f) as i32,
        4,
    )
}

fn is_word_char(r: i32) -> bool {
    (r >= 'a' as i32 && r <= 'z' as i32)
        || (r >= 'A' as i32 && r <= 'Z' as i32)
        || (r >= '0' as i32 && r <= '9' as i32)
        || r == '_' as i32
}

/// Go's lazyFlag: the runes either side of a position.
#[derive(Clone, Copy)]
struct Flag {
    r1: i32,
    r2: i32,
}

impl Flag {
    fn matches(self, mut op: u32) -> bool {
        if op == 0 {
            return true;
        }
        let r1 = self.r1;
        if op & EMPTY_BEGIN_LINE != 0 {
            if r1 != '\n' as i32 && r1 >= 0 {
                return false;
            }
            op &= !EMPTY_BEGIN_LINE;
        }
        if op & EMPTY_BEGIN_TEXT != 0 {
            if r1 >= 0 {
                return false;
            }
            op &= !EMPTY_BEGIN_TEXT;
        }
        if op == 0 {
            return true;
        }
        let r2 = self.r2;
        if op & EMPTY_END_LINE != 0 {
            if r2 != '\n' as i32 && r2 >= 0 {
                return false;
            }
            op &= !EMPTY_END_LINE;
        }
        if op & EMPTY_END_TEXT != 0 {
            if r2 >= 0 {
                return false;
            }
            op &= !EMPTY_END_TEXT;
        }
        if op == 0 {
            return true;
        }
        if is_word_char(r1) != is_word_char(r2) {
            op &= !EMPTY_WORD_BOUNDARY;
        } else {
            op &= !EMPTY_NO_WORD_BOUNDARY;
        }
        op == 0
    }
}

#[derive(Clone, Copy, Default)]
struct Entry {
    pc: u32,
    /// Whether a thread waits here (Match or a rune instruction).
    thread: bool,
    /// Where the thread's match started.
    start: usize,
}

/// A sparse set of program counters with their threads, in priority order.
#[derive(Default)]
struct Queue {
    sparse: Vec<u32>,
    dense: Vec<Entry>,
}

impl Queue {
    fn reset(&mut self, n: usize) {
        if self.sparse.len() < n {
            self.sparse.resize(n, 0);
        }
        self.dense.clear();
    }

    #[inline]
    fn contains(&self, pc: u32) -> bool {
        let j = self.sparse[pc as usize] as usize;
        j < self.dense.len() && self.dense[j].pc == pc
    }
}

/// The Pike VM's scratch space, reused across calls.
#[derive(Default)]
pub struct Vm {
    q0: Queue,
    q1: Queue,
    stack: Vec<u32>,
}

fn rune_in(runes: &[i32], c: i32) -> bool {
    let mut k = 0;
    while k + 1 < runes.len() {
        if c >= runes[k] && c <= runes[k + 1] {
            return true;
        }
        k += 2;
    }
    false
}

impl Vm {
    /// Calls deliver with each match of prog in t, as Go's FindAllIndex.
    pub fn find_all<F: FnMut(usize, usize)>(&mut self, prog: &Prog, t: &[u8], mut deliver: F) {
        let end = t.len();
        let mut pos = 0usize;
        let mut prev_end: isize = -1;
        while pos <= end {
            let (s, e) = match self.find(prog, t, pos) {
                None => break,
                Some(m) => m,
            };
            let mut accept = true;
            if e == pos {
                // an empty match
                if s as isize == prev_end {
                    accept = false;
                }
                let (_, w) = decode_rune(&t[pos..end]);
                if w > 0 {
                    pos += w;
                } else {
                    pos = end + 1;
                }
            } else {
                pos = e;
            }
            prev_end = e as isize;
            if accept {
                deliver(s, e);
            }
        }
    }

    /// The first match of prog in t searching from pos (regexp/exec.go's
    /// machine.match).
    fn find(&mut self, prog: &Prog, t: &[u8], mut pos: usize) -> Option<(usize, usize)> {
        let start_cond = prog.start_cond;
        if start_cond == !0 {
            return None;
        }
        let n = prog.inst.len();
        let mut runq = std::mem::take(&mut self.q0);
        let mut nextq = std::mem::take(&mut self.q1);
        runq.reset(n);
        nextq.reset(n);
        let mut matched: Option<(usize, usize)> = None;
        let (mut r, mut width) = decode_rune(&t[pos..]);
        let (mut r1, mut width1) = (END_OF_TEXT, 0);
        if r != END_OF_TEXT {
            let x = decode_rune(&t[pos + width..]);
            r1 = x.0;
            width1 = x.1;
        }
        let mut flag = if pos == 0 {
            Flag { r1: END_OF_TEXT, r2: r }
        } else {
            let b = t[pos - 1];
            Flag { r1: if b < 0x80 { b as i32 } else { 0xfffd }, r2: r }
        };
        loop {
            if runq.dense.is_empty() {
                if start_cond & EMPTY_BEGIN_TEXT != 0 && pos != 0 {
                    break;
                }
                if matched.is_some() {
                    break;
                }
            }
            if matched.is_none() && (pos == 0 || start_cond & EMPTY_BEGIN_TEXT == 0) {
                self.add(prog, &mut runq, prog.start, pos, flag);
            }
            flag = Flag { r1: r, r2: r1 };
            // step
            let next_pos = pos + width;
            let mut j = 0;
            while j < runq.dense.len() {
                let d = runq.dense[j];
                j += 1;
                if !d.thread {
                    continue;
                }
                let i = &prog.inst[d.pc as usize];
                let add = match i.op {
                    OP_MATCH => {
                        matched = Some((d.start, pos));
                        // first-match mode: cut off the lower-priority threads
                        break;
                    }
                    OP_RUNE | OP_RUNE1 => rune_in(&i.runes, r),
                    OP_RUNE_ANY => true,
                    OP_RUNE_ANY_NOT_NL => r != '\n' as i32,
                    _ => false,
                };
                if add {
                    self.add(prog, &mut nextq, i.out, d.start, flag);
                }
            }
            runq.dense.clear();
            if width == 0 {
                break;
            }
            pos = next_pos;
            r = r1;
            width = width1;
            if r != END_OF_TEXT {
                let x = decode_rune(&t[pos + width..]);
                r1 = x.0;
                width1 = x.1;
            }
            std::mem::swap(&mut runq, &mut nextq);
        }
        self.q0 = runq;
        self.q1 = nextq;
        matched
    }

    /// Adds pc's threads to q in priority order (machine.add): the
    /// instructions it reaches through Alt, Nop, Capture and satisfied
    /// EmptyWidth, each pc once.
    fn add(&mut self, prog: &Prog, q: &mut Queue, pc: u32, start: usize, flag: Flag) {
        let stack = &mut self.stack;
        stack.clear();
        stack.push(pc);
        while let Some(pc) = stack.pop() {
            if q.contains(pc) {
                continue;
            }
            let j = q.dense.len();
            q.sparse[pc as usize] = j as u32;
            q.dense.push(Entry { pc, thread: false, start });
            let i = &prog.inst[pc as usize];
            match i.op {
                OP_FAIL => {}
                OP_ALT | OP_ALT_MATCH => {
                    stack.push(i.arg);
                    stack.push(i.out);
                }
                OP_EMPTY_WIDTH => {
                    if flag.matches(i.arg) {
                        stack.push(i.out);
                    }
                }
                OP_NOP | OP_CAPTURE => stack.push(i.out),
                _ => q.dense[j].thread = true,
            }
        }
    }
}
