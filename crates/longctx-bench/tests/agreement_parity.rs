//! Judge agreement statistics equal scipy's and scikit-learn's, and ratings are read from judge
//! replies as LongBench-Chat's eval.py reads them (tests/fixtures/oracles/agreement.json, from
//! tools/oracles/agreement_fixtures.py).

use std::path::Path;

use longctx_bench::agreement::{kendall_tau_b, quadratic_kappa, spearman};
use longctx_bench::chat::parse_rating;
use serde_json::Value;

fn fixture() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/oracles/agreement.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

/// `expected` null means NaN.
fn check(name: &str, what: &str, ours: f64, expected: &Value) {
    match expected.as_f64() {
        None => assert!(ours.is_nan(), "{name} {what}: {ours}, scipy/sklearn NaN"),
        Some(e) => assert!((ours - e).abs() < 1e-12, "{name} {what}: {ours} vs {e}"),
    }
}

#[test]
fn agreement_statistics_equal_scipy_and_sklearn() {
    let f = fixture();
    let pairs = f["pairs"].as_array().unwrap();
    assert!(pairs.len() >= 19);
    let mut kappas = 0;
    for p in pairs {
        let name = p["name"].as_str().unwrap();
        let (a, b) = (floats(&p["a"]), floats(&p["b"]));
        check(name, "spearman", spearman(&a, &b), &p["spearman"]);
        check(name, "kendall", kendall_tau_b(&a, &b), &p["kendall_tau_b"]);
        if p.get("kappa_quadratic").is_some() {
            let ai: Vec<i64> = a.iter().map(|&x| x as i64).collect();
            let bi: Vec<i64> = b.iter().map(|&x| x as i64).collect();
            check(name, "kappa", quadratic_kappa(&ai, &bi, None), &p["kappa_quadratic"]);
            let scale: Vec<i64> = (1..=10).collect();
            check(name, "kappa 1..10", quadratic_kappa(&ai, &bi, Some(&scale)), &p["kappa_quadratic_1_10"]);
            kappas += 1;
        }
    }
    assert!(kappas >= 18);
}

#[test]
fn ratings_are_read_as_the_official_script_reads_them() {
    let f = fixture();
    for r in f["ratings"].as_array().unwrap() {
        let reply = r["reply"].as_str().unwrap();
        assert_eq!(parse_rating(reply), r["rating"].as_f64(), "{reply:?}");
    }
}
