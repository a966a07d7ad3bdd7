//! Kubernetes resource quantities (`500m`, `1.5Gi`, `1e3`, `128974848`): parsing and exact integer
//! values, as cpu millicores and memory bytes.

use std::fmt;
use std::str::FromStr;

use crate::error::ApiError;

/// The regular expression Kubernetes quotes when a quantity does not parse.
pub const QUANTITY_FORMAT: &str = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$";

/// A parsed quantity, kept exactly: `digits × 10^exp10 × 1024^exp1024`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quantity {
    original: String,
    negative: bool,
    /// The digits with the decimal point removed.
    digits: u128,
    exp10: i32,
    exp1024: u32,
}

/// Why a quantity does not parse or does not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("quantities must match the regular expression '{QUANTITY_FORMAT}' (got \"{0}\")")]
    Format(String),
    #[error("quantity \"{0}\" is too large")]
    TooLarge(String),
}

impl From<QuantityError> for ApiError {
    fn from(e: QuantityError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

/// Parses a Kubernetes quantity: an optionally signed decimal number followed by a binary suffix
/// (`Ki Mi Gi Ti Pi Ei`), a decimal suffix (`n u m k M G T P E`) or an exponent (`e3`, `E-2`).
pub fn parse_quantity(text: &str) -> Result<Quantity, QuantityError> {
    let bad = || QuantityError::Format(text.to_string());
    let s = text.trim();
    if s.is_empty() {
        return Err(bad());
    }
    let (negative, rest) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let number_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_end);
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
        return Err(bad());
    }
    let mut digits: u128 = 0;
    let mut exp10: i32 = 0;
    for c in int_part.chars().chain(frac_part.chars()) {
        let d = u128::from(c.to_digit(10).ok_or_else(bad)?);
        match digits.checked_mul(10).and_then(|v| v.checked_add(d)) {
            Some(v) => digits = v,
            None => return Err(QuantityError::TooLarge(text.to_string())),
        }
    }
    exp10 -= i32::try_from(frac_part.len()).map_err(|_| bad())?;
    let mut exp1024 = 0;
    match suffix {
        "" => {}
        "Ki" => exp1024 = 1,
        "Mi" => exp1024 = 2,
        "Gi" => exp1024 = 3,
        "Ti" => exp1024 = 4,
        "Pi" => exp1024 = 5,
        "Ei" => exp1024 = 6,
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        other => {
            let exp = other.strip_prefix(['e', 'E']).ok_or_else(bad)?;
            let unsigned = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let e: i32 = exp
                .parse()
                .map_err(|_| QuantityError::TooLarge(text.to_string()))?;
            exp10 = exp10
                .checked_add(e)
                .ok_or_else(|| QuantityError::TooLarge(text.to_string()))?;
        }
    }
    let q = Quantity {
        original: s.to_string(),
        negative: negative && digits != 0,
        digits,
        exp10,
        exp1024,
    };
    // Refuse what cannot be represented in milli-units, so the accessors never overflow.
    q.scaled(3)
        .ok_or_else(|| QuantityError::TooLarge(text.to_string()))?;
    Ok(q)
}

impl Quantity {
    /// The value times 10^`scale`, rounded up (towards positive infinity); `None` on overflow.
    fn scaled(&self, scale: i32) -> Option<i128> {
        let mut n: u128 = self.digits;
        for _ in 0..self.exp1024 {
            n = n.checked_mul(1024)?;
        }
        let exp = self.exp10.checked_add(scale)?;
        let magnitude = if exp >= 0 {
            n.checked_mul(10u128.checked_pow(u32::try_from(exp).ok()?)?)?
        } else {
            let div = u32::try_from(-exp).ok().and_then(|e| 10u128.checked_pow(e));
            match div {
                // Dividing by more than any u128 leaves less than one unit.
                None => u128::from(n != 0 && !self.negative),
                Some(div) => {
                    let (q, r) = (n / div, n % div);
                    // Round up: away from zero for positives, towards zero for negatives.
                    if r != 0 && !self.negative { q + 1 } else { q }
                }
            }
        };
        let signed = i128::try_from(magnitude).ok()?;
        Some(if self.negative { -signed } else { signed })
    }

