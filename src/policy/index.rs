//! Which policies can apply to a pod of a role in a namespace: built once per policy set,
//! so that policies for the other role or for other namespaces cost nothing per admission.

use std::collections::HashMap;

use super::{Mode, Policy};
use crate::spark_pod::SparkRole;

/// Which policies can match a pod of a given role in a given namespace, so that policies
/// for another role or for other namespaces (by exact name) cost nothing per admission.
/// `Off` policies are not indexed at all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Index {
    driver: RoleIndex,
    executor: RoleIndex,
    connect_server: RoleIndex,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct RoleIndex {
    /// Policies whose `namespaces` are all exact names, under each name.
    by_namespace: HashMap<String, Vec<usize>>,
    /// Policies for every namespace, or with a `*` glob among their namespaces.
    anywhere: Vec<usize>,
}

impl Index {
    /// Index `policies` (in application order; positions are kept).
    pub fn build(policies: &[Policy]) -> Index {
        let mut index = Index::default();
        for (i, p) in policies
            .iter()
            .enumerate()
            .filter(|(_, p)| p.mode != Mode::Off)
        {
            let roles = &p.matcher.roles.value;
            // A pod role is indexed once, however many of the policy's roles cover it.
            for pod_role in SparkRole::ALL {
                if !roles.iter().any(|r| r.covers(pod_role)) {
                    continue;
                }
                let r = index.role_mut(pod_role);
                let names = &p.matcher.namespaces;
                if names.is_empty() || names.iter().any(|n| n.as_str().contains('*')) {
                    r.anywhere.push(i);
                } else {
                    for n in names {
                        let list = r.by_namespace.entry(n.as_str().to_string()).or_default();
                        if list.last() != Some(&i) {
                            list.push(i);
                        }
                    }
                }
            }
        }
        index
    }

    fn role_mut(&mut self, role: SparkRole) -> &mut RoleIndex {
        match role {
            SparkRole::Driver => &mut self.driver,
            SparkRole::Executor => &mut self.executor,
            SparkRole::ConnectServer => &mut self.connect_server,
        }
    }

    fn role(&self, role: SparkRole) -> &RoleIndex {
        match role {
            SparkRole::Driver => &self.driver,
            SparkRole::Executor => &self.executor,
            SparkRole::ConnectServer => &self.connect_server,
        }
    }

    /// Candidate positions, ascending (= application order).
    pub fn candidates(&self, role: SparkRole, namespace: &str) -> Vec<usize> {
        let r = self.role(role);
        let scoped = r
            .by_namespace
            .get(namespace)
            .map_or(&[][..], |v| v.as_slice());
        let (a, b) = (&r.anywhere[..], scoped);
        let mut out = Vec::with_capacity(a.len() + b.len());
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            if j == b.len() || (i < a.len() && a[i] < b[j]) {
                out.push(a[i]);
                i += 1;
            } else {
                out.push(b[j]);
                j += 1;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::PolicySet;
    use crate::spark_pod::SparkRole;

    const BASE: &str = "apiVersion: spark-admission.dev/v1alpha1\nkind: SparkPodPolicy\n";
    const TOL: &str = "  tolerations:\n  - {key: a, operator: Exists}";

    fn policy(name: &str, priority: i32, matcher: &str, body: &str) -> String {
        format!("---\n{BASE}metadata:\n  name: {name}\nspec:\n  priority: {priority}\n  match:\n{matcher}\n{body}\n")
    }

    fn set(yaml: &str) -> PolicySet {
        PolicySet::from_sources(&[("p.yaml", yaml)]).unwrap()
    }

    #[test]
    fn index_skips_other_roles_namespaces_and_off_policies() {
        let yaml = [
            policy(
                "a",
                0,
                "    roles: [executor]\n    namespaces: [etl, ml]",
                TOL,
            ),
            policy("b", 1, "    roles: [executor]", TOL),
            policy(
                "c",
                2,
                "    roles: [driver, executor]\n    namespaces: [team-*]",
                TOL,
            ),
            policy(
                "d",
                3,
                "    roles: [executor]\n    namespaces: [etl]",
                &format!("  mode: Off\n{TOL}"),
            ),
            policy("e", 4, "    roles: [driver]", TOL),
        ]
        .concat();
        let s = set(&yaml);
        let names = |role, ns| -> Vec<String> {
            s.index()
                .candidates(role, ns)
                .into_iter()
                .map(|i| s.policies()[i].name.clone())
                .collect()
        };
        assert_eq!(names(SparkRole::Executor, "etl"), ["a", "b", "c"]);
        assert_eq!(names(SparkRole::Executor, "ml"), ["a", "b", "c"]);
        assert_eq!(names(SparkRole::Executor, "other"), ["b", "c"]);
        assert_eq!(names(SparkRole::Driver, "etl"), ["c", "e"]);
        // `driver` covers SparkConnect servers.
        assert_eq!(names(SparkRole::ConnectServer, "etl"), ["c", "e"]);
    }

    #[test]
    fn connect_server_policies_apply_to_connect_servers_only() {
        let yaml = [
            policy("a", 0, "    roles: [connect-server]", TOL),
            policy("b", 1, "    roles: [driver, connect-server]", TOL),
            policy("c", 2, "    roles: [executor]", TOL),
        ]
        .concat();
        let s = set(&yaml);
        let names = |role| -> Vec<String> {
            s.index()
                .candidates(role, "ns")
                .into_iter()
                .map(|i| s.policies()[i].name.clone())
                .collect()
        };
        assert_eq!(names(SparkRole::ConnectServer), ["a", "b"]);
        assert_eq!(names(SparkRole::Driver), ["b"]);
        assert_eq!(names(SparkRole::Executor), ["c"]);
    }
}
