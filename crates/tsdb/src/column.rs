//! Typed value columns and their at-rest encodings.
//!
//! Numeric columns are compressed with pco (which finds deltas, common
//! multiples such as decimal steps, and bit widths on its own); very short
//! columns are stored plainly because pco's headers would outweigh them.
//! Strings are dictionary-encoded, booleans bit-packed.

use std::collections::HashMap;
use std::sync::Arc;

use pco::standalone::{simple_compress, simple_decompress_into};
use pco::{ChunkConfig, DeltaSpec};

use crate::error::Error;
use crate::model::{Value, ValueType};
use crate::wire::{put_bytes, put_f64, put_svar, put_var, Reader};

/// Below this many values a column is stored plainly.
const PCO_MIN_LEN: usize = 32;
/// Largest column a decoder accepts, so hostile input cannot force a huge allocation.
pub(crate) const MAX_COLUMN_LEN: usize = 1 << 24;

const ENC_PCO: u8 = 0;
const ENC_PLAIN: u8 = 1;
/// Floats that are all exact decimals: a digit count and a pco integer column.
const ENC_DECIMAL: u8 = 2;
/// Floats close to exact decimals (sums of decimals, with rounding error):
/// a digit count, the nearest decimals as an integer column, and each
/// value's distance from its decimal in units in the last place as a
/// second integer column. Lossless; chunk format version 2 and later.
const ENC_NEAR_DECIMAL: u8 = 3;
/// Most decimal digits tried when looking for an integer form of floats.
const MAX_DECIMALS: i32 = 9;
/// Largest distance in units in the last place that still counts as near.
const MAX_ULP_DIST: i64 = 1 << 20;

/// A column of values of one type.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Column {
    F64(Vec<f64>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
    Str(Vec<Arc<str>>),
}

impl Column {
    pub(crate) fn new(vtype: ValueType) -> Column {
        match vtype {
            ValueType::F64 => Column::F64(Vec::new()),
            ValueType::I64 => Column::I64(Vec::new()),
            ValueType::Bool => Column::Bool(Vec::new()),
            ValueType::Str => Column::Str(Vec::new()),
        }
    }

    pub(crate) fn with_capacity(vtype: ValueType, n: usize) -> Column {
        match vtype {
            ValueType::F64 => Column::F64(Vec::with_capacity(n)),
            ValueType::I64 => Column::I64(Vec::with_capacity(n)),
            ValueType::Bool => Column::Bool(Vec::with_capacity(n)),
            ValueType::Str => Column::Str(Vec::with_capacity(n)),
        }
    }

    pub(crate) fn vtype(&self) -> ValueType {
        match self {
            Column::F64(_) => ValueType::F64,
            Column::I64(_) => ValueType::I64,
            Column::Bool(_) => ValueType::Bool,
            Column::Str(_) => ValueType::Str,
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Column::F64(v) => v.len(),
            Column::I64(v) => v.len(),
            Column::Bool(v) => v.len(),
            Column::Str(v) => v.len(),
        }
    }

    /// Appends a value; the caller has checked its type. A mismatched value
    /// is ignored rather than panicking.
    pub(crate) fn push(&mut self, v: &Value) {
        match (self, v) {
            (Column::F64(c), Value::F64(x)) => c.push(*x),
            (Column::I64(c), Value::I64(x)) => c.push(*x),
            (Column::Bool(c), Value::Bool(x)) => c.push(*x),
            (Column::Str(c), Value::Str(x)) => c.push(x.clone()),
            _ => debug_assert!(false, "column type checked by caller"),
        }
    }

    /// Appends element `i` of `other` (same type).
    pub(crate) fn push_from(&mut self, other: &Column, i: usize) {
        match (self, other) {
            (Column::F64(c), Column::F64(o)) => c.push(o[i]),
            (Column::I64(c), Column::I64(o)) => c.push(o[i]),
            (Column::Bool(c), Column::Bool(o)) => c.push(o[i]),
            (Column::Str(c), Column::Str(o)) => c.push(o[i].clone()),
            _ => debug_assert!(false, "column types checked by caller"),
        }
    }

    pub(crate) fn extend(&mut self, other: &Column) {
        match (self, other) {
            (Column::F64(c), Column::F64(o)) => c.extend_from_slice(o),
            (Column::I64(c), Column::I64(o)) => c.extend_from_slice(o),
            (Column::Bool(c), Column::Bool(o)) => c.extend_from_slice(o),
            (Column::Str(c), Column::Str(o)) => c.extend_from_slice(o),
            _ => debug_assert!(false, "column types checked by caller"),
        }
    }

