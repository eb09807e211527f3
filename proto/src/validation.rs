//! Transaction validation codes: Fabric's, plus Mercato's own between 26 and 253.

use std::fmt;

use crate::TxValidationCode;

/// A transaction's validation code as recorded in a block's TRANSACTIONS_FILTER: one byte. Fabric's
/// codes are 0–25, 254 and 255; Mercato adds its own between 26 and 253, listed here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ValidationCode(pub u8);

impl ValidationCode {
    /// The transaction is valid and its writes are committed.
    pub const VALID: ValidationCode = ValidationCode(0);
    /// Mercato: a commutative delta would take a value below its lower bound.
    pub const DELTA_BOUND_VIOLATION: ValidationCode = ValidationCode(26);
    /// Mercato: a delta's target does not hold a signed 64-bit decimal number, or the sum overflows.
    pub const DELTA_INVALID_VALUE: ValidationCode = ValidationCode(27);

    /// Whether the transaction is valid.
    pub fn is_valid(self) -> bool {
        self == Self::VALID
    }

    /// The code's name: Fabric's (`MVCC_READ_CONFLICT`) or Mercato's.
    pub fn name(self) -> &'static str {
        match self {
            Self::DELTA_BOUND_VIOLATION => "DELTA_BOUND_VIOLATION",
            Self::DELTA_INVALID_VALUE => "DELTA_INVALID_VALUE",
            ValidationCode(c) => TxValidationCode::try_from(c as i32)
                .map(|c| c.as_str_name())
                .unwrap_or("UNKNOWN_CODE"),
        }
    }
}

impl From<TxValidationCode> for ValidationCode {
    fn from(code: TxValidationCode) -> Self {
        // Every Fabric code fits in a byte (the largest is 255).
        ValidationCode(code as i32 as u8)
    }
}

impl fmt::Display for ValidationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            ValidationCode::from(TxValidationCode::MvccReadConflict).name(),
            "MVCC_READ_CONFLICT"
        );
        assert_eq!(ValidationCode(26).name(), "DELTA_BOUND_VIOLATION");
        assert_eq!(ValidationCode(254).name(), "NOT_VALIDATED");
        assert_eq!(ValidationCode(100).name(), "UNKNOWN_CODE");
        assert!(ValidationCode(0).is_valid());
    }
}
