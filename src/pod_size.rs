//! How large a pod becomes once parsed, counted on its JSON before it is parsed.
//!
//! The typed model (k8s-openapi) stores every optional field of an object in place, so an
//! object takes the whole size of its type however little its JSON holds: a `Volume` is
//! 3,280 bytes and a `Container` 2,336 whatever they contain, so `{"name":"v"}` (12 bytes)
//! becomes 3 KiB, and a list growing while it is parsed briefly holds up to 1.5× its final
//! capacity. Measured on a 3 MiB review (`examples/review_cost`): 101,000 minimal volumes
//! held 728 MiB of heap, 241,000 minimal containers 876 MiB. A tenant who may create a Spark
//! pod could take a replica past its memory limit with one such pod, so the lists are
//! counted first (a pass that keeps nothing) and a pod past these limits is refused with
//! the count that is over. No Spark pod comes near them: Spark's Kubernetes backend writes
//! one container of its own (`BasicDriverFeatureStep`, `BasicExecutorFeatureStep` in
//! resource-managers/kubernetes) and a volume per local dir, config map or volume the user
//! mounts (`LocalDirsFeatureStep`, `MountVolumesFeatureStep`); a pod template adds what its
//! author wrote. The pods recorded from real `spark-submit` in `tests/fixtures/` hold one or
//! two containers and at most three volumes.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Most entries of all lists in a pod, wherever they are (env, mounts, tolerations, args…).
pub const MAX_LIST_ENTRIES: usize = 65_536;
/// Most volumes (`spec.volumes`): 16,384 typed volumes take at most 80 MiB while parsed.
pub const MAX_VOLUMES: usize = 16_384;
/// Most containers of all kinds (`containers`, `initContainers`, `ephemeralContainers`).
pub const MAX_CONTAINERS: usize = 256;

/// Pods up to this size are parsed without counting first (the executor Spark writes is about
/// 5 KB): were all of it minimal volumes, at 12 bytes of JSON each, they would take at most
/// 7 MiB while parsed.
pub const COUNT_ABOVE_BYTES: usize = 16 * 1024;

/// What a pod's lists hold.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ListCounts {
    pub entries: usize,
    pub volumes: usize,
    pub containers: usize,
}

impl ListCounts {
    /// Count the lists of a pod's JSON text. `None` when the text is not JSON: the parse
    /// that follows names that error.
    pub fn of(pod_json: &str) -> Option<ListCounts> {
        let mut counts = ListCounts::default();
        let mut de = serde_json::Deserializer::from_str(pod_json);
        Walk {
            at: Place::Pod,
            counts: &mut counts,
        }
        .deserialize(&mut de)
        .ok()?;
        Some(counts)
    }

    /// Why a pod with these lists is not evaluated, or `None` when it is within the limits.
    pub fn over_limit(&self) -> Option<String> {
        let over = |what: &str, n: usize, max: usize| {
            format!(
                "{what} has {n} entries, more than the {max} this webhook evaluates \
                 (each entry takes the full size of its type in memory, however little \
                 its JSON holds)"
            )
        };
        if self.volumes > MAX_VOLUMES {
            Some(over("spec.volumes", self.volumes, MAX_VOLUMES))
        } else if self.containers > MAX_CONTAINERS {
            Some(over(
                "spec.containers, initContainers and ephemeralContainers together",
                self.containers,
                MAX_CONTAINERS,
            ))
        } else if self.entries > MAX_LIST_ENTRIES {
            Some(over(
                "the pod's lists together",
                self.entries,
                MAX_LIST_ENTRIES,
            ))
        } else {
            None
        }
    }
}

/// Where in the pod the walk is: only `spec`'s own lists are told apart.
#[derive(Clone, Copy, PartialEq)]
enum Place {
    Pod,
    Spec,
    Volumes,
    Containers,
    Elsewhere,
}

