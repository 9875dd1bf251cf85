//! Prop types as specs write them: TypeScript type expressions (`string`, `'sm' | 'md'`,
//! `React.ReactNode`, `(value: string) => void`, `{ id: number }[]` …).
//!
//! Arno reads them for three things: the structured editor's helpers ([`classify`] a type as
//! text, number, yes/no or one of a list, and write one back with [`options_type`]), its inline
//! validation ([`parse`] says where a type stops making sense), and impact analysis ([`Ty::fits`]
//! decides whether a value stored on a screen is still a value of the type). The grammar is the
//! part of TypeScript's type syntax that component props use; what it cannot read is reported,
//! never guessed.

use std::fmt;

/// A parsed type.
#[derive(Debug, Clone, PartialEq)]
pub enum Ty {
    /// `string`, `number`, `boolean`, `any`, `unknown`, `null`, `undefined`, `void`, `never`, …
    Keyword(&'static str),
    Str(String),
    Num(f64),
    Bool(bool),
    /// A named type (`ReactNode`, `React.MouseEvent<HTMLButtonElement>`): not known to Arno.
    Named(String, Vec<Ty>),
    Array(Box<Ty>),
    Tuple(Vec<Ty>),
    Union(Vec<Ty>),
    Intersection(Vec<Ty>),
    Object(Vec<(String, Ty)>),
    Function(Box<Ty>),
    /// `keyof T`, `typeof x`, `readonly T[]`, indexed access, template literals: read, not judged.
    Other,
}

/// Whether a stored value is a value of a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    Yes,
    No,
    /// The type is not one Arno can judge (a named type, an object…).
    Unknown,
}

/// Where a type stops parsing: a character offset and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeError {
    pub at: usize,
    pub message: String,
}

impl fmt::Display for TypeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at character {})", self.message, self.at + 1)
    }
}

const KEYWORDS: &[&str] = &[
    "string",
    "number",
    "boolean",
    "bigint",
    "symbol",
    "object",
    "any",
    "unknown",
    "never",
    "void",
    "null",
    "undefined",
];

/// Longest type text Arno reads (a table cell; deeper nesting is refused, not recursed into).
const MAX_LEN: usize = 2_000;
const MAX_DEPTH: usize = 32;

