//! The platform's figures in the Prometheus text exposition format
//! (`GET /metrics`).
//!
//! What it is: an [`Exposition`] that a scrape fills from the snapshots the
//! components already keep (their counters are plain atomics on their hot
//! paths, never a registry lookup), plus [`Histogram`], the one latency and
//! size histogram kind components record into as events happen (persistence
//! commits, queries). Rendering is the `prometheus` crate's text encoder
//! (format 0.0.4), so what Prometheus, `promtool check metrics` and every
//! scraper read is the reference encoding, not ours.
//!
//! Naming: every figure starts with `millwright_`; counters end in
//! `_total`, durations are in seconds (`_seconds`), sizes in bytes
//! (`_bytes`), as Prometheus' naming conventions ask.
//!
//! What it is not: a place that holds state between scrapes (apart from
//! histograms, which are cumulative by nature), or an HTTP server (that is
//! `api`).

use prometheus::core::{Collector, MetricVec, MetricVecBuilder};
use prometheus::{Encoder, HistogramOpts, IntCounterVec, Opts, Registry};

/// Why an exposition could not be built: a bad name or label set (a bug of
/// the caller; a test renders every figure the platform has).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("metric {name}: {source}")]
    Metric {
        name: String,
        #[source]
        source: prometheus::Error,
    },
    #[error("encoding the exposition: {0}")]
    Encode(#[source] prometheus::Error),
}

/// A component whose figures a scrape collects (`GET /metrics` asks every
/// source it was given). Called on a blocking thread: it may take a lock or
/// read file sizes, but should not take long.
pub trait Source: Send + Sync {
    fn collect(&self, out: &mut Exposition);
}

/// The content type of [`Exposition::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every figure of one scrape.
pub struct Exposition {
    registry: Registry,
    error: Option<Error>,
}

impl Default for Exposition {
    fn default() -> Self {
        Exposition::new()
    }
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition {
            registry: Registry::new(),
            error: None,
        }
    }

    fn register(&mut self, name: &str, c: Box<dyn Collector>) {
        if let Err(source) = self.registry.register(c) {
            self.error.get_or_insert(Error::Metric {
                name: name.to_string(),
                source,
            });
        }
    }

    /// A counter (`name` should end in `_total`).
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.counters(name, help, &[], [(Vec::<&str>::new(), value)]);
    }

    /// A gauge.
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.gauges(name, help, &[], [(Vec::<&str>::new(), value)]);
    }

    /// A counter with labels: one sample per set of label values (in the
    /// order of `labels`).
    pub fn counters<'a, L>(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
        samples: impl IntoIterator<Item = (L, u64)>,
    ) where
        L: AsRef<[&'a str]>,
    {
        let vec = IntCounterVec::new(Opts::new(name, help), labels);
        self.labelled(name, vec, samples, |c, v| c.inc_by(v));
    }

    /// A gauge with labels: one sample per set of label values.
    pub fn gauges<'a, L>(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
        samples: impl IntoIterator<Item = (L, f64)>,
    ) where
        L: AsRef<[&'a str]>,
    {
        let vec = prometheus::GaugeVec::new(Opts::new(name, help), labels);
        self.labelled(name, vec, samples, |g, v| g.set(v));
    }

    /// Sets one sample of `vec` per set of label values, then registers it;
    /// the first error is kept for [`Exposition::render`].
    fn labelled<'a, B, L, V>(
        &mut self,
        name: &str,
        vec: prometheus::Result<MetricVec<B>>,
        samples: impl IntoIterator<Item = (L, V)>,
        set: impl Fn(&B::M, V),
    ) where
        B: MetricVecBuilder + 'static,
        L: AsRef<[&'a str]>,
    {
        let fail = |source| Error::Metric {
            name: name.to_string(),
            source,
        };
        let vec = match vec {
            Ok(v) => v,
            Err(source) => {
                self.error.get_or_insert(fail(source));
                return;
            }
        };
        for (values, v) in samples {
            match vec.get_metric_with_label_values(values.as_ref()) {
                Ok(m) => set(&m, v),
                Err(source) => {
                    self.error.get_or_insert(fail(source));
                }
            }
        }
        self.register(name, Box::new(vec));
    }

    /// A histogram a component keeps recording into.
    pub fn histogram(&mut self, h: &Histogram) {
        self.register(&h.name, Box::new(h.inner.clone()));
    }

    /// A labelled counter a component keeps counting into.
    pub fn family(&mut self, f: &CounterFamily) {
        self.register(&f.name, Box::new(f.inner.clone()));
    }

    /// The exposition in the Prometheus text format ([`CONTENT_TYPE`]).
    pub fn render(self) -> Result<String, Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .map_err(Error::Encode)?;
        String::from_utf8(out).map_err(|e| {
            Error::Encode(prometheus::Error::Msg(format!(
                "the encoder wrote invalid UTF-8: {e}"
            )))
        })
    }
}

