//! Durations and byte sizes as people write them in flags, Helm values and custom resources: `30d`, `12h`,
//! `500GiB`. One parser for all of them, so `--retention-max-age=30d` and `spec.retention.maxAge: 30d` agree.

/// Seconds in `text`: a whole number with an optional unit, `s`, `m`, `h`, `d` or `w` (`90`, `45m`, `30d`).
pub fn parse_duration_secs(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let (number, unit) = split_unit(text);
    let scale: i64 = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        other => return Err(format!("{text:?}: unknown unit {other:?}; use s, m, h, d or w (e.g. 30d)")),
    };
    let value: i64 = number.parse().map_err(|_| format!("{text:?} is not a duration such as 3600, 90m, 12h or 30d"))?;
    let secs = value.checked_mul(scale).ok_or_else(|| format!("{text:?} is too long"))?;
    if secs < 1 {
        return Err(format!("{text:?} must be at least one second"));
    }
    Ok(secs)
}

/// Bytes in `text`: a whole number with an optional unit, decimal (`k`/`KB`, `M`/`MB`, `G`/`GB`, `T`/`TB`) or
/// binary (`Ki`/`KiB`, `Mi`/`MiB`, `Gi`/`GiB`, `Ti`/`TiB`, as Kubernetes quantities write them).
pub fn parse_bytes(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let (number, unit) = split_unit(text);
    let scale: i64 = match unit.trim_end_matches(['B', 'b']) {
        "" => 1,
        "k" | "K" => 1000,
        "M" => 1000_i64.pow(2),
        "G" => 1000_i64.pow(3),
        "T" => 1000_i64.pow(4),
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => return Err(format!("{text:?}: unknown unit {unit:?}; use e.g. 500000000, 500M, 500Mi or 2TiB")),
    };
    let value: i64 = number.parse().map_err(|_| format!("{text:?} is not a size such as 500Mi or 2T"))?;
    let bytes = value.checked_mul(scale).ok_or_else(|| format!("{text:?} is too large"))?;
    if bytes < 1 {
        return Err(format!("{text:?} must be at least one byte"));
    }
    Ok(bytes)
}

fn split_unit(text: &str) -> (&str, &str) {
    let at = text.find(|c: char| !(c.is_ascii_digit() || c == '-' || c == '+')).unwrap_or(text.len());
    text.split_at(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("90"), Ok(90));
        assert_eq!(parse_duration_secs("45m"), Ok(2700));
        assert_eq!(parse_duration_secs("30d"), Ok(30 * 86_400));
        assert_eq!(parse_duration_secs("2w"), Ok(14 * 86_400));
        for bad in ["", "0", "-5d", "1.5h", "12x", "d", "99999999999999999999", "9223372036854775807w"] {
            assert!(parse_duration_secs(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert_eq!(parse_bytes("500M"), Ok(500_000_000));
        assert_eq!(parse_bytes("500Mi"), Ok(500 << 20));
        assert_eq!(parse_bytes("2TiB"), Ok(2 << 40));
        assert_eq!(parse_bytes("3GB"), Ok(3_000_000_000));
        for bad in ["", "0", "-1", "1.5G", "5X", "99999999Ti"] {
            assert!(parse_bytes(bad).is_err(), "{bad:?}");
        }
    }
}
