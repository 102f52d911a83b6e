//! The escrow contract `contracts/AIMarketEscrow.sol` on anvil: compiled with solc from npm,
//! deployed with the test token, and driven over JSON-RPC. Every signature here is made by
//! the hub's own `DebitAuthorization` code, so the contract and the hub agree on the digest.

use aimarket_e2e::chain::{CHAIN_ID, Chain, dev_account};
use aimarket_hub::payments::chain::{GasPolicy, HubWallet, JsonRpc, SendState, WalletKey};
use aimarket_hub::payments::escrow::{
    DEBIT_TYPE, DebitAuthorization, EscrowDomain, OnChainChannel, OnChainStatus, SignedDebit,
    approveCall, expireChannelCall, openChannelCall, read_channel, receipt_used, refundChannelCall,
    settle_calldata, sign_debit,
};
use alloy_primitives::{Address, B256, U256, keccak256};
use alloy_sol_types::{SolCall, SolError, sol};
use serde_json::{Value, json};

sol! {
    error ChannelExists(bytes32 channelId);
    error ChannelNotOpen(bytes32 channelId);
    error ZeroAmount();
    error ChannelExpired(bytes32 channelId);
    error NotExpired(bytes32 channelId, uint64 expiresAt);
    error AuthorizationExpired(uint256 deadline);
    error WrongHub(address boundHub);
    error ReceiptAlreadyUsed(bytes32 receiptId);
    error InsufficientDeposit(uint256 available, uint256 amount);
    error InvalidSignature();
    error NotDepositor();
    error NotAuthorized();
    error AlreadyDebited(bytes32 channelId);
    function debitDigest(bytes32 channelId, address hub, uint256 amount, bytes32 receiptId, uint256 nonce, uint256 deadline) external view returns (bytes32);
    function domainSeparator() external view returns (bytes32);
    function DEBIT_TYPEHASH() external view returns (bytes32);
}

pub(crate) const DEPOSITOR: usize = 1;
pub(crate) const OTHER: usize = 2;
pub(crate) const HUB: usize = 3;
/// What the depositor holds before anything happens.
pub(crate) const MINTED: u64 = 10_000_000;

/// Anvil with the test token and the escrow; the depositor holds [`MINTED`].
pub(crate) struct Escrow {
    pub chain: Chain,
    pub token: String,
    pub contract: String,
    pub domain: EscrowDomain,
    rpc: JsonRpc,
}

impl Escrow {
    pub(crate) async fn start() -> Option<Self> {
        let chain = Chain::start().await?;
        let token = chain.deploy_token().await;
        let contract = chain.deploy_escrow().await;
        chain.mint(&token, &dev_account(DEPOSITOR).1, MINTED).await;
        let domain = EscrowDomain {
            chain_id: CHAIN_ID,
            contract: contract.parse().unwrap(),
        };
        let rpc = JsonRpc::new(chain.url.parse().unwrap()).unwrap();
        Some(Self {
            chain,
            token,
            contract,
            domain,
            rpc,
        })
    }

    /// The depositor approves and opens `id` with `amount`.
    pub(crate) async fn open(&self, id: B256, amount: u64) {
        let depositor = dev_account(DEPOSITOR).1;
        let approve = approveCall {
            spender: self.contract.parse().unwrap(),
            value: U256::from(amount),
        };
        self.chain
            .send_ok(&depositor, &self.token, &approve.abi_encode())
            .await;
        let open = openChannelCall {
            channelId: id,
            token: self.token.parse().unwrap(),
            depositAmount: U256::from(amount),
        };
        self.chain
            .send_ok(&depositor, &self.contract, &open.abi_encode())
            .await;
    }

    pub(crate) async fn channel(&self, id: B256) -> OnChainChannel {
        read_channel(&self.rpc, self.domain.contract, id)
            .await
            .unwrap()
    }

    pub(crate) async fn balance(&self, who: &str) -> u128 {
        self.chain.balance(&self.token, who).await
    }

    /// Timestamp of the latest block.
    pub(crate) async fn now(&self) -> u64 {
        let block = self
            .chain
            .rpc("eth_getBlockByNumber", json!(["latest", false]))
            .await;
        u64::from_str_radix(
            block["timestamp"]
                .as_str()
                .unwrap()
                .trim_start_matches("0x"),
            16,
        )
        .unwrap()
    }