    /// The value in thousandths, rounded up: cpu `250m` → 250, `1` → 1000.
    pub fn milli_value(&self) -> i128 {
        self.scaled(3)
            .expect("checked when parsed: the milli value fits in i128")
    }

    /// The value in whole units, rounded up: memory `1Ki` → 1024, cpu `100m` → 1.
    pub fn value(&self) -> i128 {
        self.scaled(0)
            .expect("a whole value is never larger than the milli value checked when parsed")
    }

    /// Whether the quantity is below zero.
    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// The text it was parsed from.
    pub fn as_str(&self) -> &str {
        &self.original
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_quantity(s)
    }
}

/// Formats millicores the way Kubernetes prints cpu: `1500m` → `1500m`, `2000` → `2`.
pub fn format_milli(milli: i128) -> String {
    if milli % 1000 == 0 {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_to_exact_values() {
        let table: &[(&str, i128, i128)] = &[
            // (text, milli_value, value)
            ("0", 0, 0),
            ("1", 1000, 1),
            ("100m", 100, 1),
            ("250m", 250, 1),
            ("1500m", 1500, 2),
            ("0.5", 500, 1),
            (".5", 500, 1),
            ("1.", 1000, 1),
            ("2k", 2_000_000, 2000),
            ("1M", 1_000_000_000, 1_000_000),
            ("1G", 1_000_000_000_000, 1_000_000_000),
            ("1T", 1_000_000_000_000_000, 1_000_000_000_000),
            ("1P", 10i128.pow(18), 10i128.pow(15)),
            ("1E", 10i128.pow(21), 10i128.pow(18)),
            ("1Ki", 1_024_000, 1024),
            ("128Mi", 134_217_728_000, 134_217_728),
            ("1.5Gi", 1_610_612_736_000, 1_610_612_736),
            ("1Ti", 1_099_511_627_776_000, 1_099_511_627_776),
            ("1Pi", 1_125_899_906_842_624_000, 1_125_899_906_842_624),
            (
                "1Ei",
                1_152_921_504_606_846_976_000,
                1_152_921_504_606_846_976,
            ),
            ("1e3", 1_000_000, 1000),
            ("1E3", 1_000_000, 1000),
            ("12e-3", 12, 1),
            ("1e+2", 100_000, 100),
            ("128974848", 128_974_848_000, 128_974_848),
            ("129e6", 129_000_000_000, 129_000_000),
            ("5n", 1, 1),
            ("1500u", 2, 1),
            ("+3", 3000, 3),
            ("-1", -1000, -1),
            ("-100m", -100, 0),
            (" 2 ", 2000, 2),
        ];
        for &(text, milli, value) in table {
            let q = parse_quantity(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"));
            assert_eq!(q.milli_value(), milli, "milli_value of {text:?}");
            assert_eq!(q.value(), value, "value of {text:?}");
        }
    }

    #[test]
    fn malformed_quantities_are_refused_with_the_kubernetes_rule() {
        for text in [
            "", "abc", "1Z", "1.2.3", "Mi", "1 Mi", "1e", "1e+", "1ee3", "--1", "1mi", "0x10", ".",
        ] {
            let err = parse_quantity(text).expect_err(text);
            assert!(matches!(err, QuantityError::Format(_)), "{text:?}: {err}");
            assert!(err.to_string().contains("regular expression"), "{err}");
        }
    }

    #[test]
    fn enormous_quantities_are_refused_not_overflowed() {
        for text in [
            "1e40",
            "999999999999999999999999999999999999999999",
            "1e2147483647",
            "1000000000000000000Ei",
        ] {
            assert!(
                matches!(parse_quantity(text), Err(QuantityError::TooLarge(_))),
                "{text:?}"
            );
        }
        // Tiny values round up to one milli-unit rather than fail.
        assert_eq!(parse_quantity("1e-50").map(|q| q.milli_value()), Ok(1));
    }

    #[test]
    fn millicores_format_like_kubernetes() {
        assert_eq!(format_milli(1500), "1500m");
        assert_eq!(format_milli(2000), "2");
        assert_eq!(
            parse_quantity("250m").map(|q| q.to_string()),
            Ok("250m".to_string())
        );
    }
}
