//! What an operation did to each piece of material, printed in kubeadm's
//! `[phase] message` style.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    Authority,
    Certificate,
    ServiceAccountKey,
    Kubeconfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Generated,
    Reused,
    /// Trusted but not able to sign: the CA key is absent.
    ReusedExternal,
    /// Replaced because the existing one no longer fits; says why.
    Reissued {
        reason: String,
    },
    Renewed,
    Skipped {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportItem {
    pub kind: ItemKind,
    pub name: String,
    pub action: Action,
}

impl fmt::Display for ReportItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (phase, what) = match self.kind {
            ItemKind::Authority => ("certs", "certificate authority"),
            ItemKind::Certificate => ("certs", "certificate and key"),
            ItemKind::ServiceAccountKey => ("certs", "key pair"),
            ItemKind::Kubeconfig => ("kubeconfig", "kubeconfig file"),
        };
        let name = &self.name;
        match &self.action {
            Action::Generated => write!(f, "[{phase}] Generated {name:?} {what}"),
            Action::Reused => write!(f, "[{phase}] Using existing {name:?} {what}"),
            Action::ReusedExternal => write!(
                f,
                "[{phase}] Using existing {name:?} {what} (external: its key is not present)"
            ),
            Action::Reissued { reason } => {
                write!(f, "[{phase}] Regenerated {name:?} {what}: {reason}")
            }
            Action::Renewed => write!(f, "[{phase}] Renewed {name:?} {what}"),
            Action::Skipped { reason } => write!(f, "[{phase}] Skipped {name:?}: {reason}"),
        }
    }
}

/// Every item an operation looked at, in the order it handled them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub items: Vec<ReportItem>,
}

impl Report {
    pub(crate) fn push(&mut self, kind: ItemKind, name: impl Into<String>, action: Action) {
        self.items.push(ReportItem {
            kind,
            name: name.into(),
            action,
        });
    }

    pub fn action_of(&self, name: &str) -> Option<&Action> {
        self.items
            .iter()
            .find(|i| i.name == name)
            .map(|i| &i.action)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for item in &self.items {
            writeln!(f, "{item}")?;
        }
        Ok(())
    }
}
