//! custos-mask-rs: filters/mask/engine ported to Rust, behind the masking
//! ABI of docs/masking-abi.md (version 1), for wasm32-unknown-unknown. It
//! imports nothing and exports its memory as `memory`.
//!
//! Build with build.sh (rustc only, no crates). One module per Go file of
//! the engine: masker, config, detect, validate, json, csv, text, state,
//! report, swar, builtin; and what Go's standard library gave it: sha256
//! (crypto/hmac, crypto/sha256), cfgjson (encoding/json, encoding/base64),
//! regex (regexp, run from the host-compiled regexp/syntax program).
//!
//! No `unsafe`: the host's regions are Vec<u8>s this module allocated, kept
//! by address (as the Go guest keeps its slices), and read as slices; an
//! out-of-bounds index traps, which the host turns into a failed body.

mod builtin;
mod cfgjson;
mod config;
mod csv;
mod detect;
mod json;
mod masker;
mod regex;
mod report;
mod sha256;
mod state;
mod swar;
mod text;
mod validate;

use std::cell::RefCell;
use std::collections::HashMap;

/// The version of docs/masking-abi.md this module implements.
const ABI_VERSION: i32 = 1;

// Status codes custos_mask and custos_configure return (negative).
const STATUS_SYNTAX: i32 = -1;
const STATUS_BINARY: i32 = -2;
const STATUS_TOO_LARGE: i32 = -3;
const STATUS_TRUNCATED: i32 = -4;
const STATUS_STATE: i32 = -5;
const STATUS_ARGS: i32 = -6;

struct Guest {
    /// The regions custos_alloc handed out, by address.
    bufs: HashMap<u32, Vec<u8>>,
    profiles: Vec<config::Profile>,
    masker: masker::Masker,
    report: Vec<u8>,
    err_msg: Vec<u8>,
    /// What custos_result points at: out, out_len, consumed, state,
    /// state_len, report, report_len, error, error_len. Boxed once, so its
    /// address never changes.
    result: Box<[u32; 9]>,
}

thread_local! {
    static GUEST: RefCell<Guest> = RefCell::new(Guest {
        bufs: HashMap::new(),
        profiles: Vec::new(),
        masker: masker::Masker::new(),
        report: Vec::new(),
        err_msg: Vec::new(),
        result: Box::new([0; 9]),
    });
}

fn addr(b: &[u8]) -> u32 {
    if b.is_empty() {
        return 0;
    }
    b.as_ptr() as usize as u32
}

/// The n bytes at ptr, which must lie in a region custos_alloc handed out.
fn region(bufs: &HashMap<u32, Vec<u8>>, ptr: i32, n: i32) -> Option<&[u8]> {
    if n == 0 {
        return Some(&[]);
    }
    let b = bufs.get(&(ptr as u32))?;
    if n < 0 || n as usize > b.len() {
        return None;
    }
    Some(&b[..n as usize])
}

impl Guest {
    fn fail(&mut self, status: i32, msg: &str) -> i32 {
        *self.result = [0; 9];
        self.err_msg.clear();
        self.err_msg.extend_from_slice(msg.as_bytes());
        self.result[7] = addr(&self.err_msg);
        self.result[8] = self.err_msg.len() as u32;
        status
    }

    fn configure(&mut self, ptr: i32, n: i32) -> i32 {
        let b = match region(&self.bufs, ptr, n) {
            Some(b) => b,
            None => return self.fail(STATUS_ARGS, "configure: config is not in an allocated region"),
        };
        let c = match config::parse_config(b) {
            Ok(c) => c,
            Err(e) => return self.fail(STATUS_ARGS, &e),
        };
        let p = match config::compile(c, self.profiles.len()) {
            Ok(p) => p,
            Err(e) => return self.fail(STATUS_ARGS, &e),
        };
        self.profiles.push(p);
        *self.result = [0; 9];
        self.profiles.len() as i32
    }

    #[allow(clippy::too_many_arguments)]
    fn mask(&mut self, profile: i32, format: i32, flags: i32, sp: i32, sl: i32, ip: i32, il: i32) -> i32 {
        if profile < 1 || profile as usize > self.profiles.len() || !(0..=masker::CSV as i32).contains(&format) {
            return self.fail(STATUS_ARGS, "mask: unknown profile or format");
        }
        let (state, input) = match (region(&self.bufs, sp, sl), region(&self.bufs, ip, il)) {
            (Some(s), Some(i)) => (s, i),
            _ => return self.fail(STATUS_ARGS, "mask: input is not in an allocated region"),
        };
        let p = &self.profiles[profile as usize - 1];
        let r = self.masker.mask(p, format as u8, state, input, flags & 1 != 0);
        let consumed = match r {
            Ok(r) => r.consumed,
            Err(e) => {
                let status = match e {
                    masker::ErrKind::Syntax => STATUS_SYNTAX,
                    masker::ErrKind::Binary => STATUS_BINARY,
                    masker::ErrKind::TooLarge | masker::ErrKind::Depth => STATUS_TOO_LARGE,
                    masker::ErrKind::Truncated => STATUS_TRUNCATED,
                    masker::ErrKind::State => STATUS_STATE,
                };
                return self.fail(status, e.message());
            }
        };
        self.report.clear();
        self.masker.append_report(&mut self.report, p);
        let m = &self.masker;
        *self.result = [
            addr(&m.out),
            m.out.len() as u32,
            consumed as u32,
            addr(&m.state),
            m.state.len() as u32,
            addr(&self.report),
            self.report.len() as u32,
            0,
            0,
        ];
        0
    }
}

#[no_mangle]
pub extern "C" fn custos_abi_version() -> i32 {
    ABI_VERSION
}

#[no_mangle]
pub extern "C" fn custos_alloc(size: i32) -> i32 {
    if size <= 0 {
        return 0;
    }
    let mut b: Vec<u8> = Vec::new();
    if b.try_reserve_exact(size as usize).is_err() {
        return 0;
    }
    b.resize(size as usize, 0);
    let p = addr(&b);
    GUEST.with(|g| g.borrow_mut().bufs.insert(p, b));
    p as i32
}

#[no_mangle]
pub extern "C" fn custos_free(ptr: i32) {
    GUEST.with(|g| g.borrow_mut().bufs.remove(&(ptr as u32)));
}

#[no_mangle]
pub extern "C" fn custos_result() -> i32 {
    GUEST.with(|g| g.borrow().result.as_ptr() as usize as i32)
}

#[no_mangle]
pub extern "C" fn custos_configure(ptr: i32, n: i32) -> i32 {
    GUEST.with(|g| g.borrow_mut().configure(ptr, n))
}

#[no_mangle]
pub extern "C" fn custos_mask(
    profile: i32,
    format: i32,
    flags: i32,
    state_ptr: i32,
    state_len: i32,
    in_ptr: i32,
    in_len: i32,
) -> i32 {
    GUEST.with(|g| g.borrow_mut().mask(profile, format, flags, state_ptr, state_len, in_ptr, in_len))
}
