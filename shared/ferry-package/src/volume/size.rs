//! `--volume-size`: an exact byte count from plain bytes, decimal units
//! (`4.7GB` = 4,700,000,000), binary units (`4GiB` = 4,294,967,296) or a
//! preset for real media. Bare `K`/`M`/`G` are refused: they mean decimal to
//! some tools and binary to others, and a volume must never be one byte over.

/// Presets for real media: name, bytes, what it is.
pub const PRESETS: [(&str, u64, &str); 6] = [
    ("dvd5", 4_700_372_992, "single-layer DVD (DVD-5)"),
    ("dvd9", 8_543_666_176, "dual-layer DVD (DVD-9)"),
    ("bd25", 25_025_314_816, "single-layer Blu-ray (BD-25)"),
    ("bd50", 50_050_629_632, "dual-layer Blu-ray (BD-50)"),
    ("fat32", (4 << 30) - 1, "largest file on FAT32 (4 GiB - 1)"),
    ("cd700", 737_280_000, "700 MB CD-R (Mode 1)"),
];

/// Parses a volume size (see the module doc).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let key: String = t
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .collect::<String>()
        .to_ascii_lowercase();
    if let Some((_, bytes, _)) = PRESETS.iter().find(|(n, _, _)| *n == key) {
        return Ok(*bytes);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = (&t[..split], t[split..].trim());
    if number.is_empty() {
        return Err(format!(
            "{text:?}: expected a size such as 4700000000, 4.7GB, 4GiB or a preset ({})",
            PRESETS.map(|p| p.0).join(", ")
        ));
    }
    let multiplier: u64 = match unit {
        "" | "B" | "b" => 1,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "k" | "K" | "M" | "G" | "T" | "m" | "g" | "t" => {
            return Err(format!(
            "{text:?}: {unit:?} is ambiguous; write {number}{}B (decimal) or {number}{}iB (binary)",
            unit.to_ascii_uppercase(),
            unit.to_ascii_uppercase()
        ))
        }
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            ))
        }
    };
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if frac.contains('.') || (whole.is_empty() && frac.is_empty()) {
        return Err(format!("{text:?}: not a number"));
    }
    let overflow = || format!("{text:?}: too large");
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| overflow())?
    };
    let mut bytes = whole.checked_mul(multiplier).ok_or_else(overflow)?;
    // The fraction, exactly: digits * multiplier / 10^len must be whole.
    if !frac.is_empty() {
        let digits: u128 = frac.parse().map_err(|_| overflow())?;
        let scale = 10u128.checked_pow(frac.len() as u32).ok_or_else(overflow)?;
        let part = digits * multiplier as u128;
        if !part.is_multiple_of(scale) {
            return Err(format!("{text:?} is not a whole number of bytes"));
        }
        bytes = bytes
            .checked_add(u64::try_from(part / scale).map_err(|_| overflow())?)
            .ok_or_else(overflow)?;
    }
    if bytes == 0 {
        return Err(format!("{text:?}: a volume size must be above zero"));
    }
    Ok(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::parse_size;

    #[test]
    fn units_and_presets_are_exact() {
        assert_eq!(parse_size("4700000000").unwrap(), 4_700_000_000);
        assert_eq!(parse_size("4.7GB").unwrap(), 4_700_000_000);
        assert_eq!(parse_size("4GiB").unwrap(), 4_294_967_296);
        assert_eq!(parse_size("1.5KiB").unwrap(), 1536);
        assert_eq!(parse_size("DVD-5").unwrap(), 4_700_372_992);
        assert_eq!(parse_size("dvd9").unwrap(), 8_543_666_176);
        assert_eq!(parse_size("BD25").unwrap(), 25_025_314_816);
        assert_eq!(parse_size("fat32").unwrap(), 4_294_967_295);
        assert_eq!(parse_size("512 MiB").unwrap(), 512 << 20);
    }

    #[test]
    fn ambiguous_or_inexact_sizes_are_refused() {
        assert!(parse_size("4G").unwrap_err().contains("ambiguous"));
        assert!(parse_size("1.0001KB").unwrap_err().contains("whole number"));
        assert!(parse_size("0").is_err());
        assert!(parse_size("GB").is_err());
        assert!(parse_size("4 parsecs").is_err());
        assert!(parse_size("99999999999TB").is_err());
    }
}
