//! Redraws a perplexity-by-context-length plot from the JSON of `longctx perplexity --lengths
//! … --json` — e.g. after merging the points of separate runs into one file, as
//! `docs/rope-smollm2-135m.json` was:
//!
//! ```sh
//! cargo run --release -p longctx-report --example perplexity_plot -- \
//!     docs/rope-smollm2-135m.json "SmolLM2-135M-Instruct.Q4_1.gguf: perplexity by context length" \
//!     docs/rope-smollm2-135m.svg
//! ```

use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [json, title, out] = args.as_slice() else {
        bail!("usage: perplexity_plot PERPLEXITY.json TITLE OUT.svg|OUT.png");
    };
    let text = std::fs::read_to_string(json).with_context(|| format!("reading {json}"))?;
    let v: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{json} is not JSON"))?;
    let mut series = Vec::new();
    for (i, variant) in
        v["variants"].as_array().with_context(|| format!("{json}: no `variants` array"))?.iter().enumerate()
    {
        let name =
            variant["rope_scaling"].as_str().with_context(|| format!("{json}: variant {i} has no `rope_scaling`"))?;
        let mut points = Vec::new();
        for p in variant["points"].as_array().with_context(|| format!("{json}: variant `{name}` has no `points`"))? {
            match (p["length"].as_f64(), p["ppl"].as_f64()) {
                (Some(length), Some(ppl)) => points.push((length, ppl)),
                _ => bail!("{json}: a point of variant `{name}` lacks `length` or `ppl`: {p}"),
            }
        }
        series.push((name.to_string(), points));
    }
    let plot = longctx_report::plot::perplexity_by_length(title, series);
    let png = std::path::Path::new(out).extension().is_some_and(|e| e.eq_ignore_ascii_case("png"));
    let bytes = if png { plot.png()? } else { plot.svg()?.into_bytes() };
    std::fs::write(out, bytes).with_context(|| format!("writing {out}"))?;
    Ok(())
}