    /// A debit of `amount` for `hub` signed by `key` under `domain`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn sign(
        &self,
        key: &WalletKey,
        id: B256,
        hub: Address,
        amount: u64,
        receipt: u8,
        nonce: u64,
        deadline: u64,
    ) -> SignedDebit {
        let message = DebitAuthorization {
            channelId: id,
            hub,
            token: self.token.parse().unwrap(),
            amount: U256::from(amount),
            receiptId: B256::repeat_byte(receipt),
            nonce: U256::from(nonce),
            deadline: U256::from(deadline),
        };
        sign_debit(key, &self.domain, &message).unwrap()
    }

    /// `from` presents `debit`: the revert (from a simulation) or the mined success.
    pub(crate) async fn debit(&self, from: usize, debit: &SignedDebit) -> Result<(), Value> {
        self.transact(from, &debit.debit_calldata()).await
    }

    async fn transact(&self, from: usize, data: &[u8]) -> Result<(), Value> {
        let from = dev_account(from).1;
        self.chain.call(&from, &self.contract, data).await?;
        self.chain.send_ok(&from, &self.contract, data).await;
        Ok(())
    }
}

#[track_caller]
fn assert_reverts(result: Result<(), Value>, selector: [u8; 4], what: &str) {
    let error = result.expect_err(what);
    let data = error["data"].as_str().unwrap_or_default();
    assert!(
        data.starts_with(&format!("0x{}", alloy_primitives::hex::encode(selector))),
        "{what}: expected error 0x{}, got {error}",
        alloy_primitives::hex::encode(selector)
    );
}

fn channel_id(byte: u8) -> B256 {
    B256::repeat_byte(byte)
}

