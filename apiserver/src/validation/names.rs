//! Name syntax rules of Kubernetes (`k8s.io/apimachinery/pkg/util/validation`
//! semantics): each check returns the list of messages Kubernetes gives.

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const QUALIFIED_NAME_FULL_MSG: &str = "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const CONFIG_KEY_MSG: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";

pub(crate) const DNS1123_LABEL_MAX: usize = 63;
pub(crate) const DNS1123_SUBDOMAIN_MAX: usize = 253;
const QUALIFIED_NAME_MAX: usize = 63;
const LABEL_VALUE_MAX: usize = 63;

fn max_len(max: usize) -> String {
    format!("must be no more than {max} characters")
}

fn lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn label_shape(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&f), Some(&l)) => {
            lower_alnum(f) && lower_alnum(l) && b.iter().all(|&c| lower_alnum(c) || c == b'-')
        }
        _ => false,
    }
}

/// DNS-1123 label (namespaces, container and volume names).
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX {
        errs.push(max_len(DNS1123_LABEL_MAX));
    }
    if !label_shape(value) {
        errs.push(DNS1123_LABEL_MSG.to_owned());
    }
    errs
}

/// DNS-1123 subdomain (most object names).
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(max_len(DNS1123_SUBDOMAIN_MAX));
    }
    if !value.split('.').all(label_shape) {
        errs.push(DNS1123_SUBDOMAIN_MSG.to_owned());
    }
    errs
}

/// DNS-1035 label (Service names): starts with a letter.
pub fn is_dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX {
        errs.push(max_len(DNS1123_LABEL_MAX));
    }
    let starts_alpha = value.as_bytes().first().is_some_and(u8::is_ascii_lowercase);
    if !label_shape(value) || !starts_alpha {
        errs.push(DNS1035_LABEL_MSG.to_owned());
    }
    errs
}

fn name_part_shape(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => {
            f.is_ascii_alphanumeric()
                && l.is_ascii_alphanumeric()
                && b.iter()
                    .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// Qualified name (label and annotation keys, finalizers): an optional
/// DNS-subdomain prefix and `/`, then a name part of at most 63 characters.
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_owned());
            } else {
                for msg in is_dns1123_subdomain(prefix) {
                    errs.push(format!("prefix part {msg}"));
                }
            }
            *name
        }
        _ => {
            errs.push(QUALIFIED_NAME_FULL_MSG.to_owned());
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_owned());
    } else if name.len() > QUALIFIED_NAME_MAX {
        errs.push(format!(
            "name part must be no more than {QUALIFIED_NAME_MAX} characters"
        ));
    }
    if !name.is_empty() && !name_part_shape(name) {
        errs.push(QUALIFIED_NAME_MSG.to_owned());
    }
    errs
}

/// Label value: empty, or at most 63 characters of the name-part shape.
pub fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_VALUE_MAX {
        errs.push(max_len(LABEL_VALUE_MAX));
    }
    if !value.is_empty() && !name_part_shape(value) {
        errs.push(LABEL_VALUE_MSG.to_owned());
    }
    errs
}

/// ConfigMap and Secret keys.
pub(crate) fn is_config_key(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(max_len(DNS1123_SUBDOMAIN_MAX));
    }
    if value.is_empty()
        || !value
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    {
        errs.push(CONFIG_KEY_MSG.to_owned());
    }
    if value == "." {
        errs.push("must not be '.'".to_owned());
    } else if value == ".." {
        errs.push("must not be '..'".to_owned());
    } else if value.starts_with("..") {
        errs.push("must not start with '..'".to_owned());
    }
    errs
}

/// Path segment names (RBAC objects, CSRs): not `.` or `..`, no `/` or `%`.
pub(crate) fn is_path_segment_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value == "." || value == ".." {
        errs.push(format!("may not be '{value}'"));
    }
    for c in ["/", "%"] {
        if value.contains(c) {
            errs.push(format!("may not contain '{c}'"));
        }
    }
    errs
}

