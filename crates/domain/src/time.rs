use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct UnixMillis(pub i64);

impl UnixMillis {
    pub fn now() -> Self {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        Self(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
    }

    pub fn from_proto(ts: &prost_types::Timestamp) -> Self {
        Self(ts.seconds.saturating_mul(1000).saturating_add(i64::from(ts.nanos) / 1_000_000))
    }

    pub fn to_proto(self) -> prost_types::Timestamp {
        prost_types::Timestamp {
            seconds: self.0.div_euclid(1000),
            nanos: i32::try_from(self.0.rem_euclid(1000) * 1_000_000).unwrap_or(0),
        }
    }

    pub fn saturating_add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
    }

    pub fn saturating_sub(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_round_trip_keeps_milliseconds_including_before_epoch() {
        for ms in [0, 1, 999, 1_700_000_000_123, -1, -1001] {
            let t = UnixMillis(ms);
            assert_eq!(UnixMillis::from_proto(&t.to_proto()), t, "{ms}");
        }
    }
}