#[tokio::test]
async fn open_debit_each_bad_field_replay_wrong_hub_and_settle() {
    let Some(e) = Escrow::start().await else {
        return;
    };
    let (depositor_key, depositor) = dev_account(DEPOSITOR);
    let (other_key, other) = dev_account(OTHER);
    let (_, hub) = dev_account(HUB);
    let hub_address: Address = hub.parse().unwrap();
    let id = channel_id(0xc1);
    e.open(id, 1_000_000).await;
    let c = e.channel(id).await;
    assert_eq!(c.status, OnChainStatus::Open);
    assert_eq!(format!("{:#x}", c.depositor), depositor);
    assert_eq!(format!("{:#x}", c.token), e.token);
    assert_eq!(c.deposit, U256::from(1_000_000));
    assert_eq!(c.hub, Address::ZERO);
    assert_eq!(c.expires_at, e.now().await + 24 * 3600);
    assert_eq!(e.balance(&e.contract).await, 1_000_000);
    assert_eq!(e.balance(&depositor).await, u128::from(MINTED) - 1_000_000);
    // One id, one channel; nothing for nothing.
    let reopen = openChannelCall {
        channelId: id,
        token: e.token.parse().unwrap(),
        depositAmount: U256::from(1),
    };
    assert_reverts(
        e.transact(DEPOSITOR, &reopen.abi_encode()).await,
        ChannelExists::SELECTOR,
        "reopen",
    );
    let zero = openChannelCall {
        depositAmount: U256::ZERO,
        channelId: channel_id(0xc2),
        ..reopen
    };
    assert_reverts(
        e.transact(DEPOSITOR, &zero.abi_encode()).await,
        ZeroAmount::SELECTOR,
        "zero",
    );

    // The contract's typehash, domain and digest are the hub's.
    let contract = e.contract.clone();
    let read = |data: Vec<u8>| {
        let (chain, contract, hub) = (&e.chain, contract.clone(), hub.clone());
        async move { chain.call(&hub, &contract, &data).await.unwrap() }
    };
    assert_eq!(
        read(DEBIT_TYPEHASHCall {}.abi_encode()).await,
        keccak256(DEBIT_TYPE).to_vec()
    );
    assert_eq!(
        read(domainSeparatorCall {}.abi_encode()).await,
        e.domain.separator().to_vec()
    );
    let deadline = e.now().await + 3600;
    let first = e.sign(&depositor_key, id, hub_address, 250_000, 1, 0, deadline);
    let digest = debitDigestCall {
        channelId: id,
        hub: hub_address,
        amount: first.amount,
        receiptId: first.receipt_id,
        nonce: first.nonce,
        deadline: first.deadline,
    };
    assert_eq!(
        read(digest.abi_encode()).await,
        first.digest(&e.domain).to_vec()
    );

    // Each field other than what was signed: the signature no longer recovers the depositor.
    let invalid = InvalidSignature::SELECTOR;
    let mut changed = first.clone();
    changed.amount = U256::from(250_001);
    assert_reverts(e.debit(HUB, &changed).await, invalid, "amount");
    changed = first.clone();
    changed.receipt_id = B256::repeat_byte(9);
    assert_reverts(e.debit(HUB, &changed).await, invalid, "receiptId");
    changed = first.clone();
    changed.deadline += U256::from(1);
    assert_reverts(e.debit(HUB, &changed).await, invalid, "deadline");
    let signed_for_other_channel = e.sign(
        &depositor_key,
        channel_id(0xc3),
        hub_address,
        250_000,
        1,
        0,
        deadline,
    );
    changed = signed_for_other_channel;
    changed.channel_id = id;
    assert_reverts(e.debit(HUB, &changed).await, invalid, "channelId");
    let mut wrong_token = first.clone();
    wrong_token.token = Address::repeat_byte(7);
    let wrong_token = sign_debit(&depositor_key, &e.domain, &wrong_token.message()).unwrap();
    assert_reverts(e.debit(HUB, &wrong_token).await, invalid, "token");
    let wrong_nonce = e.sign(&depositor_key, id, hub_address, 250_000, 1, 1, deadline);
    assert_reverts(e.debit(HUB, &wrong_nonce).await, invalid, "nonce");
    let not_depositor = e.sign(&other_key, id, hub_address, 250_000, 1, 0, deadline);
    assert_reverts(e.debit(HUB, &not_depositor).await, invalid, "signer");
    // The same signature with s mirrored (n - s) recovers the same signer: refused.
    let mut malleable = first.clone();
    let n = U256::from_str_radix(
        "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
        16,
    )
    .unwrap();
    malleable.signature = alloy_primitives::Signature::new(
        first.signature.r(),
        n - first.signature.s(),
        !first.signature.v(),
    );
    assert_reverts(e.debit(HUB, &malleable).await, invalid, "high s");
    // Signed for the hub, presented by someone else.
    assert_reverts(e.debit(OTHER, &first).await, invalid, "presenter");
    // Past its deadline.
    let stale = e.sign(
        &depositor_key,
        id,
        hub_address,
        250_000,
        1,
        0,
        e.now().await - 1,
    );
    assert_reverts(
        e.debit(HUB, &stale).await,
        AuthorizationExpired::SELECTOR,
        "deadline passed",
    );
    let too_much = e.sign(&depositor_key, id, hub_address, 1_000_001, 1, 0, deadline);
    assert_reverts(
        e.debit(HUB, &too_much).await,
        InsufficientDeposit::SELECTOR,
        "over the deposit",
    );
    assert_eq!(e.channel(id).await.nonce, U256::ZERO, "nothing was debited");

    // The valid one: debited, the hub bound, the receipt used, the nonce advanced.
    e.debit(HUB, &first).await.unwrap();
    let c = e.channel(id).await;
    assert_eq!(
        (c.used, c.nonce, c.hub),
        (U256::from(250_000), U256::from(1), hub_address)
    );
    assert!(
        receipt_used(&e.rpc, e.domain.contract, first.receipt_id)
            .await
            .unwrap()
    );
    // Replayed, or its receipt id reused with a fresh signature.
    assert_reverts(
        e.debit(HUB, &first).await,
        ReceiptAlreadyUsed::SELECTOR,
        "replay",
    );
    let reused = e.sign(&depositor_key, id, hub_address, 100_000, 1, 1, deadline);
    assert_reverts(
        e.debit(HUB, &reused).await,
        ReceiptAlreadyUsed::SELECTOR,
        "receipt id reused",
    );
    // Another hub, with a signature made out to it, on a channel bound to the first.
    let other_hub = e.sign(
        &depositor_key,
        id,
        other.parse().unwrap(),
        100_000,
        2,
        1,
        deadline,
    );
    assert_reverts(
        e.debit(OTHER, &other_hub).await,
        WrongHub::SELECTOR,
        "wrong hub",
    );
    let second = e.sign(&depositor_key, id, hub_address, 100_000, 2, 1, deadline);
    e.debit(HUB, &second).await.unwrap();

    // Settle: a stranger may not; the hub may; the hub is paid what was debited, the
    // depositor gets the rest back.
    let settle = settle_calldata(id);
    assert_reverts(
        e.transact(OTHER, &settle).await,
        NotAuthorized::SELECTOR,
        "stranger",
    );
    let hub_before = e.balance(&hub).await;
    e.transact(HUB, &settle).await.unwrap();
    assert_eq!(e.balance(&hub).await, hub_before + 350_000);
    assert_eq!(e.balance(&depositor).await, u128::from(MINTED) - 350_000);
    assert_eq!(e.balance(&e.contract).await, 0);
    assert_eq!(e.channel(id).await.status, OnChainStatus::Settled);
    let late = e.sign(&depositor_key, id, hub_address, 1, 3, 2, deadline);
    assert_reverts(
        e.debit(HUB, &late).await,
        ChannelNotOpen::SELECTOR,
        "settled",
    );
    assert_reverts(
        e.transact(DEPOSITOR, &settle).await,
        ChannelNotOpen::SELECTOR,
        "settled twice",
    );
}

