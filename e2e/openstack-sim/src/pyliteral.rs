//! The little of Python that Magnum's API applies to JSON-patch values: `ast.literal_eval`
//! (it turns a string `value` for `/labels` and `/health_status_reason` into a dict,
//! `magnum/api/utils.py`, `apply_jsonpatch`) and `repr` (how its error messages show a value).

use serde_json::Value;

/// A Python literal.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Py {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    List(Vec<Py>),
    Tuple(Vec<Py>),
    Dict(Vec<(Py, Py)>),
}

impl Py {
    /// The object a JSON value decodes to in Python (`json.loads`).
    pub fn from_json(v: &Value) -> Py {
        match v {
            Value::Null => Py::None,
            Value::Bool(b) => Py::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Py::Int(i.into()),
                None => Py::Float(n.as_f64().unwrap_or_default()),
            },
            Value::String(s) => Py::Str(s.clone()),
            Value::Array(a) => Py::List(a.iter().map(Py::from_json).collect()),
            Value::Object(o) => Py::Dict(
                o.iter()
                    .map(|(k, v)| (Py::Str(k.clone()), Py::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// Python's `type(x)` as `str` shows it, e.g. `<class 'dict'>`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Py::None => "<class 'NoneType'>",
            Py::Bool(_) => "<class 'bool'>",
            Py::Int(_) => "<class 'int'>",
            Py::Float(_) => "<class 'float'>",
            Py::Str(_) => "<class 'str'>",
            Py::List(_) => "<class 'list'>",
            Py::Tuple(_) => "<class 'tuple'>",
            Py::Dict(_) => "<class 'dict'>",
        }
    }

    /// Python's `repr` (and `str` of containers).
    pub fn repr(&self) -> String {
        let join = |items: &[Py]| items.iter().map(Py::repr).collect::<Vec<_>>().join(", ");
        match self {
            Py::None => "None".into(),
            Py::Bool(true) => "True".into(),
            Py::Bool(false) => "False".into(),
            Py::Int(i) => i.to_string(),
            Py::Float(f) => format!("{f:?}"),
            Py::Str(s) => repr_str(s),
            Py::List(items) => format!("[{}]", join(items)),
            Py::Tuple(items) if items.len() == 1 => format!("({},)", items[0].repr()),
            Py::Tuple(items) => format!("({})", join(items)),
            Py::Dict(pairs) => format!(
                "{{{}}}",
                pairs
                    .iter()
                    .map(|(k, v)| format!("{}: {}", k.repr(), v.repr()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// What `'%s' % x` shows: a string itself, anything else its repr.
    pub fn str(&self) -> String {
        match self {
            Py::Str(s) => s.clone(),
            other => other.repr(),
        }
    }
}

fn repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::new();
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// `ast.literal_eval(text)` for the literals a patch value holds; the error is Python's
/// message for what it refuses.
pub(crate) fn literal_eval(text: &str) -> Result<Py, String> {
    let mut p = Parser {
        chars: text.trim_start_matches([' ', '\t']).chars().collect(),
        at: 0,
    };
    let v = p.value()?;
    p.space();
    if p.at < p.chars.len() {
        return Err("invalid syntax (<unknown>, line 1)".into());
    }
    Ok(v)
}

struct Parser {
    chars: Vec<char>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
    }

    fn syntax() -> String {
        "invalid syntax (<unknown>, line 1)".into()
    }

    fn value(&mut self) -> Result<Py, String> {
        self.space();
        match self.peek() {
            None => Err("invalid syntax (<unknown>, line 0)".into()),
            Some('{') => self.dict(),
            Some('[') => self.seq(']').map(Py::List),
            Some('(') => self.seq(')').map(Py::Tuple),
            Some('\'' | '"') => self.string(),
            Some(c) if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' => self.number(),
            Some(c) if c.is_alphabetic() || c == '_' => {
                let start = self.at;
                while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    self.at += 1;
                }
                let word: String = self.chars[start..self.at].iter().collect();
                match word.as_str() {
                    "True" => Ok(Py::Bool(true)),
                    "False" => Ok(Py::Bool(false)),
                    "None" => Ok(Py::None),
                    // A name is valid Python but no literal.
                    _ => Err("malformed node or string on line 1: <ast.Name object>".into()),
                }
            }
            Some(_) => Err(Self::syntax()),
        }
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        self.space();
        if self.peek() == Some(c) {
            self.at += 1;
            Ok(())
        } else {
            Err(Self::syntax())
        }
    }

    /// Items up to `close`, a trailing comma allowed.
    fn seq(&mut self, close: char) -> Result<Vec<Py>, String> {
        self.at += 1;
        let mut items = Vec::new();
        loop {
            self.space();
            if self.peek() == Some(close) {
                self.at += 1;
                return Ok(items);
            }
            items.push(self.value()?);
            self.space();
            match self.peek() {
                Some(',') => self.at += 1,
                Some(c) if c == close => {}
                _ => return Err(Self::syntax()),
            }
        }
    }

    fn dict(&mut self) -> Result<Py, String> {
        self.at += 1;
        let mut pairs = Vec::new();
        loop {
            self.space();
            if self.peek() == Some('}') {
                self.at += 1;
                return Ok(Py::Dict(pairs));
            }
            let k = self.value()?;
            self.expect(':')?;
            let v = self.value()?;
            // A later key replaces an earlier one, as in a dict display.
            pairs.retain(|(old, _)| *old != k);
            pairs.push((k, v));
            self.space();
            match self.peek() {
                Some(',') => self.at += 1,
                Some('}') => {}
                _ => return Err(Self::syntax()),
            }
        }
    }

    fn string(&mut self) -> Result<Py, String> {
        let mut out = String::new();
        // Adjacent literals are one string.
        while let Some(quote @ ('\'' | '"')) = self.peek() {
            self.at += 1;
            loop {
                let c = self.peek().ok_or(
                    "unterminated string literal (detected at line 1) (<unknown>, line 1)",
                )?;
                self.at += 1;
                match c {
                    c if c == quote => break,
                    '\n' => {
                        return Err(
                            "unterminated string literal (detected at line 1) (<unknown>, line 1)"
                                .into(),
                        );
                    }
                    '\\' => {
                        let e = self.peek().ok_or_else(Self::syntax)?;
                        self.at += 1;
                        match e {
                            'n' => out.push('\n'),
                            't' => out.push('\t'),
                            'r' => out.push('\r'),
                            'b' => out.push('\u{8}'),
                            'f' => out.push('\u{c}'),
                            '0' => out.push('\0'),
                            '\\' | '\'' | '"' => out.push(e),
                            '/' => out.push_str("\\/"),
                            'x' | 'u' | 'U' => {
                                let n = match e {
                                    'x' => 2,
                                    'u' => 4,
                                    _ => 8,
                                };
                                let hex: String = self.chars
                                    [self.at..(self.at + n).min(self.chars.len())]
                                    .iter()
                                    .collect();
                                self.at += n;
                                let c = u32::from_str_radix(&hex, 16)
                                    .ok()
                                    .and_then(char::from_u32)
                                    .ok_or(
                                        "(unicode error) truncated escape (<unknown>, line 1)",
                                    )?;
                                out.push(c);
                            }
                            other => {
                                out.push('\\');
                                out.push(other);
                            }
                        }
                    }
                    c => out.push(c),
                }
            }
            self.space();
        }
        Ok(Py::Str(out))
    }

    fn number(&mut self) -> Result<Py, String> {
        let start = self.at;
        if matches!(self.peek(), Some('-' | '+')) {
            self.at += 1;
        }
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
        {
            self.at += 1;
        }
        let text: String = self.chars[start..self.at].iter().collect();
        let plain = text.replace('_', "");
        if let Ok(i) = plain.parse::<i128>() {
            return Ok(Py::Int(i));
        }
        plain
            .parse::<f64>()
            .map(Py::Float)
            .map_err(|_| Self::syntax())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn literals_as_python_reads_them() {
        let d = literal_eval("{'api': 'ok', \"nodes\": \"ok\", 'n': 1}").unwrap();
        assert_eq!(d.repr(), "{'api': 'ok', 'nodes': 'ok', 'n': 1}");
        // A JSON object of strings is a Python dict display.
        let j = serde_json::to_string(&json!({"a\"b": "c\nd", "é": "x"})).unwrap();
        assert_eq!(
            literal_eval(&j).unwrap(),
            Py::Dict(vec![
                (Py::Str("a\"b".into()), Py::Str("c\nd".into())),
                (Py::Str("é".into()), Py::Str("x".into())),
            ])
        );
        assert_eq!(
            literal_eval(" [1, (2,), None]").unwrap().repr(),
            "[1, (2,), None]"
        );
        assert!(literal_eval("{'a': ok}").is_err());
        assert!(literal_eval("{'a': 'b'").is_err());
        assert!(literal_eval("").is_err());
        assert_eq!(
            Py::from_json(&json!({"api": "ok", "x": [true, null, 1.5]})).repr(),
            "{'api': 'ok', 'x': [True, None, 1.5]}"
        );
        assert_eq!(Py::Str("it's".into()).repr(), "\"it's\"");
    }
}
