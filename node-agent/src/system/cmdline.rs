//! The kernel command line as node-agent reads it: `key=value` words, a
//! later word overriding an earlier one (as the kernel does), and the
//! `${mac}`, `${hostname}`, `${uuid}` variables Talos users know from
//! `talos.config=` URLs.

/// Parsed `/proc/cmdline`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelCmdline {
    words: Vec<(String, Option<String>)>,
}

impl KernelCmdline {
    pub fn parse(text: &str) -> Self {
        let mut words = Vec::new();
        let mut chars = text.trim().chars().peekable();
        while chars.peek().is_some() {
            let mut word = String::new();
            let mut quoted = false;
            while let Some(&c) = chars.peek() {
                chars.next();
                match c {
                    '"' => quoted = !quoted,
                    c if c.is_whitespace() && !quoted => break,
                    c => word.push(c),
                }
            }
            if word.is_empty() {
                continue;
            }
            match word.split_once('=') {
                Some((key, value)) => words.push((key.to_owned(), Some(value.to_owned()))),
                None => words.push((word, None)),
            }
        }
        Self { words }
    }

    /// The value of the last `key=value` word for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.words
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }
}

/// Values for `${...}` in a config URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlVariables {
    /// `aa:bb:cc:dd:ee:ff` of the interface the node fetches through.
    pub mac: Option<String>,
    pub hostname: Option<String>,
    /// SMBIOS system UUID (`/sys/class/dmi/id/product_uuid`).
    pub uuid: Option<String>,
}

/// Replaces `${mac}`, `${hostname}` and `${uuid}`; a variable with no
/// value is an error naming it, so a node never fetches a wrong URL.
pub fn substitute(url: &str, vars: &UrlVariables) -> Result<String, String> {
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("{url:?}: unclosed \"${{\""));
        };
        let name = &after[..end];
        let value = match name {
            "mac" => vars.mac.as_deref(),
            "hostname" => vars.hostname.as_deref(),
            "uuid" => vars.uuid.as_deref(),
            other => {
                return Err(format!(
                    "{url:?}: unknown variable ${{{other}}}; known: ${{mac}}, ${{hostname}}, ${{uuid}}"
                ));
            }
        };
        let value =
            value.ok_or_else(|| format!("{url:?}: ${{{name}}} has no value on this machine"))?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_word_wins_and_quotes_group() {
        let cmdline = KernelCmdline::parse(
            "console=ttyS0 cairn.config=http://a/1 quiet cairn.config=\"http://b/${mac}\" ip=dhcp\n",
        );
        assert_eq!(cmdline.get("cairn.config"), Some("http://b/${mac}"));
        assert_eq!(cmdline.get("ip"), Some("dhcp"));
        assert_eq!(cmdline.get("quiet"), None);
        assert_eq!(cmdline.get("missing"), None);
    }

    #[test]
    fn variables_are_substituted_or_refused() {
        let vars = UrlVariables {
            mac: Some("52:54:00:12:34:56".into()),
            hostname: None,
            uuid: Some("u-1".into()),
        };
        assert_eq!(
            substitute("http://10.5.0.1:8080/config/${mac}?u=${uuid}", &vars).as_deref(),
            Ok("http://10.5.0.1:8080/config/52:54:00:12:34:56?u=u-1")
        );
        assert!(
            substitute("http://x/${hostname}", &vars)
                .expect_err("refused")
                .contains("${hostname} has no value")
        );
        assert!(
            substitute("http://x/${serial}", &vars)
                .expect_err("refused")
                .contains("unknown variable ${serial}")
        );
        assert!(
            substitute("http://x/${mac", &vars)
                .expect_err("refused")
                .contains("unclosed")
        );
    }
}
