//! The fleet's figures for `/metrics`: devices by presence state.

use crate::Fleet;

impl metrics::Source for Fleet {
    fn collect(&self, out: &mut metrics::Exposition) {
        match self.counts(None) {
            Ok(groups) => {
                let c = groups.get("all").copied().unwrap_or_default();
                out.gauges(
                    "millwright_devices",
                    "Registered devices by presence state.",
                    &["state"],
                    [
                        (["online"], c.online as f64),
                        (["offline"], c.offline as f64),
                        (["inactive"], c.inactive as f64),
                        (["never_connected"], c.never_connected as f64),
                    ],
                );
            }
            Err(e) => tracing::warn!(error = %e, "device counts unavailable for /metrics"),
        }
    }
}
