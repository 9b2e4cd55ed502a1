//! Property tests of the twin merge and delta against straightforward
//! reference models (RFC 7386 as its pseudo-code reads; "covered" as a
//! comparison of leaf paths).

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use twin::{apply, delta, Twin, TwinLimits, TwinUpdate, UpdateError};

type Obj = Map<String, Value>;

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0i64..4).prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        "[xy]{0,2}".prop_map(Value::from),
        prop::collection::vec(0i64..3, 0..3).prop_map(|v| json!(v)),
    ]
}

fn to_obj(m: std::collections::BTreeMap<String, Value>) -> Obj {
    m.into_iter().collect()
}

/// Small nested objects; few keys, so documents and patches collide.
fn object() -> impl Strategy<Value = Obj> {
    let value = leaf().prop_recursive(3, 24, 4, |inner| {
        prop::collection::btree_map("[a-d]", inner, 0..4).prop_map(|m| Value::Object(to_obj(m)))
    });
    prop::collection::btree_map("[a-d]", value, 0..4).prop_map(to_obj)
}

/// Like `object`, with nulls (deletions) among the values.
fn patch() -> impl Strategy<Value = Obj> {
    let value =
        prop_oneof![1 => Just(Value::Null), 4 => leaf()].prop_recursive(3, 24, 4, |inner| {
            prop::collection::btree_map("[a-d]", inner, 0..4).prop_map(|m| Value::Object(to_obj(m)))
        });
    prop::collection::btree_map("[a-d]", value, 0..4).prop_map(to_obj)
}

/// RFC 7386, section 2, as written.
fn merge_ref(target: Value, patch: &Value) -> Value {
    let Value::Object(p) = patch else {
        return patch.clone();
    };
    let mut t = match target {
        Value::Object(t) => t,
        _ => Map::new(),
    };
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            let current = t.remove(k).unwrap_or(Value::Null);
            t.insert(k.clone(), merge_ref(current, v));
        }
    }
    Value::Object(t)
}

/// Every non-object value with its path.
fn leaves(m: &Obj) -> Vec<(Vec<String>, Value)> {
    fn walk(m: &Obj, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, Value)>) {
        for (k, v) in m {
            path.push(k.clone());
            match v {
                Value::Object(sub) => walk(sub, path, out),
                other => out.push((path.clone(), other.clone())),
            }
            path.pop();
        }
    }
    let mut out = Vec::new();
    walk(m, &mut Vec::new(), &mut out);
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Every `{"timestamp": n}` in a metadata object with its path.
fn meta_leaves(m: &Obj) -> Vec<(Vec<String>, u64)> {
    fn walk(m: &Obj, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, u64)>) {
        for (k, v) in m {
            path.push(k.clone());
            match v {
                Value::Object(sub) => match sub.get("timestamp").and_then(Value::as_u64) {
                    Some(ts) => out.push((path.clone(), ts)),
                    None => walk(sub, path, out),
                },
                other => panic!("metadata holds a non-object {other} at {path:?}"),
            }
            path.pop();
        }
    }
    let mut out = Vec::new();
    walk(m, &mut Vec::new(), &mut out);
    out.sort();
    out
}

fn lookup<'a>(m: &'a Obj, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut v = m.get(first)?;
    for k in rest {
        v = v.as_object()?.get(k)?;
    }
    Some(v)
}

fn covers(reported: &Obj, desired: &Obj) -> bool {
    leaves(desired)
        .iter()
        .all(|(p, v)| lookup(reported, p) == Some(v))
}

fn update(desired: Option<Obj>, reported: Option<Obj>) -> TwinUpdate {
    TwinUpdate {
        desired: desired.map(Value::Object),
        reported: reported.map(Value::Object),
        expected_version: None,
    }
}

