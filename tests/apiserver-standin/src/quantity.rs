//! `resource.Quantity` as the API server parses, rounds, compares and serializes it
//! (`staging/src/k8s.io/apimachinery/pkg/api/resource/quantity.go`, `amount.go`, `suffix.go`).
//!
//! What a webhook sees depends on it: the API server decodes the submitted pod into typed
//! structs and encodes them again, so `2048Mi` reaches the webhook as `2Gi` and `0.5` as `500m`,
//! while a form `ParseQuantity` judges canonical (`1433Mi`, `1500M`) keeps its spelling.

use std::cmp::Ordering;

/// `quantity.go` errors, worded as the API server words them.
pub const ERR_FORMAT_WRONG: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
pub const ERR_NUMERIC: &str = "unable to parse numeric part of quantity";
pub const ERR_SUFFIX: &str = "unable to parse quantity's suffix";

/// Nano, the smallest scale a quantity keeps (values are rounded up to it).
const NANO: i32 = -9;
/// `maxAllowed`: larger values are capped.
const MAX_ALLOWED: i128 = i64::MAX as i128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    DecimalExponent,
    BinarySI,
    DecimalSI,
}

/// A parsed quantity: `unscaled × 10^scale`, its format, and the original spelling when
/// `ParseQuantity` decided it was already canonical (then `MarshalJSON` writes it back as is).
#[derive(Debug, Clone)]
pub struct Quantity {
    unscaled: i128,
    scale: i32,
    format: Format,
    cached: Option<String>,
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.cmp_value(other) == Ordering::Equal
    }
}

fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

/// `parseQuantityString`: sign, numerator without leading zeros, denominator, suffix.
struct Parts<'a> {
    positive: bool,
    /// Everything before the suffix (sign and leading zeros included).
    value: &'a str,
    num: &'a str,
    denom: &'a str,
    suffix: &'a str,
}

fn split(s: &str) -> Result<Parts<'_>, &'static str> {
    let b = s.as_bytes();
    let end = b.len();
    let mut pos = 0;
    let mut positive = true;
    match b.first() {
        Some(b'-') => {
            positive = false;
            pos = 1;
        }
        Some(b'+') => pos = 1,
        _ => {}
    }
    while pos < end && b[pos] == b'0' {
        pos += 1;
    }
    if pos >= end {
        return Ok(Parts {
            positive,
            value: "0",
            num: "0",
            denom: "",
            suffix: "",
        });
    }
    let num_start = pos;
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    let mut num = &s[num_start..pos];
    if num.is_empty() {
        num = "0";
    }
    let mut denom = "";
    if pos < end && b[pos] == b'.' {
        pos += 1;
        let d = pos;
        while pos < end && b[pos].is_ascii_digit() {
            pos += 1;
        }
        denom = &s[d..pos];
    }
    let value = &s[..pos];
    let suffix_start = pos;
    while pos < end && b"eEinumkKMGTP".contains(&b[pos]) {
        pos += 1;
    }
    if pos < end && matches!(b[pos], b'-' | b'+') {
        pos += 1;
    }
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos < end {
        return Err(ERR_FORMAT_WRONG);
    }
    Ok(Parts {
        positive,
        value,
        num,
        denom,
        suffix: &s[suffix_start..],
    })
}

/// `suffixHandler.interpret`: (base, exponent, format).
fn interpret(suffix: &str) -> Option<(u32, i32, Format)> {
    let dec = |e| Some((10, e, Format::DecimalSI));
    let bin = |e| Some((2, e, Format::BinarySI));
    match suffix {
        "" => dec(0),
        "n" => dec(-9),
        "u" => dec(-6),
        "m" => dec(-3),
        "k" => dec(3),
        "M" => dec(6),
        "G" => dec(9),
        "T" => dec(12),
        "P" => dec(15),
        "E" => dec(18),
        "Ki" => bin(10),
        "Mi" => bin(20),
        "Gi" => bin(30),
        "Ti" => bin(40),
        "Pi" => bin(50),
        "Ei" => bin(60),
        s if s.len() > 1 && (s.starts_with('e') || s.starts_with('E')) => {
            let e: i32 = s[1..].parse().ok()?;
            Some((10, e, Format::DecimalExponent))
        }
        _ => None,
    }
}