/// Parse a type expression.
pub fn parse(text: &str) -> Result<Ty, TypeError> {
    if text.len() > MAX_LEN {
        return Err(TypeError { at: 0, message: format!("a type is at most {MAX_LEN} characters") });
    }
    let chars: Vec<char> = text.chars().collect();
    let mut p = Parser { chars, pos: 0, depth: 0 };
    p.skip_ws();
    if p.at_end() {
        return Err(TypeError { at: 0, message: "the type is empty".into() });
    }
    let ty = p.union()?;
    p.skip_ws();
    if !p.at_end() {
        return Err(p.error(format!("unexpected `{}`", p.chars[p.pos])));
    }
    Ok(ty)
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn error(&self, message: impl Into<String>) -> TypeError {
        TypeError { at: self.pos, message: message.into() }
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    /// Consume `s` (after whitespace) if it is next.
    fn eat(&mut self, s: &str) -> bool {
        self.skip_ws();
        let n = s.chars().count();
        if self.chars.len() >= self.pos + n && self.chars[self.pos..self.pos + n].iter().copied().eq(s.chars()) {
            self.pos += n;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, s: &str) -> Result<(), TypeError> {
        if self.eat(s) { Ok(()) } else { Err(self.error(format!("expected `{s}`"))) }
    }

    fn nest<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, TypeError>) -> Result<T, TypeError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error("the type nests too deeply"));
        }
        self.depth += 1;
        let out = f(self);
        self.depth -= 1;
        out
    }

    fn union(&mut self) -> Result<Ty, TypeError> {
        self.nest(|p| {
            p.eat("|"); // a leading `|` is allowed
            let mut members = vec![p.intersection()?];
            while p.eat("|") {
                members.push(p.intersection()?);
            }
            Ok(if members.len() == 1 { members.remove(0) } else { Ty::Union(members) })
        })
    }

    fn intersection(&mut self) -> Result<Ty, TypeError> {
        self.eat("&");
        let mut members = vec![self.postfix()?];
        while self.eat("&") {
            members.push(self.postfix()?);
        }
        Ok(if members.len() == 1 { members.remove(0) } else { Ty::Intersection(members) })
    }

    fn postfix(&mut self) -> Result<Ty, TypeError> {
        let mut ty = self.primary()?;
        loop {
            let save = self.pos;
            if self.eat("[") {
                if self.eat("]") {
                    ty = Ty::Array(Box::new(ty));
                } else {
                    self.union()?;
                    self.expect("]")?;
                    ty = Ty::Other; // indexed access, T['key']
                }
            } else {
                self.pos = save;
                return Ok(ty);
            }
        }
    }

    fn identifier(&mut self) -> Option<String> {
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            Some(c) if c.is_alphabetic() || c == '_' || c == '$' => self.pos += 1,
            _ => return None,
        }
        while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            self.pos += 1;
        }
        Some(self.chars[start..self.pos].iter().collect())
    }

    fn primary(&mut self) -> Result<Ty, TypeError> {
        self.skip_ws();
        let Some(c) = self.peek() else { return Err(self.error("expected a type")) };
        match c {
            '\'' | '"' => self.string(c).map(Ty::Str),
            '`' => self.template(),
            '-' | '0'..='9' => self.number(),
            '(' => self.parenthesized(),
            '[' => {
                self.pos += 1;
                let mut items = vec![];
                if !self.eat("]") {
                    loop {
                        self.eat("...");
                        items.push(self.union()?);
                        self.eat("?");
                        if self.eat("]") {
                            break;
                        }
                        self.expect(",")?;
                        if self.eat("]") {
                            break;
                        }
                    }
                }
                Ok(Ty::Tuple(items))
            }
            '{' => self.object(),
            _ => {
                let Some(word) = self.identifier() else { return Err(self.error(format!("unexpected `{c}`"))) };
                match word.as_str() {
                    "true" => return Ok(Ty::Bool(true)),
                    "false" => return Ok(Ty::Bool(false)),
                    "keyof" | "typeof" | "readonly" | "unique" | "infer" => {
                        self.postfix()?;
                        return Ok(Ty::Other);
                    }
                    _ => {}
                }
                if let Some(k) = KEYWORDS.iter().find(|k| **k == word) {
                    return Ok(Ty::Keyword(k));
                }
                let mut name = word;
                while self.eat(".") {
                    let part = self.identifier().ok_or_else(|| self.error("expected a name after `.`"))?;
                    name.push('.');
                    name.push_str(&part);
                }
                let mut args = vec![];
                if self.eat("<") {
                    loop {
                        args.push(self.union()?);
                        if self.eat(">") {
                            break;
                        }
                        self.expect(",")?;
                    }
                }
                Ok(Ty::Named(name, args))
            }
        }
    }

    fn string(&mut self, quote: char) -> Result<String, TypeError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        while let Some(c) = self.peek() {
            self.pos += 1;
            match c {
                '\\' => match self.peek() {
                    Some(n) => {
                        self.pos += 1;
                        out.push(match n {
                            'n' => '\n',
                            't' => '\t',
                            other => other,
                        });
                    }
                    None => break,
                },
                c if c == quote => return Ok(out),
                c => out.push(c),
            }
        }
        Err(TypeError { at: start, message: format!("string literal is not closed with {quote}") })
    }

    fn template(&mut self) -> Result<Ty, TypeError> {
        let start = self.pos;
        self.pos += 1;
        while let Some(c) = self.peek() {
            self.pos += 1;
            match c {
                '\\' => self.pos += 1,
                '`' => return Ok(Ty::Other),
                _ => {}
            }
        }
        Err(TypeError { at: start, message: "template literal is not closed with `".into() })
    }

    fn number(&mut self) -> Result<Ty, TypeError> {
        let start = self.pos;
        if self.peek() == Some('-') {
            self.pos += 1;
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit() || c == '.' || c == '_') {
            self.pos += 1;
        }
        let text: String = self.chars[start..self.pos].iter().filter(|c| **c != '_').collect();
        text.parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .map(Ty::Num)
            .ok_or(TypeError { at: start, message: format!("`{text}` is not a number") })
    }

    /// `( type )` or a function type `(a: T, b?: U) => R`.
    fn parenthesized(&mut self) -> Result<Ty, TypeError> {
        let start = self.pos;
        if let Ok(ty) = self.function() {
            return Ok(ty);
        }
        self.pos = start + 1;
        let inner = self.union()?;
        self.expect(")")?;
        Ok(inner)
    }

    fn function(&mut self) -> Result<Ty, TypeError> {
        self.expect("(")?;
        if !self.eat(")") {
            loop {
                self.eat("...");
                self.identifier().ok_or_else(|| self.error("expected a parameter name"))?;
                self.eat("?");
                if self.eat(":") {
                    self.union()?;
                }
                if self.eat(")") {
                    break;
                }
                self.expect(",")?;
            }
        }
        self.expect("=>")?;
        let result = self.union()?;
        Ok(Ty::Function(Box::new(result)))
    }

    fn object(&mut self) -> Result<Ty, TypeError> {
        self.expect("{")?;
        let mut members = vec![];
        loop {
            if self.eat("}") {
                return Ok(Ty::Object(members));
            }
            self.eat("readonly");
            let key = if self.eat("[") {
                self.identifier().ok_or_else(|| self.error("expected an index name"))?;
                self.expect(":")?;
                self.union()?;
                self.expect("]")?;
                "[index]".to_owned()
            } else {
                self.skip_ws();
                match self.peek() {
                    Some(q @ ('\'' | '"')) => self.string(q)?,
                    _ => self.identifier().ok_or_else(|| self.error("expected a member name or `}`"))?,
                }
            };
            self.eat("?");
            self.expect(":")?;
            members.push((key, self.union()?));
            if !self.eat(";") && !self.eat(",") {
                self.expect("}")?;
                return Ok(Ty::Object(members));
            }
        }
    }
}

