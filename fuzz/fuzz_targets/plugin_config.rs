//! Plugin configuration: `[[plugins]]` TOML (the operator's `--config` file) and its JSON
//! form, then building the chain with the built-in factories (each validates its settings),
//! describing it (secrets redacted) and matching its glob patterns.
#![no_main]

use aimarket_plugins::RegistryConfig;
use aimarket_plugins::glob::Glob;
use aimarket_plugins::registry::RegistryBuilder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Glob patterns as allow/deny lists read them, matched against the input itself.
    if let Some((pattern, subject)) = text.split_once('\n')
        && let Some(glob) = Glob::new(pattern)
    {
        let _ = glob.matches(subject);
    }
    let config = match RegistryConfig::from_toml_str(text) {
        Ok(config) => Some(config),
        Err(_) => serde_json::from_str(text)
            .ok()
            .and_then(|v| RegistryConfig::from_json(&v).ok()),
    };
    let Some(config) = config else { return };
    // Some plugins (the webhook) start background work: give them a runtime.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        if let Ok(registry) = RegistryBuilder::new().build(&config) {
            let _ = registry.describe();
            let _ = registry.routes();
            let _ = registry.well_known_extensions();
        }
    });
});
