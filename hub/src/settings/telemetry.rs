//! Settings of trace export (`[telemetry]` in the TOML file). The environment names are the
//! OpenTelemetry SDK's standard ones; tracing is off unless an endpoint is configured.
//!
//! | TOML key (`[telemetry]`) | env                           | default                 |
//! |--------------------------|-------------------------------|-------------------------|
//! | `otlp_endpoint`          | `OTEL_EXPORTER_OTLP_ENDPOINT` | none (tracing off)      |
//! | `otlp_protocol`          | `OTEL_EXPORTER_OTLP_PROTOCOL` | `http/protobuf`         |
//! | `service_name`           | `OTEL_SERVICE_NAME`           | `aimarket-hub`          |
//! | `sampler`                | `OTEL_TRACES_SAMPLER`         | `parentbased_always_on` |
//! | `sampler_arg`            | `OTEL_TRACES_SAMPLER_ARG`     | 1.0                     |
//! | `resource_attributes`    | `OTEL_RESOURCE_ATTRIBUTES`    | empty                   |
//! | `queue_size`             | `AIMARKET_OTEL_QUEUE_SIZE`    | 2048                    |
//! | `metrics_exporter`       | `OTEL_METRICS_EXPORTER`       | `otlp` (with endpoint)  |
//! | `metric_export_interval_ms` | `OTEL_METRIC_EXPORT_INTERVAL` | 60000             |
//!
//! With an endpoint, metrics go to `<endpoint>/v1/metrics` too (the same series as
//! `GET /metrics`) unless `metrics_exporter` is `none`.

use serde::Deserialize;

use super::{EnvBinding, Settings, parse};

/// The one OTLP protocol the hub speaks.
pub const HTTP_PROTOBUF: &str = "http/protobuf";
/// Default `service.name`.
pub const DEFAULT_SERVICE_NAME: &str = "aimarket-hub";
/// Default sampler: follow the caller's decision, sample new traces.
pub const DEFAULT_SAMPLER: &str = "parentbased_always_on";
/// Default bound on spans waiting for export.
pub const DEFAULT_QUEUE_SIZE: usize = 2048;
/// Largest queue accepted.
pub const MAX_QUEUE_SIZE: usize = 1_000_000;
/// Default metric export interval (ms), the SDK's standard default.
pub const DEFAULT_METRIC_INTERVAL_MS: u64 = 60_000;
/// Shortest metric export interval accepted (ms).
pub const MIN_METRIC_INTERVAL_MS: u64 = 100;
/// The `OTEL_METRICS_EXPORTER` values the hub understands.
pub const METRICS_EXPORTERS: [&str; 2] = ["otlp", "none"];
/// The sampler names of the OpenTelemetry specification the hub implements.
pub const SAMPLERS: [&str; 6] = [
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
];

