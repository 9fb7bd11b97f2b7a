//! Memory sizes: Kubernetes quantities (`5734Mi`, `1.5Gi`, `2e9`) and the JVM-style
//! strings Spark puts in `SPARK_EXECUTOR_MEMORY` (`8192m`, `8g`, `512k`, plain bytes).
//!
//! Everything is exact integer bytes; fractions of a byte round up, as the API server does
//! when it canonicalises a quantity.

use std::fmt;

use serde::{Deserialize, Deserializer};

pub const KI: u64 = 1 << 10;
pub const MI: u64 = 1 << 20;
pub const GI: u64 = 1 << 30;

/// Largest size we accept: 2^60 bytes (1 EiB), far above any node, far below overflow.
const MAX_BYTES: u128 = 1 << 60;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("{0:?} is not a quantity: expected a number with an optional suffix (Ki, Mi, Gi, Ti, Pi, Ei, k, M, G, T, P, E, m), e.g. 512Mi")]
    Syntax(String),
    #[error("{0:?} is negative; a memory size must be zero or more")]
    Negative(String),
    #[error("{0:?} is too large (more than 1Ei)")]
    TooLarge(String),
    #[error("{0:?} is not a JVM memory size: expected digits with an optional unit b, k, m, g, t or p (e.g. 8192m)")]
    JvmSyntax(String),
}

/// A memory size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Bytes(pub u64);

impl Bytes {
    pub const fn mib(n: u64) -> Bytes {
        Bytes(n * MI)
    }

    /// Whole MiB, rounding down.
    pub fn as_mib_floor(self) -> u64 {
        self.0 / MI
    }

    pub fn saturating_sub(self, other: Bytes) -> Bytes {
        Bytes(self.0.saturating_sub(other.0))
    }

    pub fn saturating_add(self, other: Bytes) -> Bytes {
        Bytes(self.0.saturating_add(other.0))
    }

    /// Container memory as Spark writes it: whole MiB (`22937Mi`), else the exact form.
    pub fn to_mib_quantity(self) -> String {
        if self.0.is_multiple_of(MI) {
            format!("{}Mi", self.0 / MI)
        } else {
            self.to_string()
        }
    }

    /// Parse a Kubernetes resource quantity as a byte count.
    pub fn parse_quantity(text: &str) -> Result<Bytes, QuantityError> {
        parse_quantity(text)
    }

    /// Parse a JVM-style size as Spark writes it (`8192m`, `8g`, `1t`, `512k`, `1024`).
    pub fn parse_jvm(text: &str) -> Result<Bytes, QuantityError> {
        parse_jvm(text)
    }
}

/// Canonical text, the way Spark and the API server write memory: the largest binary unit
/// that divides the value exactly (`5734Mi`, `4Gi`), else plain bytes.
impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 6] = [
            ("Ei", 1 << 60),
            ("Pi", 1 << 50),
            ("Ti", 1 << 40),
            ("Gi", GI),
            ("Mi", MI),
            ("Ki", KI),
        ];
        if self.0 == 0 {
            return write!(f, "0");
        }
        for (suffix, unit) in UNITS {
            if self.0.is_multiple_of(unit) {
                return write!(f, "{}{}", self.0 / unit, suffix);
            }
        }
        write!(f, "{}", self.0)
    }
}

/// A policy field holding a memory size; validated when the policy file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MemoryQuantity(pub Bytes);

/// A Kubernetes quantity (`4Gi`, `512Mi`, `1e9`) or a whole number of bytes.
impl schemars::JsonSchema for MemoryQuantity {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "MemoryQuantity".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A memory size: a Kubernetes quantity (4Gi, 512Mi, 1G) or a number of bytes",
            "anyOf": [
                {
                    "type": "string",
                    "pattern": "^[+]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][+-]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m)?$"
                },
                { "type": "integer", "minimum": 0 }
            ]
        })
    }
}

impl<'de> Deserialize<'de> for MemoryQuantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Accept `4Gi` and also bare YAML numbers (`1073741824`).
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Int(u64),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Text(t) => parse_quantity(&t)
                .map(MemoryQuantity)
                .map_err(serde::de::Error::custom),
            Raw::Int(n) => Ok(MemoryQuantity(Bytes(n))),
        }
    }
}