impl Quantity {
    /// `resource.ParseQuantity`.
    pub fn parse(s: &str) -> Result<Quantity, &'static str> {
        if s.is_empty() {
            return Err(ERR_FORMAT_WRONG);
        }
        if s == "0" {
            return Ok(Quantity {
                unscaled: 0,
                scale: 0,
                format: Format::DecimalSI,
                cached: Some("0".into()),
            });
        }
        let p = split(s)?;
        let (base, exponent, format) = interpret(p.suffix).ok_or(ERR_SUFFIX)?;
        let digits = i32::try_from(p.num.len() + p.denom.len()).unwrap_or(i32::MAX);
        let denom_len = i32::try_from(p.denom.len()).unwrap_or(i32::MAX);
        // The int64 fast path, with its rule for keeping the spelling.
        let (mut scale, precision, mantissa) = match format {
            Format::DecimalExponent | Format::DecimalSI => (exponent, 18 - digits, 1i128),
            Format::BinarySI if exponent >= 0 && p.denom.is_empty() => {
                let num_len = i32::try_from(p.num.len()).unwrap_or(i32::MAX);
                // Go: 15 - len(num) - int(float32(exponent)*3/10) - 1
                (0, 15 - num_len - exponent * 3 / 10 - 1, 1i128 << exponent)
            }
            Format::BinarySI => (0, -1, 1),
        };
        if precision >= 0 {
            scale -= denom_len;
            if scale >= NANO {
                let shifted = format!("{}{}", p.num, p.denom);
                let value: i64 = shifted.parse().map_err(|_| ERR_NUMERIC)?;
                if let Some(result) = i128::from(value)
                    .checked_mul(mantissa)
                    .filter(|r| *r <= MAX_ALLOWED)
                {
                    let canonical = match format {
                        Format::BinarySI => exponent % 10 == 0 && value & 0x07 != 0,
                        _ => {
                            scale % 3 == 0 && !shifted.ends_with("000") && !shifted.starts_with('0')
                        }
                    };
                    return Ok(Quantity {
                        unscaled: if p.positive { result } else { -result },
                        scale,
                        format,
                        cached: canonical.then(|| s.to_string()),
                    });
                }
            }
        }
        // The inf.Dec path: exact value, rounded up to nano, capped.
        let (int_digits, frac) = p.value.split_once('.').unwrap_or((p.value, ""));
        let int_digits = int_digits.trim_start_matches(['+', '-']);
        let all = format!("{int_digits}{frac}");
        let all = all.trim_start_matches('0');
        let mut unscaled: i128 = if all.is_empty() {
            0
        } else {
            all.parse().unwrap_or(i128::MAX)
        };
        let mut scale = -i32::try_from(frac.len()).unwrap_or(i32::MAX);
        if base == 10 {
            scale = scale.saturating_add(exponent);
        } else {
            let shift = u32::try_from(exponent).unwrap_or(0);
            unscaled = if unscaled > (i128::MAX >> shift) {
                i128::MAX
            } else {
                unscaled << shift
            };
        }
        let mut format = format;
        if unscaled != 0 && scale < NANO {
            unscaled = div_round_up(unscaled, (NANO - scale) as u32);
            scale = NANO;
        }
        if exceeds_max(unscaled, scale) {
            unscaled = MAX_ALLOWED;
            scale = 0;
        }
        if format == Format::BinarySI && unscaled > 0 && cmp(unscaled, scale, 1, 0).is_lt() {
            format = Format::DecimalSI;
        }
        Ok(Quantity {
            unscaled: if p.positive { unscaled } else { -unscaled },
            scale,
            format,
            cached: None,
        })
    }

    pub fn is_negative(&self) -> bool {
        self.unscaled < 0
    }

    pub fn is_zero(&self) -> bool {
        self.unscaled == 0
    }

    /// `Quantity.Cmp`.
    pub fn cmp_value(&self, other: &Quantity) -> Ordering {
        cmp(self.unscaled, self.scale, other.unscaled, other.scale)
    }

    /// `Quantity.RoundUp(scale)`: rounds away from zero to the scale; the spelling is kept
    /// only when nothing had to change.
    pub fn round_up(&mut self, scale: i32) {
        if self.scale >= scale {
            return;
        }
        let neg = self.unscaled < 0;
        let r = div_round_up(self.unscaled.abs(), (scale - self.scale) as u32);
        self.unscaled = if neg { -r } else { r };
        self.scale = scale;
        self.cached = None;
    }

    /// What `MarshalJSON` writes: the kept spelling, else `CanonicalizeBytes`.
    pub fn serialize(&self) -> String {
        if let Some(s) = &self.cached {
            return s.clone();
        }
        self.canonical()
    }

    /// `Quantity.CanonicalizeBytes`.
    pub fn canonical(&self) -> String {
        if self.unscaled == 0 {
            return "0".into();
        }
        let mut format = self.format;
        if format == Format::BinarySI {
            let small = cmp(self.unscaled, self.scale, -1024, 0).is_gt()
                && cmp(self.unscaled, self.scale, 1024, 0).is_lt();
            if small || self.as_integer().is_none() {
                format = Format::DecimalSI;
            }
        }
        match format {
            Format::BinarySI => {
                let mut amount = self.as_integer().unwrap_or(0);
                let mut k = 0;
                while amount != 0 && amount % 1024 == 0 && k < 6 {
                    amount /= 1024;
                    k += 1;
                }
                let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][k];
                format!("{amount}{suffix}")
            }
            Format::DecimalSI | Format::DecimalExponent => {
                let (mut amount, mut exponent) = (self.unscaled, self.scale);
                while amount % 10 == 0 {
                    amount /= 10;
                    exponent += 1;
                }
                while exponent.rem_euclid(3) != 0 {
                    amount *= 10;
                    exponent -= 1;
                }
                let suffix = if format == Format::DecimalExponent {
                    if exponent == 0 {
                        String::new()
                    } else {
                        format!("e{exponent}")
                    }
                } else {
                    match exponent {
                        -9 => "n",
                        -6 => "u",
                        -3 => "m",
                        3 => "k",
                        6 => "M",
                        9 => "G",
                        12 => "T",
                        15 => "P",
                        18 => "E",
                        _ => "",
                    }
                    .to_string()
                };
                format!("{amount}{suffix}")
            }
        }
    }

    /// The value as an integer when it is one (`AsScale(0)` exact).
    fn as_integer(&self) -> Option<i128> {
        if self.scale >= 0 {
            return self.unscaled.checked_mul(pow10(self.scale as u32)?);
        }
        let d = pow10((-self.scale) as u32)?;
        (self.unscaled % d == 0).then(|| self.unscaled / d)
    }
}