/// Bucket bounds for durations from 100 µs to 10 s, in seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Bucket bounds for counts (operations per batch, points per write):
/// powers of 4 from 1 to about a million.
pub const COUNT_BUCKETS: &[f64] = &[
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0,
];

/// A cumulative histogram recorded into as events happen (lock-free: a few
/// atomic additions per observation) and rendered at every scrape.
#[derive(Clone)]
pub struct Histogram {
    name: String,
    inner: prometheus::Histogram,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Histogram({})", self.name)
    }
}

impl Histogram {
    /// A histogram with these bucket upper bounds (ascending). Panics only
    /// on a bad name or buckets, which are constants of the program.
    pub fn new(name: &str, help: &str, buckets: &[f64]) -> Histogram {
        let inner = prometheus::Histogram::with_opts(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        )
        .unwrap_or_else(|e| panic!("histogram {name}: {e}"));
        Histogram {
            name: name.to_string(),
            inner,
        }
    }

    /// Records one observation.
    pub fn observe(&self, v: f64) {
        self.inner.observe(v);
    }

    /// How many observations so far.
    pub fn count(&self) -> u64 {
        self.inner.get_sample_count()
    }

    /// The sum of the observations so far.
    pub fn sum(&self) -> f64 {
        self.inner.get_sample_sum()
    }
}

/// A labelled counter counted into as events happen (requests by route
/// and status): one atomic per label set. Its label values must come from
/// a bounded set (route templates, status codes), never from input.
#[derive(Clone)]
pub struct CounterFamily {
    name: String,
    inner: IntCounterVec,
}

impl std::fmt::Debug for CounterFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CounterFamily({})", self.name)
    }
}

impl CounterFamily {
    /// Panics only on a bad name or labels, which are constants of the
    /// program.
    pub fn new(name: &str, help: &str, labels: &[&str]) -> CounterFamily {
        let inner = IntCounterVec::new(Opts::new(name, help), labels)
            .unwrap_or_else(|e| panic!("counter family {name}: {e}"));
        CounterFamily {
            name: name.to_string(),
            inner,
        }
    }

    /// Adds one to the counter of these label values (ignored when their
    /// number is wrong: a bug, caught by the tests that render it).
    pub fn inc(&self, values: &[&str]) {
        if let Ok(c) = self.inner.get_metric_with_label_values(values) {
            c.inc();
        }
    }

    /// The count of these label values.
    pub fn get(&self, values: &[&str]) -> u64 {
        self.inner
            .get_metric_with_label_values(values)
            .map(|c| c.get())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_labels_and_histograms() {
        let h = Histogram::new(
            "millwright_test_seconds",
            "A test latency.",
            LATENCY_BUCKETS,
        );
        h.observe(0.003);
        h.observe(2.0);
        let mut e = Exposition::new();
        e.counter("millwright_test_total", "A test counter.", 7);
        e.gauge("millwright_test_gauge", "A test gauge.", 2.5);
        e.counters(
            "millwright_test_drops_total",
            "Drops by queue.",
            &["queue"],
            [(["taps"], 3), (["rules"], 0)],
        );
        e.histogram(&h);
        let requests =
            CounterFamily::new("millwright_test_requests_total", "Requests.", &["route"]);
        requests.inc(&["/a/{id}"]);
        requests.inc(&["/a/{id}"]);
        e.family(&requests);
        let text = e.render().unwrap();
        assert!(
            text.contains("millwright_test_requests_total{route=\"/a/{id}\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE millwright_test_total counter\nmillwright_test_total 7\n"),
            "{text}"
        );
        assert!(text.contains("millwright_test_gauge 2.5\n"), "{text}");
        assert!(
            text.contains("millwright_test_drops_total{queue=\"taps\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("millwright_test_drops_total{queue=\"rules\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("millwright_test_seconds_bucket{le=\"0.005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("millwright_test_seconds_bucket{le=\"+Inf\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("millwright_test_seconds_count 2\n"), "{text}");
        assert_eq!(h.count(), 2);
    }

    #[test]
    fn a_bad_name_or_a_duplicate_is_an_error_not_a_panic() {
        let mut e = Exposition::new();
        e.counter("bad name", "x", 1);
        assert!(matches!(e.render(), Err(Error::Metric { .. })));
        let mut e = Exposition::new();
        e.counter("millwright_a_total", "x", 1);
        e.counter("millwright_a_total", "x", 2);
        assert!(e.render().is_err());
        let mut e = Exposition::new();
        e.counters("millwright_b_total", "x", &["queue"], [(["a", "b"], 1)]);
        assert!(e.render().is_err());
    }
}
