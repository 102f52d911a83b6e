// SPDX-License-Identifier: Apache-2.0 OR MIT
pragma solidity ^0.8.24;

/// The part of ERC-20 the escrow uses.
interface IERC20Minimal {
    function transfer(address to, uint256 value) external returns (bool);
    function transferFrom(address from, address to, uint256 value) external returns (bool);
}

/// Non-custodial payment channels (AIMarket Protocol v2, spec §6.1–6.2).
///
/// A depositor escrows tokens here with `openChannel`; a hub debits the channel only with the
/// depositor's EIP-712 `DebitAuthorization` for that very hub, amount, receipt id, channel
/// nonce and deadline (`debitChannel`); the first debit binds the channel to that hub.
/// `settleChannel` (depositor or bound hub) pays what was debited to the hub and refunds the
/// rest; `refundChannel` gives the whole deposit back before any debit; after the 24 h expiry
/// anyone may `expireChannel`, with the same economics as a settle. The hub never holds the
/// deposit.
contract AIMarketEscrow {
    /// Lifecycle of a channel; `None` means the id was never opened.
    enum Status {
        None,
        Open,
        Settled,
        Refunded,
        Expired
    }

    /// One channel. Amounts are token base units.
    struct Channel {
        address depositor;
        address token;
        address hub;
        uint256 deposit;
        uint256 used;
        uint256 nonce;
        uint64 expiresAt;
        Status status;
    }

    /// A channel lives this long after `openChannel`.
    uint256 public constant CHANNEL_DURATION = 24 hours;

    /// The canonical typehash literal of spec §6.2.
    bytes32 public constant DEBIT_TYPEHASH = keccak256(
        "DebitAuthorization(bytes32 channelId,address hub,address token,uint256 amount,bytes32 receiptId,uint256 nonce,uint256 deadline)"
    );
    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant NAME_HASH = keccak256(bytes("AIMarketEscrow"));
    bytes32 private constant VERSION_HASH = keccak256(bytes("1"));
    /// secp256k1 n / 2: signatures with a larger `s` are malleable copies and refused.
    uint256 private constant HALF_ORDER = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    /// Channels by id.
    mapping(bytes32 => Channel) public channels;
    /// Receipt ids already debited (across all channels).
    mapping(bytes32 => bool) public usedReceipts;

    uint256 private immutable cachedChainId;
    bytes32 private immutable cachedDomainSeparator;

    error ChannelExists(bytes32 channelId);
    error ChannelNotOpen(bytes32 channelId);
    error ZeroToken();
    error ZeroAmount();
    error TokenTransferFailed();
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

    event ChannelOpened(
        bytes32 indexed channelId, address indexed depositor, address token, uint256 deposit, uint64 expiresAt
    );
    event ChannelDebited(
        bytes32 indexed channelId, address indexed hub, uint256 amount, bytes32 receiptId, uint256 nonce
    );
    event ChannelSettled(bytes32 indexed channelId, address indexed hub, uint256 paid, uint256 refunded);
    event ChannelRefunded(bytes32 indexed channelId, uint256 refunded, string reason);
    event ChannelExpiredBy(
        bytes32 indexed channelId, address indexed caller, uint256 paid, uint256 refunded
    );

    constructor() {
        cachedChainId = block.chainid;
        cachedDomainSeparator = _buildDomainSeparator();
    }

    /// Escrows `depositAmount` of `token` from the caller under `channelId` for 24 h.
    function openChannel(bytes32 channelId, address token, uint256 depositAmount) external {
        Channel storage c = channels[channelId];
        if (c.status != Status.None) revert ChannelExists(channelId);
        if (token == address(0)) revert ZeroToken();
        if (depositAmount == 0) revert ZeroAmount();
        c.depositor = msg.sender;
        c.token = token;
        c.deposit = depositAmount;
        c.expiresAt = uint64(block.timestamp + CHANNEL_DURATION);
        c.status = Status.Open;
        _pull(token, msg.sender, depositAmount);
        emit ChannelOpened(channelId, msg.sender, token, depositAmount, c.expiresAt);
    }

    /// Debits `amount` for `receiptId`, authorized by the depositor's EIP-712 signature over
    /// (channelId, msg.sender as hub, token, amount, receiptId, current nonce, deadline).
    function debitChannel(
        bytes32 channelId,
        uint256 amount,
        bytes32 receiptId,
        uint256 deadline,
        bytes calldata signature
    ) external {
        Channel storage c = channels[channelId];
        if (c.status != Status.Open) revert ChannelNotOpen(channelId);
        if (block.timestamp >= c.expiresAt) revert ChannelExpired(channelId);
        if (block.timestamp > deadline) revert AuthorizationExpired(deadline);
        if (amount == 0) revert ZeroAmount();
        if (c.hub != address(0) && c.hub != msg.sender) revert WrongHub(c.hub);
        if (usedReceipts[receiptId]) revert ReceiptAlreadyUsed(receiptId);
        if (c.deposit - c.used < amount) revert InsufficientDeposit(c.deposit - c.used, amount);
        bytes32 digest = debitDigest(channelId, msg.sender, amount, receiptId, c.nonce, deadline);
        if (_recover(digest, signature) != c.depositor) revert InvalidSignature();
        if (c.hub == address(0)) c.hub = msg.sender;
        usedReceipts[receiptId] = true;
        c.used += amount;
        emit ChannelDebited(channelId, msg.sender, amount, receiptId, c.nonce);
        c.nonce += 1;
    }

    /// Pays the debited amount to the bound hub and refunds the rest; depositor or bound hub.
    function settleChannel(bytes32 channelId) external {
        Channel storage c = channels[channelId];
        if (c.status != Status.Open) revert ChannelNotOpen(channelId);
        if (msg.sender != c.depositor && (c.hub == address(0) || msg.sender != c.hub)) {
            revert NotAuthorized();
        }
        c.status = Status.Settled;
        (uint256 paid, uint256 refunded) = _payOut(c);
        emit ChannelSettled(channelId, c.hub, paid, refunded);
    }

    /// The whole deposit back to the depositor, only before any debit.
    function refundChannel(bytes32 channelId, string calldata reason) external {
        Channel storage c = channels[channelId];
        if (c.status != Status.Open) revert ChannelNotOpen(channelId);
        if (msg.sender != c.depositor) revert NotDepositor();
        if (c.nonce != 0) revert AlreadyDebited(channelId);
        c.status = Status.Refunded;
        uint256 amount = c.deposit;
        _push(c.token, c.depositor, amount);
        emit ChannelRefunded(channelId, amount, reason);
    }

    /// After expiry, anyone settles the channel (same economics as `settleChannel`).
    function expireChannel(bytes32 channelId) external {
        Channel storage c = channels[channelId];
        if (c.status != Status.Open) revert ChannelNotOpen(channelId);
        if (block.timestamp < c.expiresAt) revert NotExpired(channelId, c.expiresAt);
        c.status = Status.Expired;
        (uint256 paid, uint256 refunded) = _payOut(c);
        emit ChannelExpiredBy(channelId, msg.sender, paid, refunded);
    }

    /// The EIP-712 domain separator for the current chain id (recomputed after a fork).
    function domainSeparator() public view returns (bytes32) {
        return block.chainid == cachedChainId ? cachedDomainSeparator : _buildDomainSeparator();
    }

    /// The digest a depositor signs for one debit.
    function debitDigest(
        bytes32 channelId,
        address hub,
        uint256 amount,
        bytes32 receiptId,
        uint256 nonce,
        uint256 deadline
    ) public view returns (bytes32) {
        address token = channels[channelId].token;
        bytes32 structHash =
            keccak256(abi.encode(DEBIT_TYPEHASH, channelId, hub, token, amount, receiptId, nonce, deadline));
        return keccak256(abi.encodePacked("\x19\x01", domainSeparator(), structHash));
    }

    function _buildDomainSeparator() private view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }

    function _payOut(Channel storage c) private returns (uint256 paid, uint256 refunded) {
        paid = c.used;
        refunded = c.deposit - c.used;
        if (paid > 0) _push(c.token, c.hub, paid);
        if (refunded > 0) _push(c.token, c.depositor, refunded);
    }

    function _recover(bytes32 digest, bytes calldata signature) private pure returns (address) {
        if (signature.length != 65) revert InvalidSignature();
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        if (v < 27) v += 27;
        if (v != 27 && v != 28) revert InvalidSignature();
        if (uint256(s) > HALF_ORDER) revert InvalidSignature();
        address signer = ecrecover(digest, v, r, s);
        if (signer == address(0)) revert InvalidSignature();
        return signer;
    }

    function _pull(address token, address from, uint256 amount) private {
        _call(token, abi.encodeCall(IERC20Minimal.transferFrom, (from, address(this), amount)));
    }

    function _push(address token, address to, uint256 amount) private {
        _call(token, abi.encodeCall(IERC20Minimal.transfer, (to, amount)));
    }

    /// A token call that must not revert and, when it answers, must answer `true`.
    function _call(address token, bytes memory data) private {
        (bool ok, bytes memory answer) = token.call(data);
        if (!ok || (answer.length != 0 && !abi.decode(answer, (bool))) || token.code.length == 0) {
            revert TokenTransferFailed();
        }
    }
}
