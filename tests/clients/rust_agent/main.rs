//! The published Rust SDK (`aimarket-agent` = "=0.3.0", built from crates.io in a throwaway
//! cargo project by tests/e2e/sdk_clients.rs) against our demo hub: search, a paid invoke on
//! a channel the hub does not know (a 402 whose detail says where to open one), channel
//! open, paid invokes with and without `product_id`, a batch, the balance, close. Prints
//! one `RESULT: {json}` line for the test to assert.

use aimarket_agent::{AimarketAgent, AimarketAgentConfig, AimarketError};
use serde_json::{Value, json};

const MORSE: &str = "translate.morse@v1";
const SENTIMENT: &str = "analyze.sentiment@v1";

fn summary(r: &aimarket_agent::InvokeResult) -> Value {
    json!({
        "success": r.success,
        "price_usd": r.price_usd,
        "result": r.result,
        "error": r.error,
        "receipt_nonce": r.receipt.as_ref().and_then(|x| x.get("nonce")).cloned(),
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hub = std::env::args().nth(1).ok_or("usage: rust_agent HUB_URL")?;
    // No retries: a failure must show, not be retried into a pass.
    let agent = AimarketAgent::with_config(AimarketAgentConfig {
        max_retries: 0,
        ..AimarketAgentConfig::new(&hub, "e2e-rust-wallet")
    });
    let mut out = serde_json::Map::new();

    let well_known: Value = serde_json::from_str(&agent.well_known().await?)?;
    out.insert(
        "min_trust_score".into(),
        well_known["federation"]["min_trust_score"].clone(),
    );

    let plan = agent
        .discover("translate text to morse code", None, Some(5), None)
        .await?;
    let morse = plan
        .iter()
        .find(|s| s.capability.capability_id == MORSE)
        .ok_or("search found no morse capability")?
        .capability
        .clone();
    out.insert(
        "search".into(),
        json!({
            "count": plan.len(),
            "first": plan.first().map(|s| s.capability.capability_id.clone()),
            "morse_product": morse.product_id,
            "morse_source_hub": morse.source_hub,
            "morse_trust": morse.trust_score,
        }),
    );

    // A channel id this hub never issued: the SDK's payment error carries the hub's detail.
    let unknown = agent
        .invoke(
            MORSE,
            json!({"text": "SOS"}),
            "ch_opened_at_the_factory",
            Some(&morse.product_id),
            None,
            None,
        )
        .await;
    out.insert(
        "unknown_channel".into(),
        match unknown {
            Err(AimarketError::Payment(message)) => json!({"payment_error": message}),
            Err(other) => json!({"other_error": other.to_string()}),
            Ok(r) => json!({"accepted": summary(&r)}),
        },
    );

    let channel = agent.open_channel(1.0, "USDC", "base", None).await?;
    out.insert(
        "channel".into(),
        json!({"id": channel.channel_id, "deposit_usd": channel.deposit_usd,
               "balance_usd": channel.balance_usd,
               "has_secret": channel.channel_secret.is_some()}),
    );

    let with_product = agent
        .invoke(
            MORSE,
            json!({"text": "SOS"}),
            &channel.channel_id,
            Some(&morse.product_id),
            Some(&morse.source_hub),
            None,
        )
        .await?;
    out.insert("with_product".into(), summary(&with_product));

    let without_product = agent
        .invoke(
            MORSE,
            json!({"text": "HI"}),
            &channel.channel_id,
            None,
            None,
            None,
        )
        .await?;
    out.insert("without_product".into(), summary(&without_product));

    let batch = agent
        .invoke_batch(
            &[MORSE.to_owned(), SENTIMENT.to_owned()],
            &[json!({"text": "OK"}), json!({"text": "I love this phone"})],
            &channel.channel_id,
            None,
        )
        .await?;
    out.insert(
        "batch".into(),
        Value::Array(batch.iter().map(summary).collect()),
    );

    out.insert(
        "balance_usd".into(),
        json!(agent.get_channel_balance(&channel.channel_id).await?),
    );
    let settlement = agent.close_channel(&channel.channel_id).await?;
    out.insert("settlement".into(), serde_json::to_value(settlement)?);
    println!("RESULT: {}", Value::Object(out));
    Ok(())
}
