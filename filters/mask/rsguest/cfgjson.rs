//! The profile's JSON, read as config.go's ParseConfig reads it with
//! encoding/json (DisallowUnknownFields): the first JSON value, checked
//! strictly, then decoded into the Config with Go's rules (keys matched
//! exactly or case-insensitively, unknown keys an error, null leaving a
//! string or struct as it is and clearing a slice or map, a duplicate key
//! decoded again over the first, hmac_key in standard base64).

use crate::config::{Config, FieldRule, Pattern};
use crate::regex::{Inst, Prog};

enum Value {
    Null,
    Bool,
    Number(String),
    Str(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool => "bool",
            Value::Number(_) => "number",
            Value::Str(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
    depth: usize,
}

/// A byte as encoding/json's error messages quote it (quoteChar: the byte
/// read as a rune, %q without the double quotes).
fn describe(c: u8) -> String {
    match c {
        b'\'' => "'\\''".into(),
        b'"' => "'\"'".into(),
        c => {
            let q = crate::config::go_quote(&char::from(c).to_string());
            format!("'{}'", &q[1..q.len() - 1])
        }
    }
}

impl<'a> Parser<'a> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn err_at(&self, ctx: &str) -> String {
        if self.i >= self.b.len() {
            "unexpected EOF".into()
        } else {
            format!("invalid character {} {}", describe(self.b[self.i]), ctx)
        }
    }

    fn value(&mut self) -> Result<Value, String> {
        self.ws();
        if self.i >= self.b.len() {
            return Err("unexpected EOF".into());
        }
        match self.b[self.i] {
            b'{' => {
                self.depth += 1;
                if self.depth > 10000 {
                    return Err("exceeded max depth".into());
                }
                self.i += 1;
                let mut kv = Vec::new();
                self.ws();
                if self.i < self.b.len() && self.b[self.i] == b'}' {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(Value::Object(kv));
                }
                loop {
                    self.ws();
                    if self.i >= self.b.len() || self.b[self.i] != b'"' {
                        return Err(self.err_at("looking for beginning of object key string"));
                    }
                    let k = self.string()?;
                    self.ws();
                    if self.i >= self.b.len() || self.b[self.i] != b':' {
                        return Err(self.err_at("after object key"));
                    }
                    self.i += 1;
                    let v = self.value()?;
                    kv.push((k, v));
                    self.ws();
                    if self.i >= self.b.len() {
                        return Err("unexpected EOF".into());
                    }
                    match self.b[self.i] {
                        b',' => self.i += 1,
                        b'}' => {
                            self.i += 1;
                            self.depth -= 1;
                            return Ok(Value::Object(kv));
                        }
                        _ => return Err(self.err_at("after object key:value pair")),
                    }
                }
            }
            b'[' => {
                self.depth += 1;
                if self.depth > 10000 {
                    return Err("exceeded max depth".into());
                }
                self.i += 1;
                let mut vs = Vec::new();
                self.ws();
                if self.i < self.b.len() && self.b[self.i] == b']' {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(Value::Array(vs));
                }
                loop {
                    vs.push(self.value()?);
                    self.ws();
                    if self.i >= self.b.len() {
                        return Err("unexpected EOF".into());
                    }
                    match self.b[self.i] {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            self.depth -= 1;
                            return Ok(Value::Array(vs));
                        }
                        _ => return Err(self.err_at("after array element")),
                    }
                }
            }
            b'"' => Ok(Value::Str(self.string()?)),
            b't' => self.literal(b"true", Value::Bool),
            b'f' => self.literal(b"false", Value::Bool),
            b'n' => self.literal(b"null", Value::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(self.err_at("looking for beginning of value")),
        }
    }

    fn literal(&mut self, lit: &[u8], v: Value) -> Result<Value, String> {
        for (k, &c) in lit.iter().enumerate() {
            if self.i >= self.b.len() {
                return Err("unexpected EOF".into());
            }
            if self.b[self.i] != c {
                return Err(self.err_at(&format!("in literal {} (expecting {})", String::from_utf8_lossy(lit), describe(lit[k]))));
            }
            self.i += 1;
        }
        Ok(v)
    }

    fn digits(&mut self) -> usize {
        let s = self.i;
        while self.i < self.b.len() && self.b[self.i].is_ascii_digit() {
            self.i += 1;
        }
        self.i - s
    }

    fn number(&mut self) -> Result<Value, String> {
        let s = self.i;
        if self.b[self.i] == b'-' {
            self.i += 1;
        }
        if self.i >= self.b.len() {
            return Err("unexpected EOF".into());
        }
        if self.b[self.i] == b'0' {
            self.i += 1;
        } else if self.b[self.i].is_ascii_digit() {
            self.digits();
        } else {
            return Err(self.err_at("in numeric literal"));
        }
        if self.i < self.b.len() && self.b[self.i] == b'.' {
            self.i += 1;
            if self.digits() == 0 {
                return Err(self.err_at("after decimal point in numeric literal"));
            }
        }
        if self.i < self.b.len() && (self.b[self.i] == b'e' || self.b[self.i] == b'E') {
            self.i += 1;
            if self.i < self.b.len() && (self.b[self.i] == b'+' || self.b[self.i] == b'-') {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.err_at("in exponent of numeric literal"));
            }
        }
        Ok(Value::Number(String::from_utf8_lossy(&self.b[s..self.i]).into_owned()))
    }

