//! Log output (text or JSON lines on stderr, filtered by the `log` key) and, when configured,
//! spans exported over OTLP/HTTP to a tracing backend such as Jaeger.

use std::time::Duration;

use fanout_core::trace::{self, SpanExporter, TraceParent};
use opentelemetry::{
    trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _},
    Context,
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{trace::SdkTracerProvider, Resource};
use serde::{Deserialize, Serialize};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer};

use crate::{LogFormat, ServiceError};

/// The standard variable naming the OTLP endpoint of every signal (a base URL; traces go to its
/// `/v1/traces`).
pub const OTLP_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The standard variable naming the OTLP endpoint of traces (the full URL).
pub const OTLP_TRACES_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// The standard variable that turns export off whatever else says (`true`).
pub const SDK_DISABLED_ENV: &str = "OTEL_SDK_DISABLED";
/// The standard variable naming the service in exported spans, over the process's own name.
pub const SERVICE_NAME_ENV: &str = "OTEL_SERVICE_NAME";

/// How long [`Telemetry::shutdown`] waits for the last spans to be exported.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// The `[telemetry]` section: where spans are exported. Without an endpoint here or in the
/// standard environment variables, nothing is exported and no exporter thread runs.
///
/// ```toml
/// [telemetry]
/// otlp_endpoint = "http://127.0.0.1:4318"   # OTLP/HTTP; FANOUT_TELEMETRY__OTLP_ENDPOINT
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP (protobuf) base URL spans are sent to, e.g. `http://127.0.0.1:4318` (they
    /// go to its `/v1/traces`). Unset: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` if either is set, else no export. `OTEL_SDK_DISABLED=true`
    /// turns export off regardless.
    pub otlp_endpoint: Option<String>,
}

/// Where spans go, once the configuration and the environment are read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Export {
    /// Nowhere.
    Off,
    /// To this URL (traces' own).
    To(String),
    /// Where the standard environment variables say; the exporter reads them.
    FromEnvironment,
}

impl TelemetryConfig {
    /// This configuration with the OTLP base URL `endpoint`.
    pub fn otlp(endpoint: impl Into<String>) -> Self {
        Self { otlp_endpoint: Some(endpoint.into()) }
    }

    fn export(&self, env: impl Fn(&str) -> Option<String>) -> Export {
        let set = |name: &str| env(name).filter(|value| !value.trim().is_empty());
        if set(SDK_DISABLED_ENV).is_some_and(|value| value.trim().eq_ignore_ascii_case("true")) {
            return Export::Off;
        }
        match self.otlp_endpoint.as_deref().map(str::trim) {
            Some(base) if !base.is_empty() => Export::To(format!("{}/v1/traces", base.trim_end_matches('/'))),
            _ if set(OTLP_TRACES_ENDPOINT_ENV).is_some() || set(OTLP_ENDPOINT_ENV).is_some() => {
                Export::FromEnvironment
            }
            _ => Export::Off,
        }
    }
}

/// The process's telemetry, as [`init_tracing`] installed it. Keep it until the end of `main`
/// and call [`Telemetry::shutdown`] there, so the last spans are exported; dropping it does the
/// same.
#[derive(Debug)]
#[must_use = "dropping Telemetry shuts span export down"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// True when spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends the spans ended so far now, instead of within the batch delay (5 s by default,
    /// `OTEL_BSP_SCHEDULE_DELAY`). Blocks until they are sent or refused.
    pub fn flush(&self) -> Result<(), ServiceError> {
        match &self.provider {
            Some(provider) => {
                provider.force_flush().map_err(|e| ServiceError::Telemetry(format!("flushing spans: {e}")))
            }
            None => Ok(()),
        }
    }

    /// Exports the spans not sent yet and stops the exporter (at most 5 s). Spans ended later are
    /// not exported.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(error) = provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
                eprintln!("telemetry: the last spans may not have been exported: {error}");
            }
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Installs the process-wide tracing subscriber: `filter` is a tracing directive (`info`,
/// `info,fanout_consumer=debug`), `format` text or JSON, output on stderr (stdout stays free for
/// a tool's own output). When `telemetry` (or the standard `OTEL_*` environment) names an OTLP
/// endpoint, the spans the filter lets through are also exported there under the service name
/// `service` (or `OTEL_SERVICE_NAME`), and events carry their publish span's context; see
/// [`fanout_core::trace`]. When a subscriber is already installed (several services in one
/// process, tests), the first one stays and this is not an error.
pub fn init_tracing(
    service: &str,
    filter: &str,
    format: LogFormat,
    telemetry: &TelemetryConfig,
) -> Result<Telemetry, ServiceError> {
    let filter =
        EnvFilter::try_new(filter).map_err(|e| ServiceError::Config(format!("log: {e} (in {filter:?})")))?;
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let provider = match telemetry.export(|name| std::env::var(name).ok()) {
        Export::Off => None,
        export => Some(provider(service, export)?),
    };
    let spans = provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("fanout")));
    let installed = tracing_subscriber::registry().with(filter).with(logs).with(spans).try_init();
    if installed.is_err() {
        tracing::debug!("a tracing subscriber is already installed; keeping it");
        if let Some(provider) = provider {
            let _ = provider.shutdown();
        }
        return Ok(Telemetry { provider: None });
    }
    if provider.is_some() && !trace::install(OpenTelemetrySpans) {
        tracing::debug!("a span exporter is already installed; keeping it");
    }
    Ok(Telemetry { provider })
}