/// `n / 10^k`, rounded up (n ≥ 0).
fn div_round_up(n: i128, k: u32) -> i128 {
    match pow10(k) {
        Some(d) => n / d + i128::from(n % d != 0),
        None => i128::from(n != 0),
    }
}

fn exceeds_max(unscaled: i128, scale: i32) -> bool {
    cmp(unscaled, scale, MAX_ALLOWED, 0).is_gt()
}

/// Compares `a × 10^sa` with `b × 10^sb` exactly.
fn cmp(a: i128, sa: i32, b: i128, sb: i32) -> Ordering {
    if a.signum() != b.signum() || a == 0 {
        return a.signum().cmp(&b.signum());
    }
    let (hi, lo, shift, flip) = if sa >= sb {
        (a, b, (sa - sb) as u32, false)
    } else {
        (b, a, (sb - sa) as u32, true)
    };
    let ord = match pow10(shift).and_then(|p| hi.checked_mul(p)) {
        Some(scaled) => scaled.cmp(&lo),
        // Overflow: the shifted side is larger in magnitude.
        None => {
            if hi > 0 {
                Ordering::Greater
            } else {
                Ordering::Less
            }
        }
    };
    if flip {
        ord.reverse()
    } else {
        ord
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the API server's JSON encoding makes of each spelling (the left column as a
    /// pod's request, the right as a webhook receives it).
    #[test]
    fn serialized_as_the_api_server_encodes_them() {
        for (input, want) in [
            ("2048Mi", "2Gi"),
            ("1433Mi", "1433Mi"),
            ("1408Mi", "1408Mi"),
            ("7168Mi", "7Gi"),
            ("1024Mi", "1Gi"),
            ("1.5Gi", "1536Mi"),
            ("0.5Gi", "512Mi"),
            ("512Ki", "512Ki"),
            ("1536", "1536"),
            ("1000m", "1"),
            ("0.5", "500m"),
            ("100m", "100m"),
            ("1500M", "1500M"),
            ("1.5G", "1500M"),
            ("1e3", "1e3"),
            ("12e2", "1200"),
            ("2000", "2k"),
            ("200Gi", "200Gi"),
            ("400Gi", "400Gi"),
            ("0", "0"),
            ("00", "0"),
            ("-1Gi", "-1Gi"),
            ("-2048Mi", "-2Gi"),
            ("0.0000000001", "1n"),
            ("1Ki", "1Ki"),
            ("0.5Ki", "512"),
        ] {
            let q = Quantity::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(q.serialize(), want, "{input}");
        }
    }

    #[test]
    fn malformed_spellings_are_refused_with_the_api_servers_reasons() {
        for (input, want) in [
            ("", ERR_FORMAT_WRONG),
            ("1Xi", ERR_FORMAT_WRONG),
            ("1K", ERR_SUFFIX),
            ("1.2.3", ERR_FORMAT_WRONG),
            ("lots", ERR_FORMAT_WRONG),
        ] {
            assert_eq!(Quantity::parse(input).unwrap_err(), want, "{input}");
        }
    }

    #[test]
    fn values_compare_across_spellings() {
        let q = |s| Quantity::parse(s).unwrap();
        assert_eq!(q("2Gi"), q("2048Mi"));
        assert_eq!(q("1"), q("1000m"));
        assert_eq!(q("536870912"), q("512Mi"));
        assert!(q("1433Mi").cmp_value(&q("1408Mi")).is_gt());
        assert!(q("-1").is_negative());
        assert_eq!(
            q("99999999999999999999"),
            q("9223372036854775807"),
            "capped"
        );
        // Go's parser takes a bare suffix or a bare dot as zero.
        assert!(q("Gi").is_zero() && q(".").is_zero());
    }

    #[test]
    fn round_up_to_milli_as_resource_lists_are_defaulted() {
        let mut q = Quantity::parse("1.0001").unwrap();
        q.round_up(-3);
        assert_eq!(q.serialize(), "1001m");
        let mut kept = Quantity::parse("1433Mi").unwrap();
        kept.round_up(-3);
        assert_eq!(kept.serialize(), "1433Mi");
        let mut tiny = Quantity::parse("1n").unwrap();
        tiny.round_up(-3);
        assert_eq!(tiny.serialize(), "1m");
    }
}
