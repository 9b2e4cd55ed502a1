//! Validity periods computed from a caller-supplied current time.

use time::OffsetDateTime;

use crate::PkiError;

/// Certificates start this long before "now", so that a peer whose clock is
/// slightly behind ours does not see them as not yet valid.
const CLOCK_SLACK_SECS: u64 = 3600;
const SECS_PER_DAY: u64 = 86_400;

/// The not-before / not-after pair of a certificate, at second precision
/// (X.509 times have no finer resolution).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Validity {
    pub(crate) not_before: OffsetDateTime,
    pub(crate) not_after: OffsetDateTime,
}

impl Validity {
    /// Valid from `now_ms` minus one hour of slack until `now_ms` plus `days`.
    pub(crate) fn starting_at(now_ms: u64, days: u32) -> Result<Self, PkiError> {
        if days == 0 {
            return Err(PkiError::InvalidValidity(
                "a certificate must be valid for at least one day".into(),
            ));
        }
        let now_secs = now_ms / 1000;
        let not_after_secs = now_secs
            .checked_add(u64::from(days) * SECS_PER_DAY)
            .ok_or_else(|| PkiError::InvalidValidity("end time overflows".into()))?;
        Ok(Validity {
            not_before: to_datetime(now_secs.saturating_sub(CLOCK_SLACK_SECS))?,
            not_after: to_datetime(not_after_secs)?,
        })
    }

    /// The end of the period in Unix milliseconds.
    pub(crate) fn not_after_ms(&self) -> u64 {
        u64::try_from(self.not_after.unix_timestamp())
            .unwrap_or(0)
            .saturating_mul(1000)
    }
}

fn to_datetime(secs: u64) -> Result<OffsetDateTime, PkiError> {
    i64::try_from(secs)
        .ok()
        .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
        .ok_or_else(|| {
            PkiError::InvalidValidity(format!(
                "{secs} seconds after 1970 is beyond what a certificate can hold"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_an_hour_early_and_ends_after_the_given_days() {
        let now_ms = 1_700_000_000_123;
        let v = Validity::starting_at(now_ms, 2).unwrap();
        assert_eq!(v.not_before.unix_timestamp(), 1_700_000_000 - 3600);
        assert_eq!(v.not_after.unix_timestamp(), 1_700_000_000 + 2 * 86_400);
        assert_eq!(v.not_after_ms(), (1_700_000_000 + 2 * 86_400) * 1000);
    }

    #[test]
    fn slack_does_not_underflow_near_the_epoch() {
        let v = Validity::starting_at(5_000, 1).unwrap();
        assert_eq!(v.not_before.unix_timestamp(), 0);
    }

    #[test]
    fn zero_days_and_far_futures_are_refused() {
        assert!(Validity::starting_at(0, 0).is_err());
        assert!(Validity::starting_at(u64::MAX, 1).is_err());
        assert!(Validity::starting_at(300_000_000_000_000, 1).is_err());
    }
}
