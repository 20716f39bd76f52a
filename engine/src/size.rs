//! Sizes as people write them in pipeline files and server configs:
//! `512MiB`, `2g`, `10MB`, a bare number of bytes.

/// Parses `<number><unit>`: `k`/`kb`, `m`/`mb`, `g`/`gb`, `t`/`tb` are
/// powers of 1000 (as disks and Kubernetes count), `kib`, `mib`, `gib`,
/// `tib` powers of 1024; case does not matter and a fraction is allowed
/// (`1.5g`). Neither negative nor unbounded values parse.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number.parse().ok()?;
    let multiplier: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = n * multiplier;
    // `as` would turn an absurd size into u64::MAX without a word.
    (bytes.is_finite() && bytes < u64::MAX as f64).then_some(bytes.round() as u64)
}

/// The short binary form used in messages: `512 B`, `10.0 MiB`, `1.5 GiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_and_binary_units() {
        assert_eq!(parse_size("2g"), Some(2_000_000_000));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("10MiB"), Some(10 << 20));
        assert_eq!(parse_size("1.5 gb"), Some(1_500_000_000));
        assert_eq!(parse_size("4096"), Some(4096));
        for bad in ["", "lots", "-1g", "1e9", "2 gigs", ".", "1.2.3m"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
        assert_eq!(parse_size(&format!("{}tib", "9".repeat(30))), None);
    }

    #[test]
    fn formats_in_binary_units() {
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(10 << 20), "10.0 MiB");
        assert_eq!(format_size(1536 << 20), "1.5 GiB");
    }
}