    pub(crate) fn get(&self, i: usize) -> Value {
        match self {
            Column::F64(c) => Value::F64(c[i]),
            Column::I64(c) => Value::I64(c[i]),
            Column::Bool(c) => Value::Bool(c[i]),
            Column::Str(c) => Value::Str(c[i].clone()),
        }
    }

    /// Element `i` as a number for aggregation (none for strings).
    pub(crate) fn num(&self, i: usize) -> Option<f64> {
        match self {
            Column::F64(c) => Some(c[i]),
            Column::I64(c) => Some(c[i] as f64),
            Column::Bool(c) => Some(if c[i] { 1.0 } else { 0.0 }),
            Column::Str(_) => None,
        }
    }

    /// Keeps only the elements whose index is in `keep` (ascending).
    pub(crate) fn select(&self, keep: &[usize]) -> Column {
        let mut out = Column::with_capacity(self.vtype(), keep.len());
        for &i in keep {
            out.push_from(self, i);
        }
        out
    }

    /// Heap bytes, approximately, for memory accounting.
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            Column::F64(c) => c.capacity() * 8,
            Column::I64(c) => c.capacity() * 8,
            Column::Bool(c) => c.capacity(),
            Column::Str(c) => c.capacity() * 16 + c.iter().map(|s| s.len()).sum::<usize>(),
        }
    }

    /// Encodes the column (without its length, which the index stores).
    pub(crate) fn encode(&self, level: usize, out: &mut Vec<u8>) -> Result<(), Error> {
        match self {
            Column::F64(c) => encode_f64s(c, level, out),
            Column::I64(c) => encode_i64s(c, level, out),
            Column::Bool(c) => {
                encode_bools(c, out);
                Ok(())
            }
            Column::Str(c) => encode_strs(c, level, out),
        }
    }

    /// Decodes `n` values of type `vtype`.
    pub(crate) fn decode(vtype: ValueType, n: usize, r: &mut Reader<'_>) -> Result<Column, Error> {
        Ok(match vtype {
            ValueType::F64 => Column::F64(decode_f64s(n, r)?),
            ValueType::I64 => Column::I64(decode_i64s(n, r)?),
            ValueType::Bool => Column::Bool(decode_bools(n, r)?),
            ValueType::Str => Column::Str(decode_strs(n, r)?),
        })
    }
}

fn pco_err(e: pco::errors::PcoError) -> Error {
    Error::corrupt("pco column", e.to_string())
}

/// First-order deltas suit time series (timestamps, walks, slowly moving
/// sensors), and fixing the choice skips pco's costly automatic search;
/// pco still falls back to no delta when deltas are clearly worse.
fn pco_config(level: usize) -> ChunkConfig {
    ChunkConfig::default()
        .with_compression_level(level)
        .with_delta_spec(DeltaSpec::TryConsecutive(1))
}

pub(crate) fn encode_i64s(v: &[i64], level: usize, out: &mut Vec<u8>) -> Result<(), Error> {
    if v.len() < PCO_MIN_LEN {
        out.push(ENC_PLAIN);
        let mut prev = 0i64;
        for &x in v {
            put_svar(out, x.wrapping_sub(prev));
            prev = x;
        }
        return Ok(());
    }
    out.push(ENC_PCO);
    let bytes = simple_compress(v, &pco_config(level)).map_err(pco_err)?;
    put_bytes(out, &bytes);
    Ok(())
}

pub(crate) fn decode_i64s(n: usize, r: &mut Reader<'_>) -> Result<Vec<i64>, Error> {
    check_len(n, r)?;
    match r.u8()? {
        ENC_PLAIN => {
            let mut out = Vec::with_capacity(n.min(r.remaining()));
            let mut prev = 0i64;
            for _ in 0..n {
                prev = prev.wrapping_add(r.svar()?);
                out.push(prev);
            }
            Ok(out)
        }
        ENC_PCO => pco_decode(n, r.bytes()?),
        t => Err(r.err(format!("unknown integer encoding {t}"))),
    }
}

pub(crate) fn encode_u32s(v: &[u32], level: usize, out: &mut Vec<u8>) -> Result<(), Error> {
    if v.len() < PCO_MIN_LEN {
        out.push(ENC_PLAIN);
        for &x in v {
            put_var(out, u64::from(x));
        }
        return Ok(());
    }
    out.push(ENC_PCO);
    let bytes = simple_compress(v, &pco_config(level)).map_err(pco_err)?;
    put_bytes(out, &bytes);
    Ok(())
}

