//! Profiles, as engine/config.go: the configure call's JSON (read by
//! cfgjson.rs) compiled into a Profile.

use crate::cfgjson;
use crate::detect::append_normalized;
use crate::regex::Prog;
use crate::sha256::HmacKey;
use std::collections::{HashMap, HashSet};

// entity ids: the built-ins first, custom entities after them, at most 64.
pub const ENT_CARD: u8 = 0;
pub const ENT_IBAN: u8 = 1;
pub const ENT_ABA: u8 = 2;
pub const ENT_SSN: u8 = 3;
pub const ENT_EMAIL: u8 = 4;
pub const ENT_PHONE: u8 = 5;
pub const ENT_BEARER: u8 = 6;
pub const ENT_AZURE_KEY: u8 = 7;
pub const ENT_SAS: u8 = 8;
pub const ENT_PRIVATE_KEY: u8 = 9;
pub const ENT_ACCOUNT: u8 = 10;
pub const NUM_BUILTIN: usize = 11;
pub const MAX_ENTITIES: usize = 64;

pub const BUILTIN_NAMES: [&str; NUM_BUILTIN] = [
    "card", "iban", "aba", "ssn", "email", "phone", "bearer", "azure_key", "sas", "private_key", "account",
];

pub const OP_REDACT: u8 = 0;
pub const OP_LAST4: u8 = 1;
pub const OP_HMAC: u8 = 2;
pub const OP_NULL: u8 = 3;

pub const OP_NAMES: [&str; 4] = ["redact", "last4", "hmac", "null"];

/// The field names whose values are account numbers when a profile names
/// none.
pub const DEFAULT_ACCOUNT_FIELDS: [&str; 9] = [
    "account_number", "account_no", "acct_number", "acct_no", "acctnum",
    "bank_account", "bank_account_number", "checking_account", "savings_account",
];

/// One masking profile as the host hands it (engine.Config).
#[derive(Default, Clone)]
pub struct Config {
    pub entities: Vec<String>,
    /// A map: keys unique, in the order first seen.
    pub operators: Vec<(String, String)>,
    pub account_fields: Vec<String>,
    pub ignore_fields: Vec<(String, Vec<String>)>,
    pub fields: Vec<FieldRule>,
    pub patterns: Vec<Pattern>,
    pub hmac_key: Vec<u8>,
}

#[derive(Default, Clone)]
pub struct FieldRule {
    pub path: String,
    pub entity: String,
    pub operator: String,
}

#[derive(Default, Clone)]
pub struct Pattern {
    pub name: String,
    pub regex: String,
    pub operator: String,
    /// Go's regexp/syntax program of regex, compiled by the host.
    pub prog: Option<Prog>,
}

/// A compiled Config.
pub struct Profile {
    /// Its handle less one: the context cache's key.
    pub id: usize,
    pub on: u64,
    pub ops: [u8; MAX_ENTITIES],
    pub names: Vec<Vec<u8>>,
    pub redacted: Vec<Vec<u8>>,
    pub upper: Vec<Vec<u8>>,
    pub accounts: HashSet<Vec<u8>>,
    pub ignore: HashMap<Vec<u8>, u64>,
    pub rules: Vec<PathRule>,
    pub patterns: Vec<PatternRule>,
    pub key: Option<HmacKey>,
    pub field_hints: bool,
}

pub struct PathRule {
    pub segs: Vec<Vec<u8>>,
    pub ent: u8,
}

pub struct PatternRule {
    pub prog: Prog,
    pub ent: u8,
}

/// Reads a profile's JSON; unknown keys are errors.
pub fn parse_config(data: &[u8]) -> Result<Config, String> {
    cfgjson::parse(data).map_err(|e| format!("masking config: {}", e))
}

fn op_of(name: &str) -> Result<u8, String> {
    match name {
        "" | "redact" => Ok(OP_REDACT),
        "last4" => Ok(OP_LAST4),
        "hmac" => Ok(OP_HMAC),
        "null" => Ok(OP_NULL),
        _ => Err(format!("masking config: unknown operator {}", go_quote(name))),
    }
}