#[tokio::test]
async fn refund_only_before_a_debit_and_expire_by_anyone() {
    let Some(e) = Escrow::start().await else {
        return;
    };
    let (depositor_key, depositor) = dev_account(DEPOSITOR);
    let hub: Address = dev_account(HUB).1.parse().unwrap();
    let refund = |id| {
        refundChannelCall {
            channelId: id,
            reason: "safety gate".into(),
        }
        .abi_encode()
    };
    // Before any debit: only the depositor, and all of it.
    let fresh = channel_id(0xa1);
    e.open(fresh, 400_000).await;
    assert_reverts(
        e.transact(OTHER, &refund(fresh)).await,
        NotDepositor::SELECTOR,
        "not depositor",
    );
    e.transact(DEPOSITOR, &refund(fresh)).await.unwrap();
    assert_eq!(e.balance(&depositor).await, u128::from(MINTED));
    assert_eq!(e.channel(fresh).await.status, OnChainStatus::Refunded);

    // After a debit: no refund; expiry by anyone, and only once it is due.
    let debited = channel_id(0xa2);
    e.open(debited, 600_000).await;
    let deadline = e.now().await + 48 * 3600;
    let debit = e.sign(&depositor_key, debited, hub, 150_000, 0x51, 0, deadline);
    e.debit(HUB, &debit).await.unwrap();
    assert_reverts(
        e.transact(DEPOSITOR, &refund(debited)).await,
        AlreadyDebited::SELECTOR,
        "refund after a debit",
    );
    let expire = expireChannelCall { channelId: debited }.abi_encode();
    assert_reverts(
        e.transact(OTHER, &expire).await,
        NotExpired::SELECTOR,
        "too early",
    );
    e.chain
        .rpc("evm_increaseTime", json!([24 * 3600 + 1]))
        .await;
    e.chain.mine(1).await;
    let late = e.sign(&depositor_key, debited, hub, 1, 0x52, 1, deadline);
    assert_reverts(
        e.debit(HUB, &late).await,
        ChannelExpired::SELECTOR,
        "debit after expiry",
    );
    let hub_before = e.balance(&format!("{hub:#x}")).await;
    e.transact(OTHER, &expire).await.unwrap();
    assert_eq!(e.channel(debited).await.status, OnChainStatus::Expired);
    assert_eq!(e.balance(&format!("{hub:#x}")).await, hub_before + 150_000);
    assert_eq!(e.balance(&depositor).await, u128::from(MINTED) - 150_000);
    assert_eq!(e.balance(&e.contract).await, 0);
}

#[tokio::test]
async fn a_chain_id_change_recomputes_the_domain() {
    let Some(e) = Escrow::start().await else {
        return;
    };
    let depositor_key = dev_account(DEPOSITOR).0;
    let hub: Address = dev_account(HUB).1.parse().unwrap();
    let id = channel_id(0xf0);
    e.open(id, 500_000).await;
    let deadline = e.now().await + 3600;
    let before_fork = e.sign(&depositor_key, id, hub, 10_000, 0x61, 0, deadline);
    e.chain.rpc("anvil_setChainId", json!([4242])).await;
    // Signed for chain 31337: no longer valid on chain 4242.
    assert_reverts(
        e.debit(HUB, &before_fork).await,
        InvalidSignature::SELECTOR,
        "old chain id",
    );
    let forked = EscrowDomain {
        chain_id: 4242,
        ..e.domain
    };
    let separator = e
        .chain
        .call(
            &dev_account(HUB).1,
            &e.contract,
            &domainSeparatorCall {}.abi_encode(),
        )
        .await
        .unwrap();
    assert_eq!(separator, forked.separator().to_vec());
    assert_ne!(forked.separator(), e.domain.separator());
    let after_fork = sign_debit(&depositor_key, &forked, &before_fork.message()).unwrap();
    e.chain
        .call(
            &dev_account(HUB).1,
            &e.contract,
            &after_fork.debit_calldata(),
        )
        .await
        .unwrap();
    // anvil's own signer keeps the old chain id: the hub wallet signs for the new one.
    let wallet = HubWallet::new(
        dev_account(HUB).0,
        JsonRpc::new(e.chain.url.parse().unwrap()).unwrap(),
        4242,
        GasPolicy {
            max_fee_per_gas_wei: 100_000_000_000,
        },
    );
    let nonce = wallet.pending_nonce().await.unwrap();
    let send = wallet
        .sign_call_with_gas(
            e.domain.contract,
            after_fork.debit_calldata(),
            nonce,
            300_000,
        )
        .await
        .unwrap();
    wallet.broadcast(&send).await.unwrap();
    let mined = wallet
        .wait_mined(&send.tx_hash, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(mined, SendState::Succeeded);
    assert_eq!(e.channel(id).await.used, U256::from(10_000));
}
