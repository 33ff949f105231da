//! `longctx report RUN_DIR [--out DIR] [--baseline VARIANT]`.

use anyhow::{Context, Result};

use crate::cli::ReportArgs;

pub(crate) fn run(args: &ReportArgs) -> Result<()> {
    let options = longctx_report::ReportOptions { out_dir: args.out.clone(), baseline: args.baseline.clone() };
    let paths = longctx_report::write_report(&args.run_dir, &options)
        .with_context(|| format!("writing the report of {}", args.run_dir.display()))?;
    eprintln!("markdown: {}", paths.markdown.display());
    eprintln!("plots:    {} files", paths.plots.len());
    eprintln!("report:   {}", paths.html.display());
    Ok(())
}
