//! The binary's log: one `tracing` subscriber writing one plain line per event to
//! stderr, filtered by `SYNOD_LOG`. The library's `log` records arrive through the
//! `tracing-log` bridge, so they and the request spans (`server::request`,
//! `runtime::driver::trace`) share one filter and one format:
//!
//! ```text
//! synod WARN: client listener: closing 10.0.0.9:41234: write failed: ...
//! synod DEBUG: connection{connection=3 peer=10.0.0.9:41234}:request{request=7 kind="propose" group=2}:propose{shard=1 group=2 proposal=41 instance=118}: answered outcome="ok" ...
//! ```
//!
//! A line is `synod LEVEL: `, the event's spans from the root (`name{fields}: ` each),
//! then its message and fields; a closing span prints `close` with its busy and idle
//! time. `SYNOD_LOG` is a level (`error`, `warn`, `info`, `debug`, `trace`, `off`;
//! default `warn`) or a list of `target=level` directives with an optional default
//! level (`warn,synod=debug`, `synod::server=debug,synod::runtime::driver=debug`);
//! glommio's lines show only when the default level is `debug` or above or a
//! directive names glommio (it reports harmless probe failures at error level).

use std::fmt;
use std::str::FromStr;

use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::{FmtSpan, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// The filter when `SYNOD_LOG` is unset, empty or invalid.
const DEFAULT_LEVEL: LevelFilter = LevelFilter::WARN;

/// Sends log lines and request spans to stderr as `SYNOD_LOG` says (module docs). An
/// invalid `SYNOD_LOG` is reported on stderr and the default (`warn`) used.
pub fn init_logging() {
    let spec = std::env::var("SYNOD_LOG").ok();
    let targets = filter(spec.as_deref()).unwrap_or_else(|error| {
        eprintln!("synod: SYNOD_LOG: {error}; logging at {DEFAULT_LEVEL}");
        quiet_glommio(Targets::new().with_default(DEFAULT_LEVEL), "")
    });
    let layer = tracing_subscriber::fmt::layer()
        .with_span_events(FmtSpan::CLOSE)
        .event_format(LineFormat)
        .with_writer(std::io::stderr);
    // Fails only when a subscriber or `log` logger is already set: keep that one.
    let _ = tracing_subscriber::registry()
        .with(layer)
        .with(targets)
        .try_init();
}

/// The filter `SYNOD_LOG` asks for (`None` or empty: `warn`).
fn filter(spec: Option<&str>) -> Result<Targets, String> {
    let spec = spec.map_or("", str::trim);
    if spec.is_empty() {
        return Ok(quiet_glommio(
            Targets::new().with_default(DEFAULT_LEVEL),
            spec,
        ));
    }
    let targets = Targets::from_str(spec).map_err(|error| format!("{spec:?}: {error}"))?;
    Ok(quiet_glommio(targets, spec))
}

/// `targets` with glommio's lines off, unless `spec` names glommio or the default
/// level is `debug` or above.
fn quiet_glommio(targets: Targets, spec: &str) -> Targets {
    let default = targets.default_level().unwrap_or(LevelFilter::OFF);
    if spec.contains("glommio") || default >= LevelFilter::DEBUG {
        targets
    } else {
        targets.with_target("glommio", LevelFilter::OFF)
    }
}

/// One line per event: `synod LEVEL: span{fields}: ...: message fields`.
struct LineFormat;

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "synod {}: ", event.metadata().level())?;
        let mut spans = 0;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if spans > 0 {
                    writer.write_str(":")?;
                }
                spans += 1;
                writer.write_str(span.name())?;
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>() {
                    if !fields.is_empty() {
                        write!(writer, "{{{fields}}}")?;
                    }
                }
            }
        }
        if spans > 0 {
            writer.write_str(": ")?;
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::{filter, LineFormat};
    use tracing::level_filters::LevelFilter;
    use tracing_subscriber::fmt::format::FmtSpan;
    use tracing_subscriber::layer::SubscriberExt;

    /// Whether `targets` lets an event of `target` at `level` through.
    fn lets(
        targets: &tracing_subscriber::filter::Targets,
        target: &str,
        level: LevelFilter,
    ) -> bool {
        let level = level.into_level().expect("a level, not off");
        targets.would_enable(target, &level)
    }

    // Goal: SYNOD_LOG keeps its old words and takes target directives; glommio stays
    // quiet below debug unless named; a bad value is an error (the caller says so).
    // Method: build the filter of each value and ask it about targets and levels.
    #[test]
    fn synod_log_values() {
        let default = filter(None).expect("unset");
        assert!(lets(&default, "synod::runtime::net", LevelFilter::WARN));
        assert!(!lets(&default, "synod::runtime::net", LevelFilter::INFO));
        assert!(!lets(&default, "glommio::sys", LevelFilter::ERROR));
        let info = filter(Some("info")).expect("info");
        assert!(lets(&info, "synod::server", LevelFilter::INFO));
        assert!(!lets(&info, "synod::server", LevelFilter::DEBUG));
        assert!(!lets(&info, "glommio", LevelFilter::ERROR));
        let debug = filter(Some("debug")).expect("debug");
        assert!(lets(&debug, "glommio::executor", LevelFilter::DEBUG));
        let off = filter(Some("off")).expect("off");
        assert!(!lets(&off, "synod", LevelFilter::ERROR));
        let traced = filter(Some("warn,synod=debug")).expect("directives");
        assert!(lets(
            &traced,
            "synod::runtime::driver::trace",
            LevelFilter::DEBUG
        ));
        assert!(lets(&traced, "other_crate", LevelFilter::WARN));
        assert!(!lets(&traced, "other_crate", LevelFilter::INFO));
        assert!(!lets(&traced, "glommio", LevelFilter::WARN));
        let only = filter(Some("synod::server=debug")).expect("one target");
        assert!(lets(&only, "synod::server::request", LevelFilter::DEBUG));
        assert!(!lets(&only, "synod::runtime", LevelFilter::ERROR));
        let named = filter(Some("warn,glommio=error")).expect("glommio named");
        assert!(lets(&named, "glommio", LevelFilter::ERROR));
        assert!(filter(Some("synod=loud")).is_err());
    }

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    // Goal: a line shows the level, the event's spans from the root with their
    // fields (recorded ones included), the message and the event's fields; a line
    // without a span is `synod LEVEL: message`, as before spans existed.
    // Method: a subscriber with the binary's format into a buffer; an event in two
    // nested spans (one with an explicit parent), one outside any, one span closed.
    #[test]
    fn lines_show_the_span_chain() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_span_events(FmtSpan::CLOSE)
            .event_format(LineFormat)
            .with_writer(move || writer.clone());
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!("plain line");
            let request = tracing::debug_span!("request", request = 7, kind = "propose");
            let propose = tracing::debug_span!(
                parent: &request,
                "propose",
                proposal = 12,
                instance = tracing::field::Empty
            );
            propose.record("instance", 5);
            tracing::debug!(parent: &propose, outcome = "ok", index = 0, "answered");
            drop(propose);
        });
        let text = String::from_utf8(buffer.0.lock().expect("buffer").clone()).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "synod WARN: plain line", "{text}");
        assert_eq!(
            lines[1],
            "synod DEBUG: request{request=7 kind=\"propose\"}:propose{proposal=12 \
             instance=5}: answered outcome=\"ok\" index=0",
            "{text}"
        );
        assert!(
            lines[2].starts_with(
                "synod DEBUG: request{request=7 kind=\"propose\"}:propose{proposal=12 \
                 instance=5}: close time.busy="
            ),
            "{text}"
        );
    }
}