fn parse_quantity(text: &str) -> Result<Bytes, QuantityError> {
    let syntax = || QuantityError::Syntax(text.to_string());
    let s = text.trim();
    let (negative, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(syntax());
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    // Exact rational: digits / 10^frac_len × 2^bin × 10^dec.
    let digits = format!("{int_part}{frac_part}");
    if digits.len() > 30 {
        return Err(QuantityError::TooLarge(text.to_string()));
    }
    let mantissa: u128 = digits.parse().map_err(|_| syntax())?;
    let frac_len = frac_part.len() as i32;
    let (bin_exp, dec_exp): (u32, i32) = match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        other => {
            let exp = other
                .strip_prefix('e')
                .or_else(|| other.strip_prefix('E'))
                .ok_or_else(syntax)?;
            let exp: i32 = exp.parse().map_err(|_| syntax())?;
            if !(-30..=30).contains(&exp) {
                return Err(QuantityError::TooLarge(text.to_string()));
            }
            (0, exp)
        }
    };
    if negative && mantissa != 0 {
        return Err(QuantityError::Negative(text.to_string()));
    }
    let too_large = || QuantityError::TooLarge(text.to_string());
    let ten = |e: i32| 10u128.checked_pow(e.unsigned_abs()).ok_or_else(too_large);
    let mut numerator = mantissa.checked_shl(bin_exp).ok_or_else(too_large)?;
    let mut denominator: u128 = 1;
    let dec = dec_exp - frac_len;
    if dec >= 0 {
        numerator = numerator.checked_mul(ten(dec)?).ok_or_else(too_large)?;
    } else {
        denominator = ten(dec)?;
    }
    let bytes = numerator.div_ceil(denominator);
    if bytes > MAX_BYTES {
        return Err(too_large());
    }
    Ok(Bytes(bytes as u64))
}

fn parse_jvm(text: &str) -> Result<Bytes, QuantityError> {
    let err = || QuantityError::JvmSyntax(text.to_string());
    let lower = text.trim().to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(digits_end);
    if digits.is_empty() {
        return Err(err());
    }
    let value: u128 = digits.parse().map_err(|_| err())?;
    // Spark's byte strings use binary multiples: 1k = 1024 bytes.
    let shift = match unit {
        "" | "b" => 0,
        "k" | "kb" => 10,
        "m" | "mb" => 20,
        "g" | "gb" => 30,
        "t" | "tb" => 40,
        "p" | "pb" => 50,
        _ => return Err(err()),
    };
    let bytes = value
        .checked_shl(shift)
        .filter(|b| *b <= MAX_BYTES)
        .ok_or_else(|| QuantityError::TooLarge(text.to_string()))?;
    Ok(Bytes(bytes as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_quantities() {
        let cases: &[(&str, u64)] = &[
            ("5734Mi", 5734 * MI),
            ("4Gi", 4 * GI),
            ("1.5Gi", 3 * GI / 2),
            ("512Ki", 512 * KI),
            ("1k", 1000),
            ("1M", 1_000_000),
            ("2e9", 2_000_000_000),
            ("2E3", 2000),
            ("129e6", 129_000_000),
            ("0", 0),
            ("1024", 1024),
            ("0.5", 1), // fractions of a byte round up
            ("1500m", 2),
            ("+1Ki", 1024),
            ("1Ti", 1 << 40),
        ];
        for (text, bytes) in cases {
            assert_eq!(Bytes::parse_quantity(text), Ok(Bytes(*bytes)), "{text}");
        }
    }

    #[test]
    fn bad_kubernetes_quantities() {
        for text in [
            "", "Mi", "1.2.3Gi", "12 Mi", "1Gb", "1g", "-1Gi", "1e99", "abc", ".",
        ] {
            assert!(Bytes::parse_quantity(text).is_err(), "{text} should fail");
        }
        assert!(matches!(
            Bytes::parse_quantity("-1Gi"),
            Err(QuantityError::Negative(_))
        ));
    }

    #[test]
    fn jvm_sizes() {
        let cases: &[(&str, u64)] = &[
            ("8192m", 8192 * MI),
            ("8g", 8 * GI),
            ("8G", 8 * GI),
            ("512k", 512 * KI),
            ("1t", 1 << 40),
            ("1024", 1024),
            ("16384m", 16384 * MI),
            ("2gb", 2 * GI),
        ];
        for (text, bytes) in cases {
            assert_eq!(Bytes::parse_jvm(text), Ok(Bytes(*bytes)), "{text}");
        }
        for text in ["", "m", "8.5g", "8x", "-1g", "8 g"] {
            assert!(Bytes::parse_jvm(text).is_err(), "{text} should fail");
        }
    }

    #[test]
    fn display_picks_exact_binary_unit() {
        assert_eq!(Bytes(5734 * MI).to_string(), "5734Mi");
        assert_eq!(Bytes(4 * GI).to_string(), "4Gi");
        assert_eq!(Bytes(1536).to_string(), "1536");
        assert_eq!(Bytes(3 * KI).to_string(), "3Ki");
        assert_eq!(Bytes(0).to_string(), "0");
        assert_eq!(Bytes(17 * GI).to_mib_quantity(), "17408Mi");
        assert_eq!(Bytes(1536).to_mib_quantity(), "1536");
        // Round trip.
        for b in [Bytes(9011 * MI), Bytes(22937 * MI), Bytes(1)] {
            assert_eq!(Bytes::parse_quantity(&b.to_string()), Ok(b));
        }
    }
}