impl Ty {
    /// Whether `value` — a prop value as a screen stores it, always text — is a value of this type.
    /// An empty value is "not set" (the default applies) and always fits.
    pub fn fits(&self, value: &str) -> Fit {
        if value.is_empty() {
            return Fit::Yes;
        }
        let v = value.trim();
        let yes = |b: bool| if b { Fit::Yes } else { Fit::No };
        match self {
            Ty::Keyword("string" | "any" | "unknown") => Fit::Yes,
            Ty::Keyword("number") => yes(v.parse::<f64>().is_ok_and(f64::is_finite)),
            Ty::Keyword("boolean") => yes(matches!(v, "true" | "false")),
            Ty::Keyword("null") => yes(v == "null"),
            Ty::Keyword("undefined" | "void") => yes(v == "undefined"),
            Ty::Keyword("never") => Fit::No,
            Ty::Keyword(_) => Fit::Unknown,
            Ty::Str(s) => yes(unquote(v) == s),
            Ty::Num(n) => yes(v.parse::<f64>().is_ok_and(|x| x == *n)),
            Ty::Bool(b) => yes(v == if *b { "true" } else { "false" }),
            Ty::Union(members) => {
                let mut out = Fit::No;
                for m in members {
                    match m.fits(value) {
                        Fit::Yes => return Fit::Yes,
                        Fit::Unknown => out = Fit::Unknown,
                        Fit::No => {}
                    }
                }
                out
            }
            _ => Fit::Unknown,
        }
    }
}

/// A value's text without one pair of surrounding quotes (`'md'`, `"md"` and `md` are all `md`).
fn unquote(v: &str) -> &str {
    for q in ['\'', '"'] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

/// The editor's helper for a type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Text,
    Number,
    YesNo,
    /// One of a list of text values (a union of string literals).
    OneOf(Vec<String>),
    /// Any other type, edited as written.
    Custom,
}

impl Kind {
    pub fn key(&self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Number => "number",
            Kind::YesNo => "yesno",
            Kind::OneOf(_) => "oneof",
            Kind::Custom => "custom",
        }
    }
}

