//! Endorsement policies, judged in stage 2 in block order: the policy that applies to a
//! transaction is the one of the chaincode definition live at that transaction (committed, or
//! committed by an earlier valid transaction of the same block), so every peer judges the same
//! transaction by the same policy however its pipeline is timed. The signatures themselves were
//! verified in stage 1; this is identity matching only.

use mercato_proto::{TxValidationCode, ValidationCode};

use super::verify::CheckedTx;
use super::{StateReader, ValidationContext};
use crate::error::Result;
use crate::lifecycle;

/// Checks that every namespace `tx` invokes or writes is defined and that the endorsers satisfy
/// its policy; `_lifecycle` writes are judged by the lifecycle's own rules. The outer `Result` is
/// a storage fault, the inner one the transaction's failure code.
pub fn check(
    state: &dyn StateReader,
    tx: &CheckedTx,
    ctx: &ValidationContext,
) -> Result<std::result::Result<(), ValidationCode>> {
    let mut policies = Vec::with_capacity(tx.namespaces.len());
    for ns in &tx.namespaces {
        if ns == lifecycle::LIFECYCLE {
            continue;
        }
        match ctx.chaincodes.endorsement_policy(state, ns)? {
            Some(policy) => policies.push(policy),
            None => return Ok(Err(TxValidationCode::InvalidChaincode.into())),
        }
    }
    if !policies
        .iter()
        .all(|policy| policy.evaluate(&tx.endorsers, &ctx.org_policies))
    {
        return Ok(Err(TxValidationCode::EndorsementPolicyFailure.into()));
    }
    if tx.namespaces.iter().any(|ns| ns == lifecycle::LIFECYCLE) {
        let writes = tx.rwset.as_ref().and_then(|rw| {
            rw.namespaces
                .iter()
                .find(|ns| ns.namespace == lifecycle::LIFECYCLE)
        });
        if let Some(writes) = writes {
            return lifecycle::check_writes(state, writes, tx, ctx);
        }
    }
    Ok(Ok(()))
}
