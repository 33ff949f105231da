//! One module per subcommand.

pub(crate) mod bench;
pub(crate) mod datasets;
pub(crate) mod generate;
mod model;
pub(crate) mod perplexity;
pub(crate) mod plan;
pub(crate) mod prompt;
pub(crate) mod report;
pub(crate) mod retrieval;
pub(crate) mod ruler;
pub(crate) mod run;
pub(crate) mod score;
pub(crate) mod train;