/// Which helper shows a type.
pub fn classify(text: &str) -> Kind {
    match parse(text) {
        Ok(Ty::Keyword("string")) => Kind::Text,
        Ok(Ty::Keyword("number")) => Kind::Number,
        Ok(Ty::Keyword("boolean")) => Kind::YesNo,
        Ok(Ty::Str(s)) => Kind::OneOf(vec![s]),
        Ok(Ty::Union(members)) if members.iter().all(|m| matches!(m, Ty::Str(_))) => Kind::OneOf(
            members
                .into_iter()
                .filter_map(|m| match m {
                    Ty::Str(s) => Some(s),
                    _ => None,
                })
                .collect(),
        ),
        _ => Kind::Custom,
    }
}

/// `'sm' | 'md'` for the options `sm`, `md`.
pub fn options_type(options: &[String]) -> String {
    options
        .iter()
        .map(|o| format!("'{}'", o.replace('\\', "\\\\").replace('\'', "\\'")))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The options typed in the editor's "one of" field: comma-separated, trimmed, empty ones dropped.
pub fn split_options(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_component_props_use() {
        for ok in [
            "string",
            "'sm' | 'md'",
            "| 'a' | \"b\"",
            "React.ReactNode",
            "React.MouseEvent<HTMLButtonElement>",
            "Array<string | number>",
            "string[]",
            "{ id: number; label?: string }[]",
            "(value: string, index?: number) => void",
            "() => Promise<void>",
            "[number, number]",
            "Record<string, unknown>",
            "keyof typeof sizes",
            "T['size']",
            "`${number}px`",
            "-1 | 0 | 1.5",
            "A & B",
            "(string | number)[]",
            "{ [key: string]: string }",
        ] {
            assert!(parse(ok).is_ok(), "{ok}: {:?}", parse(ok));
        }
        for (bad, at) in [
            ("", 0),
            ("'sm' |", 6),
            ("'sm", 0),
            ("string string", 7),
            ("Array<string", 12),
            ("{ a string }", 4),
            ("|", 1),
            ("()", 1),
            ("a..b", 2),
        ] {
            let err = parse(bad).expect_err(bad);
            assert_eq!(err.at, at, "{bad}: {err}");
        }
        let deep = "(".repeat(100) + "string" + &")".repeat(100);
        assert!(parse(&deep).unwrap_err().message.contains("deeply"));
        assert!(parse(&"a|".repeat(2_000)).is_err());
    }

    #[test]
    fn judges_stored_values() {
        let t = |s: &str| parse(s).unwrap();
        assert_eq!(t("'sm' | 'md'").fits("md"), Fit::Yes);
        assert_eq!(t("'sm' | 'md'").fits("'md'"), Fit::Yes);
        assert_eq!(t("'sm' | 'md'").fits("lg"), Fit::No);
        assert_eq!(t("number").fits("12.5"), Fit::Yes);
        assert_eq!(t("number").fits("twelve"), Fit::No);
        assert_eq!(t("number").fits(""), Fit::Yes, "unset");
        assert_eq!(t("boolean").fits("yes"), Fit::No);
        assert_eq!(t("string").fits("anything"), Fit::Yes);
        assert_eq!(t("ReactNode").fits("x"), Fit::Unknown);
        assert_eq!(t("'a' | Icon").fits("b"), Fit::Unknown);
        assert_eq!(t("1 | 2").fits("2"), Fit::Yes);
    }

    #[test]
    fn helpers_classify_and_write_back() {
        assert_eq!(classify("string"), Kind::Text);
        assert_eq!(classify(" boolean "), Kind::YesNo);
        assert_eq!(classify("'sm' | \"md\""), Kind::OneOf(vec!["sm".into(), "md".into()]));
        assert_eq!(classify("'sm' | 1"), Kind::Custom);
        assert_eq!(classify("ReactNode"), Kind::Custom);
        let options = split_options(" sm, it's ,, a\\b ");
        let written = options_type(&options);
        assert_eq!(written, r"'sm' | 'it\'s' | 'a\\b'");
        assert_eq!(classify(&written), Kind::OneOf(options));
    }
}