/// The `[telemetry]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// Base URL of the OTLP/HTTP collector (`OTEL_EXPORTER_OTLP_ENDPOINT`); spans go to
    /// `<endpoint>/v1/traces`. `None`: no exporter, no spans built.
    pub otlp_endpoint: Option<String>,
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`: only `http/protobuf`.
    pub otlp_protocol: String,
    /// `service.name` of the resource (`OTEL_SERVICE_NAME`).
    pub service_name: String,
    /// `OTEL_TRACES_SAMPLER`: one of [`SAMPLERS`].
    pub sampler: String,
    /// `OTEL_TRACES_SAMPLER_ARG`: the ratio of the `*traceidratio` samplers, 0 to 1.
    pub sampler_arg: Option<f64>,
    /// More resource attributes, `key=value,key=value` (`OTEL_RESOURCE_ATTRIBUTES`).
    pub resource_attributes: String,
    /// Spans waiting for export at most (`AIMARKET_OTEL_QUEUE_SIZE`); more are dropped and
    /// counted in `aimarket_otel_spans_dropped_total{reason="queue_full"}`.
    pub queue_size: usize,
    /// `OTEL_METRICS_EXPORTER`: `otlp` (export the metrics when there is an endpoint) or
    /// `none` (traces only).
    pub metrics_exporter: String,
    /// `OTEL_METRIC_EXPORT_INTERVAL`: milliseconds between two metric exports.
    pub metric_export_interval_ms: u64,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            otlp_protocol: HTTP_PROTOBUF.to_owned(),
            service_name: DEFAULT_SERVICE_NAME.to_owned(),
            sampler: DEFAULT_SAMPLER.to_owned(),
            sampler_arg: None,
            resource_attributes: String::new(),
            queue_size: DEFAULT_QUEUE_SIZE,
            metrics_exporter: "otlp".to_owned(),
            metric_export_interval_ms: DEFAULT_METRIC_INTERVAL_MS,
        }
    }
}

impl TelemetrySettings {
    /// Whether traces are exported.
    pub fn enabled(&self) -> bool {
        self.otlp_endpoint.is_some()
    }

    /// Whether metrics are exported over OTLP.
    pub fn metrics_enabled(&self) -> bool {
        self.enabled() && self.metrics_exporter == "otlp"
    }

    /// Time between two metric exports.
    pub fn metric_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.metric_export_interval_ms)
    }

    /// Checks the values; the error names the TOML key, the value and the reason.
    pub fn check(&self) -> Result<(), (&'static str, String, String)> {
        if let Some(endpoint) = &self.otlp_endpoint {
            check_endpoint(endpoint)
                .map_err(|r| ("telemetry.otlp_endpoint", endpoint.clone(), r))?;
        }
        check_protocol(&self.otlp_protocol)
            .map_err(|r| ("telemetry.otlp_protocol", self.otlp_protocol.clone(), r))?;
        if self.service_name.trim().is_empty() {
            return Err((
                "telemetry.service_name",
                self.service_name.clone(),
                "must not be empty".into(),
            ));
        }
        check_sampler(&self.sampler).map_err(|r| ("telemetry.sampler", self.sampler.clone(), r))?;
        if let Some(arg) = self.sampler_arg {
            check_ratio(arg).map_err(|r| ("telemetry.sampler_arg", arg.to_string(), r))?;
        }
        resource_pairs(&self.resource_attributes).map_err(|r| {
            (
                "telemetry.resource_attributes",
                self.resource_attributes.clone(),
                r,
            )
        })?;
        check_queue(self.queue_size)
            .map_err(|r| ("telemetry.queue_size", self.queue_size.to_string(), r))?;
        check_metrics_exporter(&self.metrics_exporter).map_err(|r| {
            (
                "telemetry.metrics_exporter",
                self.metrics_exporter.clone(),
                r,
            )
        })?;
        check_metric_interval(self.metric_export_interval_ms).map_err(|r| {
            (
                "telemetry.metric_export_interval_ms",
                self.metric_export_interval_ms.to_string(),
                r,
            )
        })
    }

    /// The ratio of the ratio samplers (1.0 unless set).
    pub fn ratio(&self) -> f64 {
        self.sampler_arg.unwrap_or(1.0)
    }
}

/// Rule of the endpoint: an absolute `http` or `https` URL.
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let url = url::Url::parse(endpoint.trim()).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("must be an http:// or https:// URL".into());
    }
    Ok(())
}

/// Rule of the protocol.
pub fn check_protocol(protocol: &str) -> Result<(), String> {
    if protocol != HTTP_PROTOBUF {
        return Err(format!(
            "only {HTTP_PROTOBUF} is supported (point the hub at a collector's OTLP/HTTP port, 4318)"
        ));
    }
    Ok(())
}

/// Rule of the sampler name.
pub fn check_sampler(sampler: &str) -> Result<(), String> {
    if !SAMPLERS.contains(&sampler) {
        return Err(format!("must be one of {}", SAMPLERS.join(", ")));
    }
    Ok(())
}

/// Rule of the sampler ratio.
pub fn check_ratio(ratio: f64) -> Result<(), String> {
    if !(0.0..=1.0).contains(&ratio) {
        return Err("must be between 0 and 1".into());
    }
    Ok(())
}

/// Rule of the queue bound.
pub fn check_queue(size: usize) -> Result<(), String> {
    if !(1..=MAX_QUEUE_SIZE).contains(&size) {
        return Err(format!("must be between 1 and {MAX_QUEUE_SIZE}"));
    }
    Ok(())
}

/// Rule of `OTEL_METRICS_EXPORTER`.
pub fn check_metrics_exporter(exporter: &str) -> Result<(), String> {
    if !METRICS_EXPORTERS.contains(&exporter) {
        return Err(format!("must be one of {}", METRICS_EXPORTERS.join(", ")));
    }
    Ok(())
}

/// Rule of the metric export interval.
pub fn check_metric_interval(ms: u64) -> Result<(), String> {
    if ms < MIN_METRIC_INTERVAL_MS {
        return Err(format!("must be at least {MIN_METRIC_INTERVAL_MS} ms"));
    }
    Ok(())
}

/// `key=value,key=value` as pairs (spaces around items ignored; empty input is none).
pub fn resource_pairs(raw: &str) -> Result<Vec<(String, String)>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("`{item}` is not key=value"))?;
            let key = key.trim();
            if key.is_empty() {
                return Err(format!("`{item}` has an empty key"));
            }
            Ok((key.to_owned(), value.trim().to_owned()))
        })
        .collect()
}

/// The environment variables of this table.
pub(super) const ENV_BINDINGS: &[EnvBinding] = &[
    EnvBinding {
        env: "OTEL_EXPORTER_OTLP_ENDPOINT",
        setting: "telemetry.otlp_endpoint",
        shown: str::to_owned,
        apply: |s: &mut Settings, v| {
            let v = v.trim();
            s.telemetry.otlp_endpoint = if v.is_empty() {
                None
            } else {
                check_endpoint(v)?;
                Some(v.to_owned())
            };
            Ok(())
        },
    },
    EnvBinding {
        env: "OTEL_EXPORTER_OTLP_PROTOCOL",
        setting: "telemetry.otlp_protocol",
        shown: str::to_owned,
        apply: |s: &mut Settings, v| {
            check_protocol(v.trim())?;
            s.telemetry.otlp_protocol = v.trim().to_owned();
            Ok(())
        },
    },
    EnvBinding {
        env: "OTEL_SERVICE_NAME",
        setting: "telemetry.service_name",
        shown: str::to_owned,
        apply: |s: &mut Settings, v| {
            s.telemetry.service_name = v.trim().to_owned();
            Ok(())
        },
    },
    EnvBinding {
        env: "OTEL_TRACES_SAMPLER",
        setting: "telemetry.sampler",
        shown: str::to_owned,
        apply: |s: &mut Settings, v| {
            check_sampler(v.trim())?;
            s.telemetry.sampler = v.trim().to_owned();
            Ok(())
        },
    },
    EnvBinding {
        env: "OTEL_TRACES_SAMPLER_ARG",
        setting: "telemetry.sampler_arg",
        shown: str::to_owned,
        apply: |s: &mut Settings, v| {
            let ratio: f64 = parse(v)?;
            check_ratio(ratio)?;
            s.telemetry.sampler_arg = Some(ratio);
            Ok(())
        },
    },
    EnvBinding {
        env: "OTEL_RESOURCE_ATTRIBUTES",
        setting: "telemetry.resource_attributes",
        shown: str::to_owned,
        apply: |s: &mut Settings, v| {
            resource_pairs(v)?;
            s.telemetry.resource_attributes = v.to_owned();
            Ok(())
        },
    },
    EnvBinding {
        env: "AIMARKET_OTEL_QUEUE_SIZE",
        setting: "telemetry.queue_size",
        shown: str::to_owned,
        apply: |s: &mut Settings, v| {
            s.telemetry.queue_size = parse(v)?;
            check_queue(s.telemetry.queue_size)
        },
    },
    EnvBinding {
        env: "OTEL_METRICS_EXPORTER",
        setting: "telemetry.metrics_exporter",
        shown: str::to_owned,
        apply: |s: &mut Settings, v| {
            check_metrics_exporter(v.trim())?;
            s.telemetry.metrics_exporter = v.trim().to_owned();
            Ok(())
        },
    },
    EnvBinding {
        env: "OTEL_METRIC_EXPORT_INTERVAL",
        setting: "telemetry.metric_export_interval_ms",
        shown: str::to_owned,
        apply: |s: &mut Settings, v| {
            s.telemetry.metric_export_interval_ms = parse(v)?;
            check_metric_interval(s.telemetry.metric_export_interval_ms)
        },
    },
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_are_off_and_valid_and_bad_values_are_named() {
        let d = TelemetrySettings::default();
        assert!(!d.enabled());
        assert_eq!(d.check(), Ok(()));
        let bad = |t: TelemetrySettings| t.check().unwrap_err().0;
        assert_eq!(
            bad(TelemetrySettings {
                otlp_endpoint: Some("ftp://x".into()),
                ..TelemetrySettings::default()
            }),
            "telemetry.otlp_endpoint"
        );
        assert_eq!(
            bad(TelemetrySettings {
                otlp_protocol: "grpc".into(),
                ..TelemetrySettings::default()
            }),
            "telemetry.otlp_protocol"
        );
        assert_eq!(
            bad(TelemetrySettings {
                sampler: "sometimes".into(),
                ..TelemetrySettings::default()
            }),
            "telemetry.sampler"
        );
        assert_eq!(
            bad(TelemetrySettings {
                sampler_arg: Some(1.5),
                ..TelemetrySettings::default()
            }),
            "telemetry.sampler_arg"
        );
        assert_eq!(
            bad(TelemetrySettings {
                resource_attributes: "a=1,b".into(),
                ..TelemetrySettings::default()
            }),
            "telemetry.resource_attributes"
        );
        assert_eq!(
            bad(TelemetrySettings {
                queue_size: 0,
                ..TelemetrySettings::default()
            }),
            "telemetry.queue_size"
        );
        assert_eq!(
            bad(TelemetrySettings {
                metrics_exporter: "prometheus".into(),
                ..TelemetrySettings::default()
            }),
            "telemetry.metrics_exporter"
        );
        assert_eq!(
            bad(TelemetrySettings {
                metric_export_interval_ms: 5,
                ..TelemetrySettings::default()
            }),
            "telemetry.metric_export_interval_ms"
        );
        let traces_only = TelemetrySettings {
            otlp_endpoint: Some("http://127.0.0.1:4318".into()),
            metrics_exporter: "none".into(),
            ..TelemetrySettings::default()
        };
        assert!(traces_only.enabled() && !traces_only.metrics_enabled());
    }

    #[test]
    fn resource_attributes_parse_as_pairs() {
        assert_eq!(
            resource_pairs(" deployment.environment=prod , team = market ").unwrap(),
            vec![
                ("deployment.environment".into(), "prod".into()),
                ("team".into(), "market".into())
            ]
        );
        assert!(resource_pairs("").unwrap().is_empty());
    }
}
