//! Trace export for the benches: `AIMARKET_BENCH_TRACES=<ratio>` (e.g. `0.01`, `1.0`) installs
//! the hub's OTLP exporter with a `traceidratio` sampler, sending to a collector stand-in on
//! loopback that reads each export and answers 200 (so export costs what it costs against a
//! real collector, without one). Unset or `off`: no exporter, the hub's default.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

use aimarket_hub::settings::TelemetrySettings;
use aimarket_hub::telemetry::{LogFormat, TracesGuard, init_with_traces};

/// A minimal HTTP/1.1 sink on 127.0.0.1: every request is read (headers and
/// `Content-Length` body) and answered `200` with an empty body, keep-alive.
fn start_sink() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the OTLP sink");
    let addr = listener.local_addr().expect("sink address");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
                let mut writer = stream;
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let header = line.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = header.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                    if writer.write_all(answer).is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

/// Installs the exporter as `AIMARKET_BENCH_TRACES` says; returns a label for the report
/// and the guard to keep.
pub fn from_env() -> (String, Option<TracesGuard>) {
    let ratio = match std::env::var("AIMARKET_BENCH_TRACES") {
        Ok(v) if !v.trim().is_empty() && v.trim() != "off" => v
            .trim()
            .parse::<f64>()
            .expect("AIMARKET_BENCH_TRACES: off or a ratio"),
        _ => return ("tracing off".to_owned(), None),
    };
    let settings = TelemetrySettings {
        otlp_endpoint: Some(start_sink()),
        sampler: "traceidratio".to_owned(),
        sampler_arg: Some(ratio),
        ..TelemetrySettings::default()
    };
    let guard = init_with_traces(
        LogFormat::Text,
        Some("warn"),
        std::io::sink,
        Some(&settings),
    )
    .expect("install the exporter");
    (format!("tracing on, sample ratio {ratio}"), guard)
}