fn decode_u32s(n: usize, r: &mut Reader<'_>) -> Result<Vec<u32>, Error> {
    check_len(n, r)?;
    match r.u8()? {
        ENC_PLAIN => {
            let mut out = Vec::with_capacity(n.min(r.remaining()));
            for _ in 0..n {
                let x = r.var()?;
                out.push(u32::try_from(x).map_err(|_| r.err("index exceeds 32 bits"))?);
            }
            Ok(out)
        }
        ENC_PCO => pco_decode(n, r.bytes()?),
        t => Err(r.err(format!("unknown index encoding {t}"))),
    }
}

pub(crate) fn encode_f64s(v: &[f64], level: usize, out: &mut Vec<u8>) -> Result<(), Error> {
    if let Some((d, ints)) = as_decimals(v) {
        let mut p = vec![ENC_DECIMAL, d as u8];
        encode_i64s(&ints, level, &mut p)?;
        if v.len() >= PCO_MIN_LEN || p.len() < 1 + 8 * v.len() {
            out.extend_from_slice(&p);
            return Ok(());
        }
    } else if let Some((d, ints, ulps)) = as_near_decimals(v) {
        let mut p = vec![ENC_NEAR_DECIMAL, d as u8];
        encode_i64s(&ints, level, &mut p)?;
        encode_i64s(&ulps, level, &mut p)?;
        let mut alt = Vec::new();
        encode_f64s_float(v, level, &mut alt)?;
        if p.len() < alt.len() {
            out.extend_from_slice(&p);
        } else {
            out.extend_from_slice(&alt);
        }
        return Ok(());
    }
    encode_f64s_float(v, level, out)
}

/// Floats as floats: plain when short, pco otherwise.
fn encode_f64s_float(v: &[f64], level: usize, out: &mut Vec<u8>) -> Result<(), Error> {
    if v.len() < PCO_MIN_LEN {
        out.push(ENC_PLAIN);
        for &x in v {
            put_f64(out, x);
        }
        return Ok(());
    }
    out.push(ENC_PCO);
    let bytes = simple_compress(v, &pco_config(level)).map_err(pco_err)?;
    put_bytes(out, &bytes);
    Ok(())
}

/// If every value is exactly `i / 10^d` for integers `i` below 2^53 and one
/// `d <= MAX_DECIMALS` (bit for bit, so `-0.0` and NaN never qualify),
/// returns `d` and the integers. Sensor values parsed from decimal text
/// qualify, and integers compress far better than their float bits.
fn as_decimals(v: &[f64]) -> Option<(i32, Vec<i64>)> {
    const LIMIT: f64 = (1u64 << 53) as f64;
    let mut d = 0;
    for &x in v {
        loop {
            let p = 10f64.powi(d);
            let i = (x * p).round();
            if i.abs() < LIMIT && (i / p).to_bits() == x.to_bits() {
                break;
            }
            d += 1;
            if d > MAX_DECIMALS {
                return None;
            }
        }
    }
    let p = 10f64.powi(d);
    Some((d, v.iter().map(|&x| (x * p).round() as i64).collect()))
}

/// Maps float bits to integers in the same order as the floats (`-0.0`
/// just below `0.0`); its own inverse.
fn ordered(b: i64) -> i64 {
    b ^ (((b >> 63) as u64) >> 1) as i64
}

fn float_key(x: f64) -> i64 {
    ordered(x.to_bits() as i64)
}

/// The float `ulps` units in the last place away from `base`.
fn add_ulps(base: f64, ulps: i64) -> f64 {
    f64::from_bits(ordered(float_key(base).wrapping_add(ulps)) as u64)
}

/// If the values are all within `MAX_ULP_DIST` units in the last place of
/// `i / 10^d` for integers `i` below 2^53 and one `d <= MAX_DECIMALS` (the
/// smallest such `d`), returns `d`, the integers and the distances. Sums of
/// exact decimals qualify: their float rounding error is a few units.
fn as_near_decimals(v: &[f64]) -> Option<(i32, Vec<i64>, Vec<i64>)> {
    const LIMIT: f64 = (1u64 << 53) as f64;
    'digits: for d in 0..=MAX_DECIMALS {
        let p = 10f64.powi(d);
        let mut ints = Vec::with_capacity(v.len());
        let mut ulps = Vec::with_capacity(v.len());
        for &x in v {
            let i = (x * p).round();
            // Also rejects NaN and infinities.
            if i.is_nan() || i.abs() >= LIMIT {
                continue 'digits;
            }
            let base = i / p;
            let dist = float_key(x).wrapping_sub(float_key(base));
            if !(-MAX_ULP_DIST..=MAX_ULP_DIST).contains(&dist)
                || add_ulps(base, dist).to_bits() != x.to_bits()
            {
                continue 'digits;
            }
            ints.push(i as i64);
            ulps.push(dist);
        }
        return Some((d, ints, ulps));
    }
    None
}