/// A pass over JSON that counts list entries and keeps nothing.
struct Walk<'c> {
    at: Place,
    counts: &'c mut ListCounts,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Walk { at, counts } = self;
        loop {
            let inner = Walk {
                at: Place::Elsewhere,
                counts: &mut *counts,
            };
            if seq.next_element_seed(inner)?.is_none() {
                return Ok(());
            }
            counts.entries += 1;
            match at {
                Place::Volumes => counts.volumes += 1,
                Place::Containers => counts.containers += 1,
                _ => {}
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Walk { at, counts } = self;
        while let Some(next) = map.next_key_seed(Key(at))? {
            map.next_value_seed(Walk {
                at: next,
                counts: &mut *counts,
            })?;
        }
        Ok(())
    }
}

/// A key of an object at `.0`, read as the place its value is at; compared as it is read,
/// decoded (so an escaped key is found too), without being kept.
struct Key(Place);

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Place;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Place, D::Error> {
        de.deserialize_str(self)
    }
}

impl Visitor<'_> for Key {
    type Value = Place;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<Place, E> {
        Ok(match (self.0, key) {
            (Place::Pod, "spec") => Place::Spec,
            (Place::Spec, "volumes") => Place::Volumes,
            (Place::Spec, "containers" | "initContainers" | "ephemeralContainers") => {
                Place::Containers
            }
            _ => Place::Elsewhere,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_the_lists_of_a_recorded_pod() {
        let pod = crate::test_fixtures::fixture_json("spark-3.5-executor-python.json");
        let counts = ListCounts::of(&pod.to_string()).unwrap();
        let spec = &pod["spec"];
        assert_eq!(counts.volumes, spec["volumes"].as_array().unwrap().len());
        assert_eq!(counts.containers, 1);
        assert!(counts.entries > counts.volumes, "{counts:?}");
        assert_eq!(counts.over_limit(), None);
    }

    #[test]
    fn each_limit_names_the_list_over_it() {
        let name = |i: usize| json!({"name": format!("x{i}")});
        let list = |n: usize| (0..n).map(name).collect::<Vec<_>>();
        let cases = [
            (
                json!({"spec": {"volumes": list(MAX_VOLUMES + 1)}}),
                Some("spec.volumes has 16385 entries"),
            ),
            (json!({"spec": {"volumes": list(MAX_VOLUMES)}}), None),
            (
                json!({"spec": {"containers": list(200), "initContainers": list(50),
                                "ephemeralContainers": list(7)}}),
                Some("ephemeralContainers together has 257 entries"),
            ),
            (
                json!({"spec": {"containers": [{"name": "c", "env": list(MAX_LIST_ENTRIES)}]}}),
                Some("the pod's lists together has 65537 entries"),
            ),
            // Only spec's own lists count as volumes and containers.
            (
                json!({"metadata": {"volumes": list(MAX_VOLUMES + 1)},
                       "spec": {"x": {"containers": list(300)}}}),
                None,
            ),
            (
                json!({"spec": {"\u{0076}olumes": list(MAX_VOLUMES + 1)}}),
                Some("spec.volumes"),
            ),
        ];
        for (pod, want) in cases {
            let counts = ListCounts::of(&pod.to_string()).unwrap();
            match (counts.over_limit(), want) {
                (None, None) => {}
                (Some(why), Some(want)) => assert!(why.contains(want), "{why}"),
                (got, want) => panic!("{got:?}, wanted {want:?} ({counts:?})"),
            }
        }
    }

    #[test]
    fn an_escaped_key_is_read_decoded() {
        let text = r#"{"spec": {"vol\u0075mes": [{"name": "a"}, {"name": "b"}]}}"#;
        assert_eq!(ListCounts::of(text).unwrap().volumes, 2);
    }

    #[test]
    fn text_that_is_not_json_is_left_to_the_parse() {
        assert_eq!(ListCounts::of("{\"spec\": ["), None);
    }
}
