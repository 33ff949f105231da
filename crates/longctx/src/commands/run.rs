//! `longctx run EXPERIMENT.toml [--limit N] [--force] [--output-dir DIR] [--budget-usd X]
//! [--no-report]`: the experiment runner (`longctx-runner`), Ctrl-C, the report at the end.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::{bail, Context, Result};
use longctx_runner::{Outcome, Plan, RunOptions};

use crate::cli::{JudgeArgs, RunArgs};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);

/// The first Ctrl-C raises the runner's interrupt flag (samples in flight finish); a second
/// exits at once.
fn install_interrupt_handler() {
    // Installing twice (a second run in one process) is an error ctrlc reports; the first
    // handler stays, which is what we want.
    let _ = ctrlc::set_handler(|| {
        if INTERRUPTS.fetch_add(1, Ordering::SeqCst) > 0 {
            eprintln!("\ninterrupted again: exiting now; finished predictions are on disk");
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: finishing the samples in flight (Ctrl-C again to exit at once)");
        INTERRUPTED.store(true, Ordering::SeqCst);
    });
}

pub(crate) fn run(args: &RunArgs) -> Result<()> {
    let plan = Plan::load(&args.experiment)?;
    let options = RunOptions {
        limit: args.limit,
        force: args.force,
        output_dir: args.output_dir.clone(),
        budget_usd: args.budget_usd,
    };
    install_interrupt_handler();
    let summary = longctx_runner::run(&plan, &options, &INTERRUPTED)?;
    if !args.no_report {
        write_report(&summary.run_dir)?;
    }
    if let Some(j) = &summary.judging {
        judged(j)?;
    }
    let totals = &summary.totals;
    match summary.outcome {
        Outcome::Interrupted => bail!("interrupted; run the same command again to resume"),
        Outcome::Budget => bail!(
            "stopped before exceeding the budget of ${:.4} (spent ${:.4}); raise budget_usd (or --budget-usd) and run again to resume",
            summary.budget.unwrap_or(0.0),
            summary.spent
        ),
        Outcome::Complete if totals.failed > 0 => bail!(
            "{} sample(s) failed (see failed/ in the variant directories); run again to retry them",
            totals.failed
        ),
        Outcome::Complete => {
            eprintln!(
                "done: {} predictions written in this session, {} in the run; cost ${:.4}",
                summary.written, totals.samples, totals.cost_usd
            );
            Ok(())
        }
    }
}

fn write_report(run_dir: &std::path::Path) -> Result<()> {
    let paths = longctx_report::write_report(run_dir, &longctx_report::ReportOptions::default())
        .with_context(|| format!("writing the report of {}", run_dir.display()))?;
    eprintln!("report: {}", paths.html.display());
    eprintln!("        {}", paths.markdown.display());
    Ok(())
}

/// Says what a judging session did; an error when items are left to judge.
fn judged(j: &longctx_runner::judge::JudgeReport) -> Result<()> {
    if j.items == 0 {
        bail!(
            "nothing to judge: judges rate LongBench-Chat answers and LongBench's open-ended tasks (QA and summarization)"
        );
    }
    eprintln!(
        "judged: {} judgement(s) written ({} without a rating), judges' cost ${:.4}; summary {}",
        j.written,
        j.unrated,
        j.cost_usd,
        j.summary.display()
    );
    print_scores(&j.summary)?;
    if j.interrupted {
        bail!("judging interrupted; run `longctx judge` on the run directory to resume");
    }
    if j.pending > 0 {
        bail!(
            "{} judgement(s) pending (every try failed: see the judge's errors above); run `longctx judge` on the run directory again to retry them",
            j.pending
        );
    }
    Ok(())
}

/// The judges' means and totals from `judgements.json`, a line per variant, dataset and judge.
fn print_scores(summary: &std::path::Path) -> Result<()> {
    let text = fs_err::read_to_string(summary)?;
    let v: serde_json::Value = serde_json::from_str(&text).with_context(|| summary.display().to_string())?;
    let num = |x: &serde_json::Value, d: usize| x.as_f64().map_or_else(|| "–".to_string(), |x| format!("{x:.d$}"));
    eprintln!("{:<24} {:<16} {:<16} {:>6} {:>7} {:>9}", "variant", "dataset", "judge", "mean", "total", "rated");
    for s in v["scores"].as_array().into_iter().flatten() {
        eprintln!(
            "{:<24} {:<16} {:<16} {:>6} {:>7} {:>4}/{:<4}",
            s["variant"].as_str().unwrap_or_default(),
            s["dataset"].as_str().unwrap_or_default(),
            s["judge"].as_str().unwrap_or_default(),
            num(&s["mean"], 2),
            num(&s["total"], 1),
            s["rated"].as_u64().unwrap_or(0),
            s["items"].as_u64().unwrap_or(0),
        );
    }
    Ok(())
}

pub(crate) fn judge(args: &JudgeArgs) -> Result<()> {
    let judges = longctx_runner::judge::load_judges(&args.run_dir, args.judges.as_deref(), &args.only)
        .with_context(|| format!("the judges of {}", args.run_dir.display()))?;
    install_interrupt_handler();
    let report = longctx_runner::judge::judge_run(&args.run_dir, &judges, &INTERRUPTED)
        .with_context(|| format!("judging {}", args.run_dir.display()))?;
    if !args.no_report {
        write_report(&args.run_dir)?;
    }
    judged(&report)
}