    /// A string, unquoted as encoding/json does (invalid UTF-8 and lone
    /// surrogates become U+FFFD).
    fn string(&mut self) -> Result<String, String> {
        self.i += 1;
        let mut out = String::new();
        loop {
            if self.i >= self.b.len() {
                return Err("unexpected EOF".into());
            }
            let c = self.b[self.i];
            match c {
                b'"' => {
                    self.i += 1;
                    return Ok(out);
                }
                b'\\' => {
                    self.i += 1;
                    if self.i >= self.b.len() {
                        return Err("unexpected EOF".into());
                    }
                    let e = self.b[self.i];
                    self.i += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\x08'),
                        b'f' => out.push('\x0c'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let r = self.hex4()?;
                            if (0xd800..0xe000).contains(&r) {
                                // a surrogate: joined with a following low one
                                let save = self.i;
                                let mut joined = None;
                                if r < 0xdc00
                                    && self.i + 1 < self.b.len()
                                    && self.b[self.i] == b'\\'
                                    && self.b[self.i + 1] == b'u'
                                {
                                    self.i += 2;
                                    if let Ok(r2) = self.hex4() {
                                        if (0xdc00..0xe000).contains(&r2) {
                                            joined = Some(((r - 0xd800) << 10 | (r2 - 0xdc00)) + 0x10000);
                                        }
                                    }
                                }
                                match joined {
                                    Some(v) => out.push(char::from_u32(v).unwrap_or('\u{fffd}')),
                                    None => {
                                        self.i = save;
                                        out.push('\u{fffd}');
                                    }
                                }
                            } else {
                                out.push(char::from_u32(r).unwrap_or('\u{fffd}'));
                            }
                        }
                        _ => {
                            self.i -= 1;
                            return Err(self.err_at("in string escape code"));
                        }
                    }
                }
                c if c < 0x20 => return Err(self.err_at("in string literal")),
                c if c < 0x80 => {
                    out.push(c as char);
                    self.i += 1;
                }
                _ => {
                    let (r, w) = crate::regex::decode_rune(&self.b[self.i..]);
                    out.push(char::from_u32(r as u32).unwrap_or('\u{fffd}'));
                    self.i += w;
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let mut r = 0u32;
        for _ in 0..4 {
            if self.i >= self.b.len() {
                return Err("unexpected EOF".into());
            }
            let c = self.b[self.i];
            let v = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return Err(self.err_at("in \\u hexadecimal character escape")),
            };
            r = r << 4 | v as u32;
            self.i += 1;
        }
        Ok(r)
    }
}

/// Whether key names field as encoding/json matches them: exactly or
/// case-insensitively (K, the Kelvin sign, and ſ fold to k and s).
fn key_is(key: &str, field: &str) -> bool {
    if key == field {
        return true;
    }
    let mut it = key.chars().map(|c| match c {
        '\u{212a}' => 'k',
        '\u{17f}' => 's',
        c => c.to_ascii_lowercase(),
    });
    for f in field.chars() {
        if it.next() != Some(f) {
            return false;
        }
    }
    it.next().is_none()
}

struct Decoder {
    /// The first type or unknown-field error, in document order.
    err: Option<String>,
}

impl Decoder {
    fn save(&mut self, e: String) {
        if self.err.is_none() {
            self.err = Some(e);
        }
    }