pub(crate) fn decode_f64s(n: usize, r: &mut Reader<'_>) -> Result<Vec<f64>, Error> {
    check_len(n, r)?;
    match r.u8()? {
        ENC_PLAIN => {
            let mut out = Vec::with_capacity(n.min(r.remaining() / 8));
            for _ in 0..n {
                out.push(r.f64()?);
            }
            Ok(out)
        }
        ENC_PCO => pco_decode(n, r.bytes()?),
        ENC_DECIMAL => {
            let d = i32::from(r.u8()?);
            if d > MAX_DECIMALS {
                return Err(r.err(format!("{d} decimals")));
            }
            let p = 10f64.powi(d);
            Ok(decode_i64s(n, r)?
                .into_iter()
                .map(|i| i as f64 / p)
                .collect())
        }
        ENC_NEAR_DECIMAL => {
            let d = i32::from(r.u8()?);
            if d > MAX_DECIMALS {
                return Err(r.err(format!("{d} decimals")));
            }
            let p = 10f64.powi(d);
            let ints = decode_i64s(n, r)?;
            let ulps = decode_i64s(n, r)?;
            Ok(ints
                .into_iter()
                .zip(ulps)
                .map(|(i, u)| add_ulps(i as f64 / p, u))
                .collect())
        }
        t => Err(r.err(format!("unknown float encoding {t}"))),
    }
}

/// Moves `r` past an integer column of `n` values without decoding it.
pub(crate) fn skip_i64s(n: usize, r: &mut Reader<'_>) -> Result<(), Error> {
    check_len(n, r)?;
    match r.u8()? {
        ENC_PLAIN => {
            for _ in 0..n {
                r.svar()?;
            }
        }
        ENC_PCO => {
            r.bytes()?;
        }
        t => return Err(r.err(format!("unknown integer encoding {t}"))),
    }
    Ok(())
}

/// Moves `r` past a float column of `n` values without decoding it.
pub(crate) fn skip_f64s(n: usize, r: &mut Reader<'_>) -> Result<(), Error> {
    check_len(n, r)?;
    match r.u8()? {
        ENC_PLAIN => {
            r.take(n * 8)?;
        }
        ENC_PCO => {
            r.bytes()?;
        }
        ENC_DECIMAL => {
            r.u8()?;
            skip_i64s(n, r)?;
        }
        ENC_NEAR_DECIMAL => {
            r.u8()?;
            skip_i64s(n, r)?;
            skip_i64s(n, r)?;
        }
        t => return Err(r.err(format!("unknown float encoding {t}"))),
    }
    Ok(())
}

fn check_len(n: usize, r: &Reader<'_>) -> Result<(), Error> {
    if n > MAX_COLUMN_LEN {
        return Err(r.err(format!("column of {n} values exceeds {MAX_COLUMN_LEN}")));
    }
    Ok(())
}

fn pco_decode<T: pco::data_types::Number + Default>(n: usize, src: &[u8]) -> Result<Vec<T>, Error> {
    let mut dst = vec![T::default(); n];
    let progress = simple_decompress_into(src, &mut dst).map_err(pco_err)?;
    if progress.n_processed != n || !progress.finished {
        return Err(Error::corrupt(
            "pco column",
            format!("expected {n} values, decoded {}", progress.n_processed),
        ));
    }
    Ok(dst)
}

fn encode_bools(v: &[bool], out: &mut Vec<u8>) {
    let mut byte = 0u8;
    for (i, &b) in v.iter().enumerate() {
        if b {
            byte |= 1 << (i % 8);
        }
        if i % 8 == 7 {
            out.push(byte);
            byte = 0;
        }
    }
    if !v.len().is_multiple_of(8) {
        out.push(byte);
    }
}

fn decode_bools(n: usize, r: &mut Reader<'_>) -> Result<Vec<bool>, Error> {
    check_len(n, r)?;
    let bytes = r.take(n.div_ceil(8))?;
    Ok((0..n).map(|i| bytes[i / 8] & (1 << (i % 8)) != 0).collect())
}

