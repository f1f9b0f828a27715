use tracing_subscriber::EnvFilter;

use crate::LoggingConfig;

/// Starts the global tracing subscriber: `RUST_LOG` wins over `logging.level`; every line carries
/// the component's name (`actor`, `learner`, ...) so interleaved logs of a cluster stay readable.
/// Returns the guard of the component span; keep it alive for the life of `main`.
pub fn init_tracing(component: &'static str, logging: &LoggingConfig) -> tracing::span::EnteredSpan {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&logging.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    let installed = if logging.format == "json" {
        builder.json().try_init().is_ok()
    } else {
        builder.try_init().is_ok()
    };
    let span = tracing::info_span!("component", name = component).entered();
    if !installed {
        tracing::debug!("a tracing subscriber was already installed");
    }
    span
}