    fn type_err(&mut self, v: &Value, field: &str, ty: &str) {
        self.save(format!(
            "json: cannot unmarshal {} into Go struct field {} of type {}",
            v.kind(),
            field,
            ty
        ));
    }

    /// A string field: null leaves it.
    fn string(&mut self, dst: &mut String, v: &Value, field: &str) {
        match v {
            Value::Str(s) => *dst = s.clone(),
            Value::Null => {}
            _ => self.type_err(v, field, "string"),
        }
    }

    /// A []string: null clears it; elements decoded over the old ones.
    fn strings(&mut self, dst: &mut Vec<String>, v: &Value, field: &str) {
        match v {
            Value::Null => dst.clear(),
            Value::Array(vs) => {
                for (k, e) in vs.iter().enumerate() {
                    if k >= dst.len() {
                        dst.push(String::new());
                    }
                    self.string(&mut dst[k], e, field);
                }
                dst.truncate(vs.len());
            }
            _ => self.type_err(v, field, "[]string"),
        }
    }

    fn config(&mut self, c: &mut Config, v: &Value) {
        let kv = match v {
            Value::Null => return,
            Value::Object(kv) => kv,
            _ => {
                self.save(format!("json: cannot unmarshal {} into Go value of type engine.Config", v.kind()));
                return;
            }
        };
        for (k, v) in kv {
            if key_is(k, "entities") {
                self.strings(&mut c.entities, v, "Config.entities");
            } else if key_is(k, "operators") {
                match v {
                    Value::Null => c.operators.clear(),
                    Value::Object(m) => {
                        for (mk, mv) in m {
                            let mut s = String::new();
                            self.string(&mut s, mv, &format!("Config.operators.{}", mk));
                            match c.operators.iter_mut().find(|(x, _)| x == mk) {
                                Some(e) => e.1 = s,
                                None => c.operators.push((mk.clone(), s)),
                            }
                        }
                    }
                    _ => self.type_err(v, "Config.operators", "map[string]string"),
                }
            } else if key_is(k, "account_fields") {
                self.strings(&mut c.account_fields, v, "Config.account_fields");
            } else if key_is(k, "ignore_fields") {
                match v {
                    Value::Null => c.ignore_fields.clear(),
                    Value::Object(m) => {
                        for (mk, mv) in m {
                            let mut s = Vec::new();
                            self.strings(&mut s, mv, &format!("Config.ignore_fields.{}", mk));
                            match c.ignore_fields.iter_mut().find(|(x, _)| x == mk) {
                                Some(e) => e.1 = s,
                                None => c.ignore_fields.push((mk.clone(), s)),
                            }
                        }
                    }
                    _ => self.type_err(v, "Config.ignore_fields", "map[string][]string"),
                }
            } else if key_is(k, "fields") {
                match v {
                    Value::Null => c.fields.clear(),
                    Value::Array(vs) => {
                        for (n, e) in vs.iter().enumerate() {
                            if n >= c.fields.len() {
                                c.fields.push(FieldRule::default());
                            }
                            self.field_rule(&mut c.fields[n], e);
                        }
                        c.fields.truncate(vs.len());
                    }
                    _ => self.type_err(v, "Config.fields", "[]engine.FieldRule"),
                }
            } else if key_is(k, "patterns") {
                match v {
                    Value::Null => c.patterns.clear(),
                    Value::Array(vs) => {
                        for (n, e) in vs.iter().enumerate() {
                            if n >= c.patterns.len() {
                                c.patterns.push(Pattern::default());
                            }
                            self.pattern(&mut c.patterns[n], e);
                        }
                        c.patterns.truncate(vs.len());
                    }
                    _ => self.type_err(v, "Config.patterns", "[]engine.Pattern"),
                }
            } else if key_is(k, "hmac_key") {
                match v {
                    Value::Null => c.hmac_key.clear(),
                    Value::Str(s) => match base64_std(s.as_bytes()) {
                        Ok(b) => c.hmac_key = b,
                        Err(e) => self.save(e),
                    },
                    _ => self.type_err(v, "Config.hmac_key", "[]uint8"),
                }
            } else if key_is(k, "custom") {
                // json.RawMessage: any value; the built-in engine ignores it
            } else {
                self.save(format!("json: unknown field {}", crate::config::go_quote(k)));
            }
        }
    }