fn encode_strs(v: &[Arc<str>], level: usize, out: &mut Vec<u8>) -> Result<(), Error> {
    let mut dict: HashMap<&str, u32> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    let mut idx = Vec::with_capacity(v.len());
    for s in v {
        let next = order.len() as u32;
        let i = *dict.entry(s.as_ref()).or_insert_with(|| {
            order.push(s.as_ref());
            next
        });
        idx.push(i);
    }
    put_var(out, order.len() as u64);
    for s in &order {
        put_bytes(out, s.as_bytes());
    }
    encode_u32s(&idx, level, out)
}

fn decode_strs(n: usize, r: &mut Reader<'_>) -> Result<Vec<Arc<str>>, Error> {
    check_len(n, r)?;
    let nd = r.len(n)?;
    let mut dict = Vec::with_capacity(nd);
    for _ in 0..nd {
        dict.push(Arc::<str>::from(r.str()?));
    }
    let idx = decode_u32s(n, r)?;
    idx.iter()
        .map(|&i| {
            dict.get(i as usize)
                .cloned()
                .ok_or_else(|| r.err("dictionary index out of range"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(c: &Column) {
        let mut out = Vec::new();
        c.encode(8, &mut out).unwrap();
        let mut r = Reader::new(&out, "test");
        let d = Column::decode(c.vtype(), c.len(), &mut r).unwrap();
        assert_eq!(&d, c);
        assert!(r.is_empty());
    }

    #[test]
    fn columns_roundtrip_short_and_long() {
        for n in [0usize, 1, 5, 31, 32, 100, 1000] {
            roundtrip(&Column::F64((0..n).map(|i| i as f64 * 0.1).collect()));
            roundtrip(&Column::F64(
                (0..n).map(|i| (i as f64 * 0.37).sin() * 1e3).collect(),
            ));
            roundtrip(&Column::F64(
                (0..n).map(|i| (i * 7 % 100) as f64 / 1e5 - 0.0).collect(),
            ));
            roundtrip(&Column::F64(
                (0..n)
                    .map(|i| if i % 5 == 0 { -0.0 } else { 2.5 })
                    .collect(),
            ));
            roundtrip(&Column::I64(
                (0..n).map(|i| i as i64 * 10_000 - 7).collect(),
            ));
            roundtrip(&Column::Bool((0..n).map(|i| i % 3 == 0).collect()));
            roundtrip(&Column::Str(
                (0..n).map(|i| Arc::from(format!("s{}", i % 7))).collect(),
            ));
        }
    }

    /// Running sums of decimals, as rollup sums are: not exact decimals.
    fn decimal_sums(n: usize, offset: f64) -> Vec<f64> {
        (0..n)
            .map(|i| {
                (0..6)
                    .map(|k| ((i * 7 + k * 13) % 1000) as f64 / 1e3 + offset)
                    .sum()
            })
            .collect()
    }

    #[test]
    fn near_decimals_roundtrip_and_skip() {
        for n in [1usize, 6, 24, 31, 32, 1440] {
            for offset in [0.0, -0.3, 57.01] {
                let v = decimal_sums(n, offset);
                let c = Column::F64(v.clone());
                roundtrip(&c);
                let mut out = Vec::new();
                c.encode(8, &mut out).unwrap();
                if n >= 24 && offset != 0.0 {
                    assert!(out.len() < 8 * n, "n {n}: {} bytes", out.len());
                }
                // Skipping lands exactly where decoding would.
                Column::I64((0..n as i64).collect())
                    .encode(8, &mut out)
                    .unwrap();
                let mut r = Reader::new(&out, "test");
                skip_f64s(n, &mut r).unwrap();
                skip_i64s(n, &mut r).unwrap();
                assert!(r.is_empty());
            }
        }
        let mixed = vec![0.1 + 0.2, -0.0, 0.0, -(0.1 + 0.2), 1e-300];
        roundtrip(&Column::F64(mixed));
        let (d, ints, ulps) = as_near_decimals(&[0.1 + 0.2, 0.3, 0.7 + 0.1]).unwrap();
        assert_eq!((d, ints), (1, vec![3, 3, 8]));
        assert_eq!(ulps[1], 0);
        assert!(ulps[0] != 0);
    }

    #[test]
    fn decode_rejects_garbage() {
        let mut r = Reader::new(&[0, 3, 1, 2, 3], "test");
        assert!(Column::decode(ValueType::F64, 40, &mut r).is_err());
        let mut r = Reader::new(&[9], "test");
        assert!(Column::decode(ValueType::I64, 1, &mut r).is_err());
        let mut r = Reader::new(&[], "test");
        assert!(Column::decode(ValueType::I64, MAX_COLUMN_LEN + 1, &mut r).is_err());
    }
}