/// Checks c and builds its Profile.
pub fn compile(c: Config, id: usize) -> Result<Profile, String> {
    let mut p = Profile {
        id,
        on: 0,
        ops: [0; MAX_ENTITIES],
        names: BUILTIN_NAMES.iter().map(|s| s.as_bytes().to_vec()).collect(),
        redacted: Vec::new(),
        upper: Vec::new(),
        accounts: HashSet::new(),
        ignore: HashMap::new(),
        rules: Vec::new(),
        patterns: Vec::new(),
        key: None,
        field_hints: false,
    };
    let mut ids: HashMap<String, u8> = HashMap::new();
    for (i, n) in BUILTIN_NAMES.iter().enumerate() {
        ids.insert(n.to_string(), i as u8);
    }
    if c.entities.is_empty() && c.fields.is_empty() && c.patterns.is_empty() {
        return Err("masking config: no entities, fields or patterns".into());
    }
    for e in &c.entities {
        match ids.get(e) {
            Some(&id) => p.on |= 1 << id,
            None => return Err(format!("masking config: unknown entity {}", go_quote(e))),
        }
    }
    fn custom(p: &mut Profile, ids: &mut HashMap<String, u8>, name: &str) -> Result<u8, String> {
        let name = if name.is_empty() { "field" } else { name };
        if let Some(&id) = ids.get(name) {
            return Ok(id);
        }
        if p.names.len() >= MAX_ENTITIES {
            return Err("masking config: more than 64 entities".into());
        }
        let id = p.names.len() as u8;
        p.names.push(name.as_bytes().to_vec());
        ids.insert(name.to_string(), id);
        Ok(id)
    }
    let mut explicit = [false; MAX_ENTITIES];
    for f in &c.fields {
        if !f.path.starts_with('/') {
            return Err(format!("masking config: field path {} is not a JSON pointer", go_quote(&f.path)));
        }
        let id = custom(&mut p, &mut ids, &f.entity)?;
        let op = op_of(&f.operator)?;
        if explicit[id as usize] && p.ops[id as usize] != op {
            return Err(format!(
                "masking config: entity {} has two operators",
                go_quote(&String::from_utf8_lossy(&p.names[id as usize]))
            ));
        }
        explicit[id as usize] = true;
        p.ops[id as usize] = op;
        let segs = f.path[1..].split('/').map(|s| unescape_pointer(s.as_bytes())).collect();
        p.rules.push(PathRule { segs, ent: id });
    }
    for pt in &c.patterns {
        if pt.name.is_empty() {
            return Err("masking config: a pattern without a name".into());
        }
        let id = custom(&mut p, &mut ids, &pt.name)?;
        let op = op_of(&pt.operator)?;
        // (Go compiles the regex before; without the host's program this
        // module cannot, and says so once the rest of the pattern is read)
        let prog = match &pt.prog {
            Some(prog) => prog.clone(),
            None => {
                return Err(format!(
                    "masking config: pattern {}: no compiled program (\"prog\"): this module needs the host to send Go's regexp/syntax program of the regex",
                    go_quote(&pt.name)
                ))
            }
        };
        explicit[id as usize] = true;
        p.ops[id as usize] = op;
        p.patterns.push(PatternRule { prog, ent: id });
    }
    let mut def = OP_REDACT;
    if let Some((_, o)) = c.operators.iter().find(|(k, _)| k == "*") {
        def = op_of(o)?;
    }
    for i in 0..p.names.len() {
        if !explicit[i] {
            p.ops[i] = def;
        }
    }
    for (e, o) in &c.operators {
        if e == "*" {
            continue;
        }
        let id = match ids.get(e) {
            Some(&id) => id,
            None => return Err(format!("masking config: operator for unknown entity {}", go_quote(e))),
        };
        let op = op_of(o)?;
        p.ops[id as usize] = op;
    }
    if c.account_fields.is_empty() {
        for a in DEFAULT_ACCOUNT_FIELDS {
            p.accounts.insert(normalize_name(a.as_bytes()));
        }
    } else {
        for a in &c.account_fields {
            p.accounts.insert(normalize_name(a.as_bytes()));
        }
    }
    for (f, ents) in &c.ignore_fields {
        let mut m = 0u64;
        for e in ents {
            match ids.get(e) {
                Some(&id) => m |= 1 << id,
                None => {
                    return Err(format!(
                        "masking config: ignore_fields {}: unknown entity {}",
                        go_quote(f),
                        go_quote(e)
                    ))
                }
            }
        }
        *p.ignore.entry(normalize_name(f.as_bytes())).or_insert(0) |= m;
    }
    for i in 0..p.names.len() {
        let n = String::from_utf8_lossy(&p.names[i]).into_owned();
        if p.ops[i] == OP_HMAC && c.hmac_key.is_empty() && (p.on & (1 << i) != 0 || i >= NUM_BUILTIN) {
            return Err(format!("masking config: entity {} uses hmac and no hmac_key is set", go_quote(&n)));
        }
        let u = go_to_upper(&n);
        p.upper.push(u.as_bytes().to_vec());
        p.redacted.push(format!("[REDACTED:{}]", u).into_bytes());
    }
    p.key = Some(HmacKey::new(&c.hmac_key));
    p.field_hints = p.on & (1 << ENT_SSN | 1 << ENT_PHONE | 1 << ENT_ABA) != 0;
    Ok(p)
}

/// A JSON pointer token unescaped: "~1" is '/', "~0" is '~', left to right.
fn unescape_pointer(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'~' && i + 1 < s.len() && (s[i + 1] == b'1' || s[i + 1] == b'0') {
            out.push(if s[i + 1] == b'1' { b'/' } else { b'~' });
            i += 2;
            continue;
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// A field name lower-cased without '_', '-', '.' and spaces.
pub fn normalize_name(s: &[u8]) -> Vec<u8> {
    let mut d = Vec::new();
    append_normalized(&mut d, s);
    d
}

/// strings.ToUpper: each rune's simple upper case (a rune whose upper case
/// is not one rune stays).
pub fn go_to_upper(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if ch.is_ascii() {
            out.push(ch.to_ascii_uppercase());
            continue;
        }
        let mut up = ch.to_uppercase();
        match (up.next(), up.next()) {
            (Some(u), None) => out.push(u),
            _ => out.push(ch),
        }
    }
    out
}

/// Whether strconv.IsPrint holds for a non-ASCII rune (an approximation:
/// the controls, the spaces but U+0020, the format characters, the
/// private-use areas and the non-characters are not printable).
fn is_print(r: char) -> bool {
    let c = r as u32;
    !((0x80..=0xa0).contains(&c)
        || c == 0xad
        || (0x600..=0x605).contains(&c)
        || c == 0x61c
        || c == 0x6dd
        || c == 0x70f
        || c == 0x1680
        || c == 0x180e
        || (0x2000..=0x200f).contains(&c)
        || (0x2028..=0x202f).contains(&c)
        || (0x205f..=0x206f).contains(&c)
        || c == 0x3000
        || (0xd800..=0xf8ff).contains(&c)
        || c == 0xfeff
        || (0xfff9..=0xfffb).contains(&c)
        || (c & 0xfffe) == 0xfffe
        || (0xf0000..=0x10ffff).contains(&c)
        || (0xe0000..=0xe007f).contains(&c))
}

/// strconv.Quote (%q) of a string.
pub fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_ascii() || is_print(c) => out.push(c),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}