    fn field_rule(&mut self, f: &mut FieldRule, v: &Value) {
        let kv = match v {
            Value::Null => return,
            Value::Object(kv) => kv,
            _ => return self.type_err(v, "Config.fields", "engine.FieldRule"),
        };
        for (k, v) in kv {
            if key_is(k, "path") {
                self.string(&mut f.path, v, "Config.fields.path");
            } else if key_is(k, "entity") {
                self.string(&mut f.entity, v, "Config.fields.entity");
            } else if key_is(k, "operator") {
                self.string(&mut f.operator, v, "Config.fields.operator");
            } else {
                self.save(format!("json: unknown field {}", crate::config::go_quote(k)));
            }
        }
    }

    fn pattern(&mut self, p: &mut Pattern, v: &Value) {
        let kv = match v {
            Value::Null => return,
            Value::Object(kv) => kv,
            _ => return self.type_err(v, "Config.patterns", "engine.Pattern"),
        };
        for (k, v) in kv {
            if key_is(k, "name") {
                self.string(&mut p.name, v, "Config.patterns.name");
            } else if key_is(k, "regex") {
                self.string(&mut p.regex, v, "Config.patterns.regex");
            } else if key_is(k, "operator") {
                self.string(&mut p.operator, v, "Config.patterns.operator");
            } else if key_is(k, "prog") {
                match v {
                    Value::Null => p.prog = None,
                    _ => match prog(v) {
                        Ok(pr) => p.prog = Some(pr),
                        Err(e) => self.save(format!("pattern program: {}", e)),
                    },
                }
            } else {
                self.save(format!("json: unknown field {}", crate::config::go_quote(k)));
            }
        }
    }
}

fn uint(v: &Value) -> Result<u32, String> {
    match v {
        Value::Number(s) => s.parse::<u32>().map_err(|_| format!("{} is not a small non-negative integer", s)),
        _ => Err(format!("a {} where a number was expected", v.kind())),
    }
}

fn int(v: &Value) -> Result<i32, String> {
    match v {
        Value::Number(s) => s.parse::<i32>().map_err(|_| format!("{} is not an integer", s)),
        _ => Err(format!("a {} where a number was expected", v.kind())),
    }
}

/// {"start": S, "inst": [[op, out, arg, [lo0, hi0, …]], …]}
fn prog(v: &Value) -> Result<Prog, String> {
    let kv = match v {
        Value::Object(kv) => kv,
        _ => return Err("not an object".into()),
    };
    let mut start = None;
    let mut insts = None;
    for (k, v) in kv {
        match k.as_str() {
            "start" => start = Some(uint(v)?),
            "inst" => {
                let vs = match v {
                    Value::Array(vs) => vs,
                    _ => return Err("inst is not an array".into()),
                };
                let mut out = Vec::with_capacity(vs.len());
                for e in vs {
                    let f = match e {
                        Value::Array(f) if f.len() == 3 || f.len() == 4 => f,
                        _ => return Err("an instruction is not [op, out, arg, runes]".into()),
                    };
                    let op = uint(&f[0])?;
                    let mut runes = Vec::new();
                    if f.len() == 4 {
                        match &f[3] {
                            Value::Array(rs) => {
                                for r in rs {
                                    runes.push(int(r)?);
                                }
                            }
                            Value::Null => {}
                            _ => return Err("runes is not an array".into()),
                        }
                    }
                    out.push(Inst { op: op.min(255) as u8, out: uint(&f[1])?, arg: uint(&f[2])?, runes });
                }
                insts = Some(out);
            }
            _ => return Err(format!("unknown field {}", crate::config::go_quote(k))),
        }
    }
    match (start, insts) {
        (Some(s), Some(i)) => Prog::new(s, i),
        _ => Err("start or inst missing".into()),
    }
}

/// encoding/base64's StdEncoding.Decode (padding required, '\r' and '\n'
/// skipped), with its error message.
fn base64_std(src: &[u8]) -> Result<Vec<u8>, String> {
    fn val(c: u8) -> Option<u8> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        })
    }
    let corrupt = |at: usize| format!("illegal base64 data at input byte {}", at);
    let mut out = Vec::new();
    let mut si = 0usize;
    let n = src.len();
    while si < n {
        let mut dbuf = [0u8; 4];
        let mut dlen = 4;
        let mut j = 0;
        let mut err = None;
        while j < 4 {
            if si == n {
                if j == 0 {
                    return Ok(out);
                }
                return Err(corrupt(si - j));
            }
            let c = src[si];
            si += 1;
            if let Some(v) = val(c) {
                dbuf[j] = v;
                j += 1;
                continue;
            }
            if c == b'\n' || c == b'\r' {
                continue;
            }
            if c != b'=' {
                return Err(corrupt(si - 1));
            }
            match j {
                0 | 1 => return Err(corrupt(si - 1)),
                2 => {
                    while si < n && (src[si] == b'\n' || src[si] == b'\r') {
                        si += 1;
                    }
                    if si == n {
                        return Err(corrupt(n));
                    }
                    if src[si] != b'=' {
                        return Err(corrupt(si - 1));
                    }
                    si += 1;
                }
                _ => {}
            }
            while si < n && (src[si] == b'\n' || src[si] == b'\r') {
                si += 1;
            }
            if si < n {
                err = Some(corrupt(si));
            }
            dlen = j;
            break;
        }
        let v = (dbuf[0] as u32) << 18 | (dbuf[1] as u32) << 12 | (dbuf[2] as u32) << 6 | dbuf[3] as u32;
        let b = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
        out.extend_from_slice(&b[..dlen - 1]);
        if let Some(e) = err {
            return Err(e);
        }
    }
    Ok(out)
}

