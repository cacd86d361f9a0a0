//! Dependency order of services: a topological sort that names the
//! unknown dependency or the cycle it finds.

use std::collections::{BTreeMap, BTreeSet};

use super::ServiceError;

/// Services in start order (every service after its dependencies; ties by
/// name). With `allow_unknown`, dependencies on services not (yet) added
/// are ignored, so cycles can be found while services are still added.
pub fn start_order(
    deps: &BTreeMap<String, Vec<String>>,
    allow_unknown: bool,
) -> Result<Vec<String>, ServiceError> {
    for (service, wanted) in deps {
        for dependency in wanted {
            if !deps.contains_key(dependency) && !allow_unknown {
                return Err(ServiceError::UnknownDependency {
                    service: service.clone(),
                    dependency: dependency.clone(),
                });
            }
        }
    }
    let mut remaining: BTreeMap<&str, BTreeSet<&str>> = deps
        .iter()
        .map(|(name, wanted)| {
            let known = wanted
                .iter()
                .filter(|d| deps.contains_key(*d))
                .map(String::as_str)
                .collect();
            (name.as_str(), known)
        })
        .collect();
    let mut order = Vec::with_capacity(deps.len());
    while !remaining.is_empty() {
        let ready: Vec<&str> = remaining
            .iter()
            .filter(|(_, wanted)| wanted.is_empty())
            .map(|(name, _)| *name)
            .collect();
        if ready.is_empty() {
            return Err(ServiceError::Cycle {
                services: remaining.keys().map(|s| (*s).to_owned()).collect(),
            });
        }
        for name in ready {
            remaining.remove(name);
            for wanted in remaining.values_mut() {
                wanted.remove(name);
            }
            order.push(name.to_owned());
        }
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(name, deps)| {
                (
                    (*name).to_owned(),
                    deps.iter().map(|d| (*d).to_owned()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn dependencies_come_first() {
        let order = start_order(
            &graph(&[
                ("kubelet", &["containerd"]),
                ("containerd", &[]),
                ("a", &[]),
            ]),
            false,
        )
        .expect("order");
        assert_eq!(order, ["a", "containerd", "kubelet"]);
    }

    #[test]
    fn cycles_and_unknown_dependencies_are_errors() {
        let cycle = start_order(&graph(&[("a", &["b"]), ("b", &["a"]), ("c", &[])]), true)
            .expect_err("cycle");
        assert_eq!(cycle.to_string(), "dependency cycle between a, b");
        let unknown = start_order(&graph(&[("a", &["x"])]), false).expect_err("unknown");
        assert_eq!(
            unknown.to_string(),
            "service a depends on unknown service x"
        );
        assert!(start_order(&graph(&[("a", &["x"])]), true).is_ok());
    }
}
