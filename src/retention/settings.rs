//! The retention settings kept in the vault: policies per source and points' protection.
//! Each change is sealed in the store as it is made, so a catalog rebuild keeps it.

use crate::catalog::sealed::Event;
use crate::catalog::RecoveryPoint;
use crate::error::Result;
use crate::retention::Policy;
use crate::vault::Vault;

/// Every policy set: (source, policy as JSON), the default under the empty source.
pub fn policies(vault: &Vault) -> Result<Vec<(String, String)>> {
    Ok(vault.catalog().policies()?)
}

/// Sets the policy of `source` (`None`: the default for every source), or clears it
/// (`policy` `None`).
pub fn set_policy(vault: &Vault, source: Option<&str>, policy: Option<&Policy>) -> Result<()> {
    let policy = policy.map(serde_json::to_string).transpose().map_err(|e| {
        crate::error::Error::Internal {
            what: format!("a policy does not serialise: {e}"),
        }
    })?;
    crate::rebuild::commit_change(
        vault,
        &Event::Policy {
            at_ns: crate::time::now_ns(),
            source: source.unwrap_or_default().to_string(),
            policy,
        },
    )
}

/// Protects `point` from forgetting until a time (ns, UTC; `i64::MAX` forever), or no longer
/// (`None`).
pub fn protect(vault: &Vault, point: &RecoveryPoint, until_ns: Option<i64>) -> Result<()> {
    crate::rebuild::commit_change(
        vault,
        &Event::Protect {
            at_ns: crate::time::now_ns(),
            point: point.id.0.clone(),
            until_ns,
        },
    )
}
