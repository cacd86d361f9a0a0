//! Coldplug without udev: load the drivers of the devices present at boot.
//!
//! Every device in `/sys/devices` announces what driver it wants in its
//! `modalias` file (`virtio:d00000001v00001AF4` for a virtio NIC); the image
//! builder writes `modules.alias` (`alias <glob> <module>`, depmod's
//! format) for the modules the image ships. A module is loaded when one of
//! its patterns matches one of the present devices — what
//! `udevadm trigger` + `modprobe` do on a general-purpose system, so the
//! same image finds its NIC and disk drivers on any machine.

use std::path::Path;

/// Every `modalias` value under `sys_devices`, symlinks not followed.
pub fn device_modaliases(sys_devices: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![sys_devices.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file()
                && entry.file_name() == "modalias"
                && let Ok(text) = std::fs::read_to_string(entry.path())
            {
                let text = text.trim();
                if !text.is_empty() && !found.iter().any(|f: &String| f == text) {
                    found.push(text.to_owned());
                }
            }
        }
    }
    found.sort();
    found
}

/// `(pattern, module)` pairs from `modules.alias` text.
pub fn parse_aliases(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("alias"))
                .then(|| Some((words.next()?.to_owned(), words.next()?.to_owned())))
                .flatten()
        })
        .collect()
}

/// fnmatch(3) without flags: `*`, `?` and `[...]` classes (with ranges and
/// `!`/`^` negation), which is what module aliases use.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    // Iterative matching with one backtrack point per `*`.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                '*' => {
                    star = Some((p, t));
                    p += 1;
                    continue;
                }
                '?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = class_match(&pattern, p, text[t]) {
                        if matched {
                            p = next;
                            t += 1;
                            continue;
                        }
                    } else if text[t] == '[' {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
                c if c == text[t] => {
                    p += 1;
                    t += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((star_p, star_t)) => {
                p = star_p + 1;
                t = star_t + 1;
                star = Some((star_p, star_t + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// Whether `c` is in the class starting at `pattern[start] == '['`, and the
/// index after the class; None if the class is not closed.
fn class_match(pattern: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negated = matches!(pattern.get(i), Some('!') | Some('^'));
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < pattern.len() {
        if pattern[i] == ']' && !first {
            return Some((matched != negated, i + 1));
        }
        first = false;
        if pattern.get(i + 1) == Some(&'-') && pattern.get(i + 2).is_some_and(|e| *e != ']') {
            if (pattern[i]..=pattern[i + 2]).contains(&c) {
                matched = true;
            }
            i += 3;
        } else {
            if pattern[i] == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

/// Modules whose patterns match any of `modaliases`, each once, in alias
/// file order.
pub fn modules_for(modaliases: &[String], aliases: &[(String, String)]) -> Vec<String> {
    let mut modules: Vec<String> = Vec::new();
    for (pattern, module) in aliases {
        if !modules.contains(module) && modaliases.iter().any(|m| glob_match(pattern, m)) {
            modules.push(module.clone());
        }
    }
    modules
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_fnmatch() {
        assert!(glob_match(
            "virtio:d00000001v*",
            "virtio:d00000001v00001AF4"
        ));
        assert!(!glob_match(
            "virtio:d00000001v*",
            "virtio:d00000002v00001AF4"
        ));
        assert!(glob_match(
            "pci:v00008086d0000100Esv*sd*bc*sc*i*",
            "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00"
        ));
        assert!(glob_match("usb:v05ACp8403d0[0-3]*", "usb:v05ACp8403d02xx"));
        assert!(!glob_match("usb:v05ACp8403d0[0-3]*", "usb:v05ACp8403d05xx"));
        assert!(glob_match("a[!x]c", "abc") && !glob_match("a[!b]c", "abc"));
        assert!(glob_match("a?c*", "abc") && glob_match("*", "") && !glob_match("a", ""));
        assert!(glob_match("*d*e*", "xxdyyezz") && !glob_match("*d*e", "xxdyyezz"));
    }

    #[test]
    fn devices_select_their_drivers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nic = dir.path().join("pci0000:00/0000:00:03.0/virtio0");
        std::fs::create_dir_all(&nic).expect("mkdir");
        std::fs::write(nic.join("modalias"), "virtio:d00000001v00001AF4\n").expect("write");
        std::fs::write(
            nic.parent().expect("parent").join("modalias"),
            "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00\n",
        )
        .expect("write");
        std::os::unix::fs::symlink(dir.path(), nic.join("loop")).expect("symlink");
        let found = device_modaliases(dir.path());
        assert_eq!(found.len(), 2, "{found:?}");
        let aliases = parse_aliases(
            "# Aliases\nalias virtio:d00000001v* virtio_net\nalias virtio:d00000002v* virtio_blk\nalias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci\nalias pci:v00001AF4d00001000* virtio_pci\n",
        );
        assert_eq!(modules_for(&found, &aliases), ["virtio_net", "virtio_pci"]);
    }
}
