//! `--debug`: every `tracing` event and span of vzrun, libcontainer and libcgroups, as
//! runc-shaped lines (logrus text, or JSON for `--log-format json`). A span is a timed
//! step: it is logged once, when it ends, with how long it took.
//!
//! Installed only with `--debug`. Without it no subscriber exists, tracing's global level
//! stays OFF, and each `tracing::debug!` in the code is one relaxed atomic load: the
//! fields of a disabled event are never evaluated.

use std::fs::File;
use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::{span, Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use super::LogFormat;

/// The most detailed level logged: libcontainer's `trace` events (each syscall wrapper)
/// would drown the steps.
const MOST: LevelFilter = LevelFilter::DEBUG;

/// Writes each line with one `write(2)` on its own descriptor: the forked intermediate
/// and init processes of libcontainer log through the same layer, and their lines must
/// neither interleave with the parent's nor go to the container's stdio (which is fd 2
/// in the init by the time it logs).
struct Lines {
    out: File,
    format: LogFormat,
}

/// The message and the other fields of an event or span, in the order given.
#[derive(Default)]
struct Fields {
    msg: Option<String>,
    kv: Vec<(&'static str, Value)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::from(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::from(format!("{value:?}")));
    }
}

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.msg = Some(match value {
                Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.kv.push((field.name(), value));
        }
    }
}

/// What a span keeps until it closes.
struct Step {
    start: Instant,
    fields: Fields,
}

/// logrus' level names (it says "warning", not "warn").
fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warning",
        Level::ERROR => "error",
    }
}

/// A duration as a person reads it: 840µs, 12.3ms, 1.52s.
pub fn human(d: Duration) -> String {
    let us = d.as_micros();
    if us < 1000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        format!("{:.1}ms", us as f64 / 1000.0)
    } else {
        format!("{:.2}s", d.as_secs_f64())
    }
}

impl Lines {
    fn emit(&self, level: &Level, msg: &str, kv: &[(&'static str, Value)]) {
        let line = super::render_with(self.format, level_name(level), msg, kv);
        let _ = (&self.out).write_all(line.as_bytes());
    }
}

impl<S> Layer<S> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn enabled(&self, meta: &Metadata<'_>, _: Context<'_, S>) -> bool {
        MOST >= *meta.level()
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        span.extensions_mut().insert(Step {
            start: Instant::now(),
            fields,
        });
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(step) = span.extensions_mut().get_mut::<Step>() {
                values.record(&mut step.fields);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let msg = fields.msg.unwrap_or_default();
        self.emit(event.metadata().level(), &msg, &fields.kv);
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let Some(step) = span.extensions_mut().remove::<Step>() else {
            return;
        };
        let mut kv = step.fields.kv;
        kv.push(("took", Value::from(human(step.start.elapsed()))));
        let msg = match step.fields.msg {
            Some(m) => format!("{}: {m}", span.name()),
            None => span.name().to_string(),
        };
        self.emit(span.metadata().level(), &msg, &kv);
    }
}

/// Makes `out` the destination of every event and span from here on, in this process and
/// in the processes it forks.
pub(super) fn install(out: File, format: LogFormat) {
    let layer = Lines { out, format };
    let subscriber = tracing_subscriber::registry().with(layer);
    // Fails only when a subscriber is already set: init runs once per process.
    let _ = tracing::subscriber::set_global_default(subscriber);
    tracing::callsite::rebuild_interest_cache();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human(Duration::from_micros(840)), "840µs");
        assert_eq!(human(Duration::from_micros(12_345)), "12.3ms");
        assert_eq!(human(Duration::from_millis(1520)), "1.52s");
    }

    #[test]
    fn events_and_spans_become_lines_with_fields_and_timings() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let layer = Lines {
            out: file.reopen().unwrap(),
            format: LogFormat::Json,
        };
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::debug_span!("netlink", op = "add address 198.51.100.7/32");
            let _e = span.enter();
            tracing::debug!(path = "/sys/fs/cgroup/x", n = 3, "cgroup write");
            tracing::trace!("too fine to log");
        });
        let text = std::fs::read_to_string(file.path()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["msg"], "cgroup write");
        assert_eq!(lines[0]["level"], "debug");
        assert_eq!(lines[0]["n"], 3);
        assert_eq!(lines[0]["path"], "/sys/fs/cgroup/x");
        assert_eq!(lines[1]["msg"], "netlink");
        assert_eq!(lines[1]["op"], "add address 198.51.100.7/32");
        assert!(lines[1]["took"].is_string(), "{text}");
        assert!(lines[1]["time"].is_string(), "{text}");
    }
}