/// IANA service names (container port names, named target ports).
pub(crate) fn is_iana_svc_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 15 {
        errs.push("must be no more than 15 characters".to_owned());
    }
    if !value
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        errs.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_owned(),
        );
    }
    if value.contains("--") {
        errs.push("must not contain consecutive hyphens".to_owned());
    }
    if !value.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_owned());
    }
    if value.starts_with('-') || value.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_owned());
    }
    errs
}

/// Environment variable names (the relaxed rule, on by default in 1.33):
/// printable ASCII other than `=`.
pub(crate) fn is_env_var_name(value: &str) -> Vec<String> {
    if value.is_empty()
        || !value
            .bytes()
            .all(|c| (b' '..=b'~').contains(&c) && c != b'=')
    {
        vec![
            "a valid environment variable name must consist only of printable ASCII characters other than '='"
                .to_owned(),
        ]
    } else {
        Vec::new()
    }
}

/// Port numbers 1–65535.
pub(crate) fn is_valid_port(port: i64) -> Vec<String> {
    if (1..=65535).contains(&port) {
        Vec::new()
    } else {
        vec!["must be between 1 and 65535, inclusive".to_owned()]
    }
}

/// The message for an unparsable IP address.
pub(crate) const IP_MSG: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";

/// Parses an IP address as Kubernetes does: no leading zeros in IPv4 octets.
pub(crate) fn parse_ip(value: &str) -> Option<std::net::IpAddr> {
    value.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        assert!(is_dns1123_label("my-name").is_empty());
        assert!(is_dns1123_label("123-abc").is_empty());
        assert!(!is_dns1123_label("My-name").is_empty());
        assert!(!is_dns1123_label("-a").is_empty());
        assert!(!is_dns1123_label("").is_empty());
        assert!(!is_dns1123_label(&"a".repeat(64)).is_empty());
        assert!(is_dns1123_subdomain("example.com").is_empty());
        assert!(!is_dns1123_subdomain("example..com").is_empty());
        assert!(!is_dns1123_subdomain("a_b").is_empty());
        assert!(is_dns1035_label("web").is_empty());
        assert!(!is_dns1035_label("1web").is_empty());
    }

    #[test]
    fn qualified_names_and_values() {
        assert!(is_qualified_name("app").is_empty());
        assert!(is_qualified_name("app.kubernetes.io/name").is_empty());
        assert!(is_qualified_name("My_Name.1").is_empty());
        assert_eq!(
            is_qualified_name("a/b/c"),
            vec![QUALIFIED_NAME_FULL_MSG.to_owned()]
        );
        assert_eq!(
            is_qualified_name("example.com/"),
            vec!["name part must be non-empty"]
        );
        assert!(!is_qualified_name("Example.com/a").is_empty());
        assert!(!is_qualified_name("bad key").is_empty());
        assert!(is_valid_label_value("").is_empty());
        assert!(is_valid_label_value("v1.2_3-x").is_empty());
        assert_eq!(
            is_valid_label_value(&"a".repeat(64)),
            vec!["must be no more than 63 characters"]
        );
        assert!(!is_valid_label_value("-x").is_empty());
    }

    #[test]
    fn other_names() {
        assert!(is_config_key("key.name").is_empty());
        assert!(is_config_key("KEY_NAME").is_empty());
        assert!(!is_config_key("a b").is_empty());
        assert!(!is_config_key("..a").is_empty());
        assert!(is_iana_svc_name("http").is_empty());
        assert!(!is_iana_svc_name("80").is_empty());
        assert!(!is_iana_svc_name("a--b").is_empty());
        assert!(is_env_var_name("MY_VAR").is_empty());
        assert!(is_env_var_name("1.weird-name").is_empty());
        assert!(!is_env_var_name("A=B").is_empty());
        assert!(is_path_segment_name("system:node").is_empty());
        assert!(!is_path_segment_name("a/b").is_empty());
        assert!(is_valid_port(1).is_empty() && is_valid_port(65535).is_empty());
        assert!(!is_valid_port(0).is_empty() && !is_valid_port(70000).is_empty());
    }
}