/// The tracer provider exporting to `export` in batches, from a thread of its own.
fn provider(service: &str, export: Export) -> Result<SdkTracerProvider, ServiceError> {
    let builder = opentelemetry_otlp::SpanExporter::builder().with_http();
    let builder = match export {
        Export::To(url) => builder.with_endpoint(url),
        Export::Off | Export::FromEnvironment => builder,
    };
    let exporter = builder.build().map_err(|e| ServiceError::Telemetry(format!("the OTLP exporter: {e}")))?;
    let resource = match std::env::var(SERVICE_NAME_ENV) {
        Ok(name) if !name.trim().is_empty() => Resource::builder().build(),
        _ => Resource::builder().with_service_name(service.to_owned()).build(),
    };
    Ok(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
}

/// [`SpanExporter`] over `tracing-opentelemetry`: a `traceparent` becomes a span's remote parent,
/// and an exported span's context becomes a `traceparent`.
#[derive(Debug)]
struct OpenTelemetrySpans;

impl SpanExporter for OpenTelemetrySpans {
    fn set_remote_parent(&self, span: &tracing::Span, parent: TraceParent) {
        let context = SpanContext::new(
            TraceId::from(parent.trace_id),
            SpanId::from(parent.parent_id),
            TraceFlags::new(parent.flags),
            true,
            TraceState::default(),
        );
        // Fails only for a span that is not exported, whose parent does not matter.
        let _ = span.set_parent(Context::new().with_remote_span_context(context));
    }

    fn context(&self, span: &tracing::Span) -> Option<TraceParent> {
        // A disabled span's "context" is the current span's; that is not this span's.
        if span.is_disabled() {
            return None;
        }
        let context = span.context();
        let span_context = context.span().span_context().clone();
        span_context.is_valid().then(|| TraceParent {
            trace_id: u128::from_be_bytes(span_context.trace_id().to_bytes()),
            parent_id: u64::from_be_bytes(span_context.span_id().to_bytes()),
            flags: span_context.trace_flags().to_u8(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn nothing_is_exported_unless_an_endpoint_is_configured() {
        assert_eq!(TelemetryConfig::default().export(env(&[])), Export::Off);
        assert_eq!(TelemetryConfig::otlp(" ").export(env(&[])), Export::Off);
        assert_eq!(TelemetryConfig::default().export(env(&[(OTLP_ENDPOINT_ENV, "")])), Export::Off);
    }

    #[test]
    fn the_config_key_names_the_base_url_and_the_standard_variables_are_honoured() {
        assert_eq!(
            TelemetryConfig::otlp("http://127.0.0.1:4318/").export(env(&[])),
            Export::To("http://127.0.0.1:4318/v1/traces".into())
        );
        for var in [OTLP_ENDPOINT_ENV, OTLP_TRACES_ENDPOINT_ENV] {
            assert_eq!(
                TelemetryConfig::default().export(env(&[(var, "http://collector:4318")])),
                Export::FromEnvironment
            );
        }
        let disabled = [(SDK_DISABLED_ENV, "TRUE"), (OTLP_ENDPOINT_ENV, "http://collector:4318")];
        assert_eq!(TelemetryConfig::otlp("http://127.0.0.1:4318").export(env(&disabled)), Export::Off);
    }
}
