//! Label and field selectors: Kubernetes syntax, parse errors as 400
//! Status, matching against JSON objects.

use std::fmt;

use serde_json::Value;

use super::status::ApiError;

/// The operator of one label requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelOperator {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// `key op values`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRequirement {
    pub key: String,
    pub operator: LabelOperator,
    pub values: Vec<String>,
}

impl LabelRequirement {
    fn matches(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        let value = labels
            .and_then(|l| l.get(&self.key))
            .and_then(Value::as_str);
        match self.operator {
            LabelOperator::Exists => value.is_some(),
            LabelOperator::DoesNotExist => value.is_none(),
            LabelOperator::Equals | LabelOperator::In => {
                value.is_some_and(|v| self.values.iter().any(|w| w == v))
            }
            LabelOperator::NotEquals | LabelOperator::NotIn => {
                value.is_none_or(|v| self.values.iter().all(|w| w != v))
            }
            LabelOperator::GreaterThan | LabelOperator::LessThan => {
                let (Some(have), Some(want)) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values.first().and_then(|v| v.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.operator == LabelOperator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for LabelRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        let first = self.values.first().map(String::as_str).unwrap_or("");
        match self.operator {
            LabelOperator::Exists => write!(f, "{key}"),
            LabelOperator::DoesNotExist => write!(f, "!{key}"),
            LabelOperator::Equals => write!(f, "{key}={first}"),
            LabelOperator::NotEquals => write!(f, "{key}!={first}"),
            LabelOperator::GreaterThan => write!(f, "{key}>{first}"),
            LabelOperator::LessThan => write!(f, "{key}<{first}"),
            LabelOperator::In => write!(f, "{key} in ({})", self.values.join(",")),
            LabelOperator::NotIn => write!(f, "{key} notin ({})", self.values.join(",")),
        }
    }
}

/// A parsed `labelSelector`; every requirement must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    pub requirements: Vec<LabelRequirement>,
}

impl LabelSelector {
    pub fn parse(input: &str) -> Result<Self, ApiError> {
        LabelParser::new(input).parse().map_err(|why| {
            ApiError::bad_request(format!("unable to parse requirement: {why}")).with_cause(
                "FieldValueInvalid",
                &why,
                "labelSelector",
            )
        })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether `object.metadata.labels` satisfies the selector.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = object
            .pointer("/metadata/labels")
            .and_then(Value::as_object);
        self.matches_labels(labels)
    }

    pub fn matches_labels(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// The selector of a `matchLabels`/`matchExpressions` object (a
    /// Deployment's `spec.selector`).
    pub fn from_label_selector_object(selector: &Value) -> Result<Self, String> {
        let mut requirements = Vec::new();
        if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
            for (key, value) in labels {
                requirements.push(LabelRequirement {
                    key: key.clone(),
                    operator: LabelOperator::Equals,
                    values: vec![value.as_str().unwrap_or_default().to_owned()],
                });
            }
        }
        if let Some(exprs) = selector.get("matchExpressions").and_then(Value::as_array) {
            for expr in exprs {
                let key = expr.get("key").and_then(Value::as_str).unwrap_or_default();
                let values: Vec<String> = expr
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|v| {
                        v.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                let operator = match expr.get("operator").and_then(Value::as_str) {
                    Some("In") => LabelOperator::In,
                    Some("NotIn") => LabelOperator::NotIn,
                    Some("Exists") => LabelOperator::Exists,
                    Some("DoesNotExist") => LabelOperator::DoesNotExist,
                    other => {
                        return Err(format!("{other:?} is not a valid label selector operator"));
                    }
                };
                requirements.push(LabelRequirement {
                    key: key.to_owned(),
                    operator,
                    values,
                });
            }
        }
        Ok(Self { requirements })
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.requirements.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

struct LabelParser<'a> {
    input: &'a str,
    pos: usize,
}

impl<'a> LabelParser<'a> {
    fn new(input: &'a str) -> Self {
        Self { input, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.input[self.pos..]
    }

    fn skip_spaces(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_spaces();
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    /// An identifier: everything up to a space or an operator character.
    fn word(&mut self) -> &'a str {
        self.skip_spaces();
        let rest = self.rest();
        let end = rest
            .find(|c: char| c.is_whitespace() || "=!,()<>".contains(c))
            .unwrap_or(rest.len());
        self.pos += end;
        &rest[..end]
    }

    fn parse(mut self) -> Result<LabelSelector, String> {
        let mut requirements = Vec::new();
        self.skip_spaces();
        if self.rest().is_empty() {
            return Ok(LabelSelector::default());
        }
        loop {
            requirements.push(self.requirement()?);
            self.skip_spaces();
            if self.rest().is_empty() {
                break;
            }
            if !self.eat(",") {
                return Err(format!(
                    "found '{}', expected: ',' or 'end of string'",
                    self.rest().chars().next().unwrap_or(' ')
                ));
            }
        }
        Ok(LabelSelector { requirements })
    }

    fn requirement(&mut self) -> Result<LabelRequirement, String> {
        let negated = self.eat("!");
        let key = self.word();
        if key.is_empty() {
            return Err(format!(
                "found '{}', expected: identifier",
                self.peek_token()
            ));
        }
        validate_key(key)?;
        let key = key.to_owned();
        if negated {
            return Ok(LabelRequirement {
                key,
                operator: LabelOperator::DoesNotExist,
                values: Vec::new(),
            });
        }
        self.skip_spaces();
        if self.rest().is_empty() || self.rest().starts_with(',') {
            return Ok(LabelRequirement {
                key,
                operator: LabelOperator::Exists,
                values: Vec::new(),
            });
        }
        let operator = if self.eat("==") || self.eat("=") {
            LabelOperator::Equals
        } else if self.eat("!=") {
            LabelOperator::NotEquals
        } else if self.eat(">") {
            LabelOperator::GreaterThan
        } else if self.eat("<") {
            LabelOperator::LessThan
        } else {
            match self.word() {
                "in" => LabelOperator::In,
                "notin" => LabelOperator::NotIn,
                other => {
                    return Err(format!(
                        "found '{other}', expected: in, notin, =, ==, !=, gt, lt"
                    ));
                }
            }
        };
        let values = match operator {
            LabelOperator::In | LabelOperator::NotIn => self.value_set()?,
            _ => {
                let value = self.word();
                if matches!(
                    operator,
                    LabelOperator::GreaterThan | LabelOperator::LessThan
                ) && value.parse::<i64>().is_err()
                {
                    return Err(format!(
                        "for 'Gt', 'Lt' operators, the value must be an integer, not '{value}'"
                    ));
                }
                validate_value(value)?;
                vec![value.to_owned()]
            }
        };
        Ok(LabelRequirement {
            key,
            operator,
            values,
        })
    }

    fn value_set(&mut self) -> Result<Vec<String>, String> {
        if !self.eat("(") {
            return Err(format!("found '{}', expected: '('", self.peek_token()));
        }
        let mut values = Vec::new();
        loop {
            let value = self.word();
            validate_value(value)?;
            values.push(value.to_owned());
            if self.eat(")") {
                break;
            }
            if !self.eat(",") {
                return Err(format!(
                    "found '{}', expected: ',', ')' or identifier",
                    self.peek_token()
                ));
            }
        }
        if values.len() == 1 && values[0].is_empty() {
            return Err("for 'in', 'notin' operators, values set can't be empty".into());
        }
        Ok(values)
    }

    fn peek_token(&self) -> String {
        match self.rest().chars().next() {
            Some(c) => c.to_string(),
            None => "end of string".into(),
        }
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

fn validate_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && (prefix.is_empty()
            || prefix.len() > 253
            || !prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'))
    {
        return Err(format!(
            "invalid label key \"{key}\": prefix part must be a DNS-1123 subdomain"
        ));
    }
    let alnum_ends = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if name.is_empty() || name.len() > 63 || !alnum_ends || !name.chars().all(is_name_char) {
        return Err(format!(
            "invalid label key \"{key}\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        ));
    }
    Ok(())
}

fn validate_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    let alnum_ends = value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value.ends_with(|c: char| c.is_ascii_alphanumeric());
    if value.len() > 63 || !alnum_ends || !value.chars().all(is_name_char) {
        return Err(format!(
            "invalid label value: \"{value}\": at key: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        ));
    }
    Ok(())
}

/// One `field=value` or `field!=value` term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    /// False for `!=`.
    pub equals: bool,
    pub value: String,
}

/// A parsed `fieldSelector`; every term must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    pub requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    pub fn parse(input: &str) -> Result<Self, ApiError> {
        let mut requirements = Vec::new();
        for term in split_unescaped(input, ',') {
            if term.trim().is_empty() {
                continue;
            }
            let (field, equals, value) = split_field_term(&term).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "invalid selector: '{input}'; can't understand '{term}'"
                ))
                .with_cause(
                    "FieldValueInvalid",
                    "invalid field selector term",
                    "fieldSelector",
                )
            })?;
            let field = field.trim();
            if field.is_empty() {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{input}'; field name is empty in '{term}'"
                )));
            }
            requirements.push(FieldRequirement {
                field: field.to_owned(),
                equals,
                value: unescape(&value),
            });
        }
        Ok(Self { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// `Some(value)` if the selector pins `field` to one value
    /// (`metadata.name=web`).
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.equals && r.field == field)
            .map(|r| r.value.as_str())
    }

    /// Rejects fields outside `supported` with the error kube-apiserver
    /// gives (`field label not supported: spec.foo`).
    pub fn check_supported(&self, supported: &[&str]) -> Result<(), ApiError> {
        match self
            .requirements
            .iter()
            .find(|r| !supported.contains(&r.field.as_str()))
        {
            Some(r) => Err(ApiError::bad_request(format!(
                "field label not supported: {}",
                r.field
            ))),
            None => Ok(()),
        }
    }

    /// Whether the object's fields satisfy every term; a missing field
    /// reads as the empty string (so `spec.nodeName=` selects unscheduled pods).
    pub fn matches(&self, object: &Value) -> bool {
        self.requirements.iter().all(|r| {
            let actual = field_value(object, &r.field);
            (actual == r.value) == r.equals
        })
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(|r| {
                format!(
                    "{}{}{}",
                    r.field,
                    if r.equals { "=" } else { "!=" },
                    r.value
                )
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// The string value of a dotted field path (`metadata.name`, `status.phase`).
pub fn field_value(object: &Value, path: &str) -> String {
    let mut current = object;
    for part in path.split('.') {
        match current.get(part) {
            Some(next) => current = next,
            None => return String::new(),
        }
    }
    match current {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

fn split_unescaped(input: &str, separator: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut escaped = false;
    for c in input.chars() {
        if escaped {
            current.push('\\');
            current.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == separator {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    if escaped {
        current.push('\\');
    }
    parts.push(current);
    parts
}

/// Finds the first unescaped `!=`, `==` or `=`.
fn split_field_term(term: &str) -> Option<(String, bool, String)> {
    let chars: Vec<char> = term.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '!' if chars.get(i + 1) == Some(&'=') => {
                return Some((
                    chars[..i].iter().collect(),
                    false,
                    chars[i + 2..].iter().collect(),
                ));
            }
            '=' => {
                let skip = if chars.get(i + 1) == Some(&'=') { 2 } else { 1 };
                return Some((
                    chars[..i].iter().collect(),
                    true,
                    chars[i + skip..].iter().collect(),
                ));
            }
            _ => i += 1,
        }
    }
    None
}

fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(labels: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default", "labels": labels},
               "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})
    }

    #[test]
    fn label_syntax() {
        let sel =
            LabelSelector::parse("a=b, c==d,e!=f,g in (x, y),h notin (z),i,!j,k>3").expect("parse");
        let ops: Vec<LabelOperator> = sel.requirements.iter().map(|r| r.operator).collect();
        assert_eq!(
            ops,
            vec![
                LabelOperator::Equals,
                LabelOperator::Equals,
                LabelOperator::NotEquals,
                LabelOperator::In,
                LabelOperator::NotIn,
                LabelOperator::Exists,
                LabelOperator::DoesNotExist,
                LabelOperator::GreaterThan
            ]
        );
        assert_eq!(sel.requirements[3].values, vec!["x", "y"]);
        assert_eq!(
            sel.to_string(),
            "a=b,c=d,e!=f,g in (x,y),h notin (z),i,!j,k>3"
        );
        assert!(LabelSelector::parse("").expect("empty").is_empty());
        assert!(LabelSelector::parse("app.kubernetes.io/name=web").is_ok());
    }

    #[test]
    fn label_errors_name_the_problem() {
        for (bad, needle) in [
            ("a in (x", "expected"),
            ("a in x", "'('"),
            ("=b", "identifier"),
            ("a b", "expected: in, notin"),
            ("a=b c", "expected: ','"),
            ("-bad=x", "invalid label key"),
            ("a=-x", "invalid label value"),
            ("a>x", "integer"),
        ] {
            let err = LabelSelector::parse(bad).expect_err(bad);
            assert_eq!(err.code, 400);
            assert!(err.message.contains(needle), "{bad}: {}", err.message);
        }
    }

    #[test]
    fn label_matching() {
        let web = pod(json!({"app": "web", "tier": "front", "n": "5"}));
        let none = json!({"metadata": {"name": "x"}});
        for (sel, on_web, on_none) in [
            ("app=web", true, false),
            ("app!=web", false, true),
            ("app in (db,web)", true, false),
            ("app notin (web)", false, true),
            ("tier", true, false),
            ("!tier", false, true),
            ("app=web,tier=back", false, false),
            ("n>4", true, false),
            ("n<4", false, false),
            ("", true, true),
        ] {
            let parsed = LabelSelector::parse(sel).expect(sel);
            assert_eq!(parsed.matches(&web), on_web, "{sel} on web");
            assert_eq!(parsed.matches(&none), on_none, "{sel} on none");
        }
    }

    #[test]
    fn selector_object() {
        let sel = LabelSelector::from_label_selector_object(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]
        }))
        .expect("convert");
        assert_eq!(sel.to_string(), "app=web,tier in (front)");
    }

    #[test]
    fn field_selectors() {
        let web = pod(json!({}));
        for (sel, expected) in [
            ("metadata.name=web", true),
            ("metadata.name==web", true),
            ("metadata.name=db", false),
            ("metadata.namespace!=kube-system", true),
            ("spec.nodeName=", false),
            ("spec.nodeName=n1,status.phase=Running", true),
            ("status.phase!=Running", false),
            ("spec.missing=", true),
        ] {
            let parsed = FieldSelector::parse(sel).expect(sel);
            assert_eq!(parsed.matches(&web), expected, "{sel}");
        }
        let sel = FieldSelector::parse("metadata.name=a\\,b").expect("escaped");
        assert_eq!(sel.requires_exact_match("metadata.name"), Some("a,b"));
        let err = FieldSelector::parse("metadata.name").expect_err("no operator");
        assert!(err.message.contains("can't understand"), "{}", err.message);
        let err = FieldSelector::parse("spec.foo=x")
            .expect("parse")
            .check_supported(&["metadata.name"])
            .expect_err("unsupported");
        assert_eq!(err.message, "field label not supported: spec.foo");
    }
}
