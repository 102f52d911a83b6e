// The published TypeScript SDK (@aimarket/agent 0.2.1, installed from npm by
// tests/e2e/sdk_clients.rs) against our demo hub: search, a paid invoke on a channel the
// hub does not know (the SDK sees a 402 and its "open a channel and retry" path recovers),
// channel open, paid invokes with and without product_id, a batch, the balance, close.
// Prints one `RESULT: {json}` line for the test to assert.
'use strict';

const { AimarketAgent, AimarketPaymentException } = require('@aimarket/agent');

const MORSE = 'translate.morse@v1';
const SENTIMENT = 'analyze.sentiment@v1';

async function main() {
  const hub = process.argv[2];
  // maxRetries 0: a failure must show, not be retried into a pass.
  const agent = new AimarketAgent({ hubUrl: hub, walletKey: 'e2e-ts-wallet', maxRetries: 0 });
  const out = {};

  const wellKnown = JSON.parse(await agent.wellKnown());
  out.min_trust_score = wellKnown.federation.min_trust_score;

  const plan = await agent.discover({ intent: 'translate text to morse code', limit: 5 });
  const morse = plan.find((s) => s.capability.capability_id === MORSE);
  out.search = {
    count: plan.length,
    first: plan[0] && plan[0].capability.capability_id,
    morse_product: morse && morse.capability.product_id,
    morse_source_hub: morse && morse.capability.source_hub,
    morse_trust: morse && morse.capability.trust_score,
  };

  // A channel id this hub never issued (say, one opened at the factory): a 402, which the
  // SDK reports as a payment problem it knows how to recover from.
  try {
    await agent.invoke({
      capabilityId: MORSE,
      productId: morse.capability.product_id,
      input: { text: 'SOS' },
      channelId: 'ch_opened_at_the_factory',
    });
    out.unknown_channel = 'accepted';
  } catch (e) {
    out.unknown_channel = {
      payment_exception: e instanceof AimarketPaymentException,
      status: e.statusCode,
    };
  }

  const channel = await agent.openChannel(1.0);
  out.channel = {
    id: channel.channel_id,
    deposit_usd: channel.deposit_usd,
    balance_usd: channel.balance_usd,
    has_secret: typeof channel.channel_secret === 'string',
  };

  const withProduct = await agent.invoke({
    capabilityId: MORSE,
    productId: morse.capability.product_id,
    sourceHub: morse.capability.source_hub,
    input: { text: 'SOS' },
    channelId: channel.channel_id,
  });
  out.with_product = {
    success: withProduct.success,
    price_usd: withProduct.price_usd,
    result: withProduct.result || null,
    receipt_nonce: withProduct.receipt && withProduct.receipt.nonce,
  };

  const withoutProduct = await agent.invoke({
    capabilityId: MORSE,
    input: { text: 'HI' },
    channelId: channel.channel_id,
  });
  out.without_product = {
    success: withoutProduct.success,
    price_usd: withoutProduct.price_usd,
    result: withoutProduct.result || null,
    error: withoutProduct.error || null,
  };

  const batch = await agent.invokeBatch({
    capabilityIds: [MORSE, SENTIMENT],
    inputs: [{ text: 'OK' }, { text: 'I love this phone' }],
    channelId: channel.channel_id,
  });
  out.batch = batch.map((r) => ({
    success: r.success,
    price_usd: r.price_usd,
    result: r.result || null,
    error: r.error || null,
  }));

  out.balance_usd = await agent.getChannelBalance(channel.channel_id);
  out.settlement = await agent.closeChannel(channel.channel_id);
  console.log('RESULT: ' + JSON.stringify(out));
}

main().catch((e) => {
  console.error('FAILED:', e && e.stack ? e.stack : e);
  process.exit(1);
});