fn twin_of(desired: Obj, reported: Obj) -> Twin {
    apply(
        &Twin::default(),
        &update(Some(desired), Some(reported)),
        &TwinLimits::default(),
        1,
    )
    .expect("small documents fit")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn delta_is_empty_iff_reported_covers_desired(d in object(), r in object()) {
        prop_assert_eq!(delta(&d, &r).is_empty(), covers(&r, &d));
    }

    #[test]
    fn delta_holds_exactly_the_uncovered_leaves(d in object(), r in object()) {
        let uncovered: Vec<_> = leaves(&d)
            .into_iter()
            .filter(|(p, v)| lookup(&r, p) != Some(v))
            .collect();
        prop_assert_eq!(leaves(&delta(&d, &r)), uncovered);
    }

    #[test]
    fn reporting_the_desired_state_clears_the_delta(d in object(), r in object()) {
        let t = twin_of(d.clone(), r);
        let t = apply(&t, &update(None, Some(d)), &TwinLimits::default(), 2).unwrap();
        prop_assert!(t.delta().is_empty(), "{:?}", t.delta());
    }

    #[test]
    fn merge_follows_rfc_7386(doc in object(), p in patch()) {
        let t = twin_of(doc.clone(), Map::new());
        let next = apply(&t, &update(Some(p.clone()), None), &TwinLimits::default(), 2).unwrap();
        let want = merge_ref(Value::Object(doc), &Value::Object(p.clone()));
        prop_assert_eq!(Value::Object(next.desired.clone()), want);
        // Null deletes.
        for (k, v) in &p {
            if v.is_null() {
                prop_assert!(!next.desired.contains_key(k));
            }
        }
        prop_assert_eq!(next.version, t.version + 1);
        prop_assert_eq!(next.updated_at_ms, 2);
        prop_assert_eq!(&next.reported, &t.reported);
    }

    #[test]
    fn metadata_stamps_written_leaves_only(doc in object(), p in patch()) {
        let t = twin_of(doc, Map::new());
        let next = apply(&t, &update(Some(p.clone()), None), &TwinLimits::default(), 2).unwrap();
        // The patch's non-null leaves are the leaves written.
        let written: Vec<Vec<String>> = leaves(&p)
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(path, _)| path)
            .collect();
        let want: Vec<(Vec<String>, u64)> = leaves(&next.desired)
            .into_iter()
            .map(|(path, _)| {
                let ts = if written.contains(&path) { 2 } else { 1 };
                (path, ts)
            })
            .collect();
        let mut want = want;
        want.sort();
        prop_assert_eq!(meta_leaves(&next.meta_desired), want);
        prop_assert!(next.meta_reported.is_empty());
    }

    #[test]
    fn size_limit_is_exact(doc in object(), p in patch(), limit in 0usize..400) {
        let t = twin_of(doc.clone(), Map::new());
        let limits = TwinLimits { max_document_bytes: limit, ..TwinLimits::default() };
        let unlimited = apply(&t, &update(Some(p.clone()), None), &TwinLimits::default(), 2).unwrap();
        let size: usize = [&unlimited.desired, &unlimited.reported, &unlimited.meta_desired, &unlimited.meta_reported]
            .iter()
            .map(|m| serde_json::to_vec(m).unwrap().len())
            .sum();
        match apply(&t, &update(Some(p), None), &limits, 2) {
            Ok(next) => {
                prop_assert!(size <= limit);
                prop_assert_eq!(next, unlimited);
            }
            Err(e) => {
                prop_assert!(size > limit);
                prop_assert_eq!(e.code(), 413);
                prop_assert_eq!(e, UpdateError::TooLarge { bytes: size, limit });
            }
        }
    }

    #[test]
    fn depth_limit_applies_to_the_result(doc in object(), p in patch(), limit in 1usize..5) {
        fn depth(v: &Value) -> usize {
            match v {
                Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
                Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
                _ => 0,
            }
        }
        let t = twin_of(doc.clone(), Map::new());
        let merged = merge_ref(Value::Object(doc), &Value::Object(p.clone()));
        let limits = TwinLimits { max_depth: limit, ..TwinLimits::default() };
        match apply(&t, &update(Some(p), None), &limits, 2) {
            Ok(next) => {
                prop_assert!(depth(&merged) <= limit);
                prop_assert_eq!(Value::Object(next.desired), merged);
            }
            Err(e) => {
                prop_assert!(depth(&merged) > limit, "{e}");
                prop_assert_eq!(e.code(), 400);
                prop_assert!(matches!(e, UpdateError::TooDeep { .. }), "{e}");
            }
        }
    }

    #[test]
    fn a_stale_version_is_a_conflict_and_changes_nothing(d in object(), expected in 0u64..4) {
        let t = twin_of(d.clone(), Map::new());
        let u = TwinUpdate { expected_version: Some(expected), ..update(Some(d), None) };
        match apply(&t, &u, &TwinLimits::default(), 2) {
            Ok(next) => {
                prop_assert_eq!(expected, 1);
                prop_assert_eq!(next.version, 2);
            }
            Err(e) => {
                prop_assert_ne!(expected, 1);
                prop_assert_eq!(e.code(), 409);
                prop_assert_eq!(e, UpdateError::VersionConflict { current: 1 });
            }
        }
    }
}

#[test]
fn version_conflict_is_409() {
    let t = twin_of(Map::new(), Map::new());
    let u = TwinUpdate {
        expected_version: Some(0),
        ..update(None, Some(Map::new()))
    };
    let e = apply(&t, &u, &TwinLimits::default(), 2).unwrap_err();
    assert_eq!(e, UpdateError::VersionConflict { current: 1 });
    assert_eq!(e.code(), 409);
    assert_eq!(e.to_string(), "version conflict: the twin is at version 1");
}

#[test]
fn size_limit_is_413() {
    let Value::Object(big) = json!({"blob": "x".repeat(70_000)}) else {
        unreachable!()
    };
    let e = apply(
        &Twin::default(),
        &update(None, Some(big)),
        &TwinLimits::default(),
        1,
    )
    .unwrap_err();
    assert_eq!(e.code(), 413);
    assert!(matches!(e, UpdateError::TooLarge { limit: 65536, bytes } if bytes > 70_000));
}

#[test]
fn depth_limit_is_400() {
    let mut v = json!(1);
    for _ in 0..9 {
        v = json!({ "n": v });
    }
    let Value::Object(deep) = v else {
        unreachable!()
    };
    let e = apply(
        &Twin::default(),
        &update(Some(deep), None),
        &TwinLimits::default(),
        1,
    )
    .unwrap_err();
    assert_eq!(e, UpdateError::TooDeep { depth: 9, limit: 8 });
    assert_eq!(e.code(), 400);
}