/// Reads a profile: the first JSON value of data.
pub fn parse(data: &[u8]) -> Result<Config, String> {
    let mut p = Parser { b: data, i: 0, depth: 0 };
    p.ws();
    if p.i >= data.len() {
        return Err("EOF".into());
    }
    let v = p.value()?;
    let mut c = Config::default();
    let mut d = Decoder { err: None };
    d.config(&mut c, &v);
    match d.err {
        Some(e) => Err(e),
        None => Ok(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64() {
        assert_eq!(base64_std(b"aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_std(b"aGVsbG8h").unwrap(), b"hello!");
        assert_eq!(base64_std(b"aGVsbA==").unwrap(), b"hell");
        assert_eq!(base64_std(b"aGVs\r\nbA==").unwrap(), b"hell");
        assert!(base64_std(b"aGVsbA=").is_err());
        assert!(base64_std(b"aGVsbA").is_err());
        assert!(base64_std(b"aGVsbA==x").is_err());
    }

    #[test]
    fn config() {
        let c = parse(br#"{"Entities":["card"],"operators":{"*":"hmac"},"hmac_key":"a2V5"} trailing"#).unwrap();
        assert_eq!(c.entities, vec!["card".to_string()]);
        assert_eq!(c.hmac_key, b"key");
        assert!(parse(br#"{"entity":["card"]}"#).is_err());
        assert!(parse(br#"{"entities":["card"]"#).is_err());
    }
}
