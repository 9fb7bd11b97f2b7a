//! Validated names used in policies: label keys and values, namespace patterns, env var
//! names, Secret names and keys. Each checks its syntax when the policy file is read, so a
//! bad name is reported with its file, line and column instead of being sent to the API
//! server inside a patch (where it would fail every pod creation).

use std::fmt;

use serde::{Deserialize, Deserializer};

fn is_alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

/// Kubernetes "qualified name" part: ≤63 chars, alphanumeric at both ends, `-_.` inside.
fn check_name_part(s: &str, what: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if s.len() > 63 {
        return Err(format!("{what} {s:?} is longer than 63 characters"));
    }
    let ok_ends = s.starts_with(is_alnum) && s.ends_with(is_alnum);
    let ok_chars = s
        .chars()
        .all(|c| is_alnum(c) || matches!(c, '-' | '_' | '.'));
    if !(ok_ends && ok_chars) {
        return Err(format!(
            "{what} {s:?} must consist of alphanumeric characters, '-', '_' or '.', and start and end with an alphanumeric character"
        ));
    }
    Ok(())
}

/// RFC 1123 subdomain: lowercase alphanumerics, `-` and `.`, ≤253 chars.
pub fn check_dns_subdomain(s: &str, what: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && label.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} {s:?} is not a valid DNS subdomain (lowercase letters, digits, '-' and '.', at most 253 characters)"
        ))
    }
}

pub fn check_label_key(s: &str) -> Result<(), String> {
    match s.split_once('/') {
        Some((prefix, name)) => {
            check_dns_subdomain(prefix, "label key prefix")?;
            check_name_part(name, "label key name")
        }
        None => check_name_part(s, "label key"),
    }
}

pub fn check_label_value(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Ok(());
    }
    check_name_part(s, "label value")
}

/// Env var names as the API server has always accepted them (C identifier plus `-` and `.`).
pub fn check_env_name(s: &str) -> Result<(), String> {
    let ok = s.starts_with(|c: char| c.is_ascii_alphabetic() || matches!(c, '_' | '-' | '.'))
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "env var name {s:?} is invalid: use letters, digits, '_', '-' or '.', not starting with a digit"
        ))
    }
}

pub fn check_secret_key(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "Secret key {s:?} is invalid: use letters, digits, '_', '-' or '.' (at most 253)"
        ))
    }
}

/// An absolute path without `..` elements (mount paths, hostPath paths).
pub fn check_absolute_path(s: &str, what: &str) -> Result<(), String> {
    if !s.starts_with('/') {
        return Err(format!("{what} {s:?} must be an absolute path"));
    }
    if s.split('/').any(|part| part == "..") {
        return Err(format!("{what} {s:?} must not contain '..'"));
    }
    Ok(())
}

macro_rules! validated_string {
    ($(#[$doc:meta])* $name:ident, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn new(s: impl Into<String>) -> Result<Self, String> {
                let s = s.into();
                ($check)(&s)?;
                Ok($name(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::new(s).map_err(serde::de::Error::custom)
            }
        }

        // A string in the schema; the checks above stay the loader's (`check` names them).
        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn inline_schema() -> bool {
                true
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string" })
            }
        }
    };
}

validated_string!(
    /// A label key (`spark-role`, `karpenter.sh/capacity-type`), also used for node labels.
    LabelKey,
    check_label_key
);
validated_string!(
    /// A label value (may be empty).
    LabelValue,
    check_label_value
);
validated_string!(
    /// An environment variable name.
    EnvName,
    check_env_name
);
validated_string!(
    /// A Secret's name.
    SecretName,
    |s: &str| check_dns_subdomain(s, "Secret name")
);
validated_string!(
    /// A key inside a Secret.
    SecretKey,
    check_secret_key
);
validated_string!(
    /// An absolute path in a container or on a node.
    AbsolutePath,
    |s: &str| check_absolute_path(s, "path")
);
validated_string!(
    /// A namespace name or a `*` glob over namespace names (`team-*`, `*-prod`, `*`).
    NamespacePattern,
    |s: &str| {
        let ok = !s.is_empty()
            && s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '*');
        if ok {
            Ok(())
        } else {
            Err(format!(
                "namespace pattern {s:?} is invalid: use lowercase letters, digits, '-' and '*' (at most 63)"
            ))
        }
    }
);

impl NamespacePattern {
    /// Glob match where `*` stands for any run of characters.
    pub fn matches(&self, namespace: &str) -> bool {
        glob_match(self.0.as_bytes(), namespace.as_bytes())
    }
}

fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative matcher with single-star backtracking: linear in practice, no recursion.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keys() {
        for ok in [
            "spark-role",
            "karpenter.sh/capacity-type",
            "eks.amazonaws.com/capacityType",
            "kubernetes.azure.com/scalesetpriority",
            "a",
            "A_b.c",
        ] {
            assert!(check_label_key(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a b",
            "Karpenter.SH/x",
            "a/b/c",
            "/x",
            "x/",
            &"x".repeat(64),
        ] {
            assert!(check_label_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn label_values() {
        for ok in ["", "SPOT", "on-demand", "true", "a.b_c"] {
            assert!(check_label_value(ok).is_ok(), "{ok}");
        }
        for bad in ["-x", "a b", "x/y", &"v".repeat(64)] {
            assert!(check_label_value(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_names() {
        for ok in ["APP_ID", "_x", "a.b-c", "TENANT_ID"] {
            assert!(check_env_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1ABC", "A B", "A=B", "É"] {
            assert!(check_env_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn namespace_globs() {
        let cases = [
            ("*", "anything", true),
            ("team-*", "team-a", true),
            ("team-*", "team-", true),
            ("team-*", "teams", false),
            ("*-prod", "etl-prod", true),
            ("*-prod", "etl-prod-2", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("default", "default", true),
            ("default", "default2", false),
        ];
        for (pattern, ns, expected) in cases {
            let p = NamespacePattern::new(pattern).unwrap();
            assert_eq!(p.matches(ns), expected, "{pattern} ~ {ns}");
        }
        assert!(NamespacePattern::new("Team").is_err());
        assert!(NamespacePattern::new("").is_err());
    }

    #[test]
    fn paths_and_secrets() {
        assert!(check_absolute_path("/tmp/mnt-1", "p").is_ok());
        assert!(check_absolute_path("tmp", "p").is_err());
        assert!(check_absolute_path("/a/../b", "p").is_err());
        assert!(check_dns_subdomain("app", "s").is_ok());
        assert!(check_dns_subdomain("App", "s").is_err());
        assert!(check_secret_key("app_secret").is_ok());
        assert!(check_secret_key("a/b").is_err());
    }
}
