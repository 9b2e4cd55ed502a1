//! Results in the shapes of the Prometheus HTTP API (`/api/v1/query`,
//! `/api/v1/query_range`), ready to serialise with serde.

use serde::ser::{Serialize, SerializeTuple, Serializer};

use crate::error::Error;
use crate::storage::Labels;

/// The `data` member of a successful answer:
/// `{"resultType":"vector","result":[...]}` and likewise for `matrix` and
/// `scalar`.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
pub enum QueryData {
    /// One value per series at the evaluation time.
    Vector(Vec<InstantSample>),
    /// Values per series over time (range queries, or an instant query of
    /// a range selector).
    Matrix(Vec<RangeSeries>),
    /// A single number at the evaluation time.
    Scalar(SamplePair),
}

/// A series of an instant vector: `{"metric":{...},"value":[t,"v"]}`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct InstantSample {
    /// The series' labels.
    pub metric: Labels,
    /// Its value.
    pub value: SamplePair,
}

/// A series of a matrix: `{"metric":{...},"values":[[t,"v"],...]}`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RangeSeries {
    /// The series' labels.
    pub metric: Labels,
    /// Its values, ascending by time.
    pub values: Vec<SamplePair>,
}

/// A timestamp and a value, serialised as Prometheus does: `[1700000000.5,"42"]`
/// (seconds as a JSON number, the value as a string).
#[derive(Clone, Copy, Debug)]
pub struct SamplePair {
    /// Milliseconds since the Unix epoch.
    pub ts: i64,
    /// The value.
    pub value: f64,
}

impl Serialize for SamplePair {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(2)?;
        if self.ts % 1000 == 0 {
            t.serialize_element(&(self.ts / 1000))?;
        } else {
            t.serialize_element(&(self.ts as f64 / 1000.0))?;
        }
        t.serialize_element(&format_value(self.value))?;
        t.end()
    }
}

/// A value as Prometheus writes it: the shortest decimal that reads back
/// the same, without exponent (`1`, `0.5`, `1e21` as digits), `NaN`,
/// `+Inf`, `-Inf`.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// The whole body of an answer: `{"status":"success","data":...}` or
/// `{"status":"error","errorType":"bad_data","error":"..."}`. `T` is
/// [`QueryData`] for queries, `Vec<Labels>` for `/api/v1/series`,
/// `Vec<String>` for label names and values.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Response<T = QueryData> {
    /// The request succeeded.
    Success {
        /// The result.
        data: T,
    },
    /// The query failed.
    Error {
        /// `bad_data`, `execution` or `internal` (see [`Error::error_type`]).
        #[serde(rename = "errorType")]
        error_type: &'static str,
        /// The message.
        error: String,
    },
}

impl<T> From<Result<T, Error>> for Response<T> {
    fn from(r: Result<T, Error>) -> Response<T> {
        match r {
            Ok(data) => Response::Success { data },
            Err(e) => Response::Error {
                error_type: e.error_type(),
                error: e.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_format_like_prometheus() {
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(0.5), "0.5");
        assert_eq!(format_value(-2.25), "-2.25");
        assert_eq!(format_value(1e21), "1000000000000000000000");
        assert_eq!(format_value(1e-7), "0.0000001");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(0.1 + 0.2), "0.30000000000000004");
    }

    #[test]
    fn shapes() {
        let mut metric = Labels::new();
        metric.insert("__name__".into(), "up".into());
        let v = QueryData::Vector(vec![InstantSample {
            metric: metric.clone(),
            value: SamplePair {
                ts: 1_700_000_000_500,
                value: 1.0,
            },
        }]);
        assert_eq!(
            serde_json::to_string(&Response::Success { data: v }).unwrap(),
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up"},"value":[1700000000.5,"1"]}]}}"#
        );
        let m = QueryData::Matrix(vec![RangeSeries {
            metric,
            values: vec![
                SamplePair {
                    ts: 1000,
                    value: 0.5,
                },
                SamplePair {
                    ts: 2000,
                    value: f64::NAN,
                },
            ],
        }]);
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"resultType":"matrix","result":[{"metric":{"__name__":"up"},"values":[[1,"0.5"],[2,"NaN"]]}]}"#
        );
        let s = QueryData::Scalar(SamplePair {
            ts: 5,
            value: f64::INFINITY,
        });
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"resultType":"scalar","result":[0.005,"+Inf"]}"#
        );
        let e: Response = Err(Error::unsupported("function \"abs\"")).into();
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"status":"error","errorType":"bad_data","error":"function \"abs\" is not supported"}"#
        );
    }
}
