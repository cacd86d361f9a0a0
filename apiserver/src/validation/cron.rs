//! Cron schedule syntax as the CronJob controller parses it: five fields
//! (minute, hour, day of month, month, day of week) of `*`, `?`, numbers,
//! names (`jan`, `mon`), ranges, lists and steps; or a descriptor
//! (`@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`,
//! `@hourly`, `@every <duration>`).

const MONTHS: &[&str] = &[
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// The value of `names[0]`.
    name_base: u32,
}

const FIELDS: [Bounds; 5] = [
    Bounds {
        min: 0,
        max: 59,
        names: &[],
        name_base: 0,
    },
    Bounds {
        min: 0,
        max: 23,
        names: &[],
        name_base: 0,
    },
    Bounds {
        min: 1,
        max: 31,
        names: &[],
        name_base: 0,
    },
    Bounds {
        min: 1,
        max: 12,
        names: MONTHS,
        name_base: 1,
    },
    Bounds {
        min: 0,
        max: 6,
        names: DAYS,
        name_base: 0,
    },
];

/// Checks a schedule; the error is the parser's message.
pub fn validate_cron_schedule(schedule: &str) -> Result<(), String> {
    let s = schedule.trim();
    if s.is_empty() {
        return Err("empty spec string".to_owned());
    }
    if let Some(rest) = s.strip_prefix('@') {
        return match rest {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => {
                Ok(())
            }
            _ => match rest.strip_prefix("every ") {
                Some(duration) if parse_duration(duration.trim()) => Ok(()),
                Some(duration) => Err(format!(
                    "failed to parse duration {s}: time: invalid duration {:?}",
                    duration.trim()
                )),
                None => Err(format!("unrecognized descriptor: {s}")),
            },
        };
    }
    let fields: Vec<&str> = s.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: {s}",
            fields.len()
        ));
    }
    for (text, bounds) in fields.iter().zip(FIELDS.iter()) {
        for part in text.split(',') {
            parse_range(part, bounds)?;
        }
    }
    Ok(())
}

fn parse_value(text: &str, b: &Bounds) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(i) = b.names.iter().position(|n| *n == lower) {
        return Ok(b.name_base + u32::try_from(i).unwrap_or(0));
    }
    text.parse::<u32>().map_err(|_| {
        format!("failed to parse int from {text}: strconv.Atoi: parsing {text:?}: invalid syntax")
    })
}

fn parse_range(expr: &str, b: &Bounds) -> Result<(), String> {
    let (range, step) = match expr.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (expr, None),
    };
    let (start, end) = if range == "*" || range == "?" {
        (b.min, b.max)
    } else {
        match range.split_once('-') {
            Some((lo, hi)) => (parse_value(lo, b)?, parse_value(hi, b)?),
            None => {
                let v = parse_value(range, b)?;
                // `N/step` runs from N to the maximum.
                (v, if step.is_some() { b.max } else { v })
            }
        }
    };
    if let Some(step) = step {
        let n: u32 = step.parse().map_err(|_| {
            format!(
                "failed to parse int from {step}: strconv.Atoi: parsing {step:?}: invalid syntax"
            )
        })?;
        if n == 0 {
            return Err(format!("step of range should be a positive number: {expr}"));
        }
    }
    if start < b.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            b.min
        ));
    }
    if end > b.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            b.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    Ok(())
}

/// A Go duration (`1h30m`, `90s`, `1.5h`).
fn parse_duration(text: &str) -> bool {
    let mut rest = text;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let n = rest
            .bytes()
            .take_while(|c| c.is_ascii_digit() || *c == b'.')
            .count();
        if n == 0 {
            return false;
        }
        rest = &rest[n..];
        let unit = ["ns", "us", "µs", "ms", "s", "m", "h"]
            .into_iter()
            .filter(|u| rest.starts_with(u))
            .max_by_key(|u| u.len());
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::validate_cron_schedule as check;

    #[test]
    fn accepts_common_schedules() {
        for ok in [
            "*/5 * * * *",
            "0 0 * * *",
            "0 3 * * 1-5",
            "30 2 1,15 * *",
            "0 0 1 jan *",
            "0 9 * * MON-FRI",
            "5 4 * * sun",
            "0 */2 * * *",
            "0 0 ? * *",
            "10/15 * * * *",
            "@hourly",
            "@daily",
            "@midnight",
            "@every 1h30m",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_bad_schedules() {
        assert_eq!(
            check("* * * *"),
            Err("expected exactly 5 fields, found 4: * * * *".to_owned())
        );
        assert_eq!(
            check("60 * * * *"),
            Err("end of range (60) above maximum (59): 60".to_owned())
        );
        assert!(check("0 0 0 * *").is_err());
        assert!(check("0 0 * 13 *").is_err());
        assert!(check("0 0 * * 8").is_err());
        assert!(check("*/0 * * * *").is_err());
        assert!(check("5-1 * * * *").is_err());
        assert!(check("x * * * *").is_err());
        assert!(check("@often").is_err());
        assert!(check("@every 5 minutes").is_err());
        assert!(check("").is_err());
    }
}
