// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

/// @title VerticalTask
/// @notice One cross-domain (vertical) learning task: a task owner holding the labels, up to
///         eight feature parties holding other columns of the same customers, a bounty
///         escrowed here and paid out by each party's measured value.
/// @dev Stages: Open (the owner funds the bounty, invited parties stake) -> Aligning (private
///      set intersection: messages' hashes logged, the owner posts the intersection size,
///      every party confirms it) -> Training (one `commitEpoch` per member per epoch: the
///      Merkle root of the messages it sent that epoch) -> Valuing (the owner posts the
///      coalition table's hash and the shares) -> Paid. Before training starts the owner may
///      cancel and take the bounty back; once it has started the bounty goes to the parties
///      whatever the owner does: shares must add up to the whole pool, and an owner that goes
///      silent forfeits it to them. A party that goes silent for a window is timed out by
///      anyone, loses `slashBps` of its stake to the pool, and the task goes on without it.
///      Once paid, the trained model is used: the owner queries the parties still in about new
///      customers and they reply (`post` with `Query` and `Reply`), so scoring is on the record too.
///      Protocol as built: docs/protocol.md, "Cross-domain (vertical) federation".
contract VerticalTask is ReentrancyGuard {
    using SafeERC20 for IERC20;

    /// @notice At most this many feature parties (Shapley values are exact up to 2^8 coalitions).
    uint256 public constant MAX_PARTIES = 8;
    uint256 private constant _BPS = 10_000;
    uint256 private constant _MIN_CID = 46; // a CIDv0 (Qm..., base58 sha2-256)
    uint256 private constant _MAX_CID = 100; // a base32 CIDv1 with a sha2-256 digest has 59

    /// @notice Where the task is.
    enum Stage {
        Open,
        Aligning,
        Training,
        Valuing,
        Paid,
        Cancelled
    }

    /// @notice What a logged message carries.
    enum Kind {
        Psi,
        Alignment,
        Embedding,
        Gradient,
        Query,
        Reply
    }

    struct Party {
        bool invited;
        bool joined;
        bool dropped;
        bool confirmed;
        uint32 epochsDone;
    }

    /// @notice The token the bounty and the stakes are held in.
    IERC20 public immutable token;
    /// @notice keccak256 of the task spec every party runs (columns, model, seeds, windows).
    bytes32 public immutable specHash;
    /// @notice The task owner: holds the labels, funds the bounty, values the parties.
    address public immutable owner;
    /// @notice Tokens the owner escrows.
    uint256 public immutable bounty;
    /// @notice Tokens each feature party stakes.
    uint256 public immutable stake;
    /// @notice Training epochs.
    uint32 public immutable epochs;
    /// @notice The smallest intersection the task trains on.
    uint32 public immutable minIntersection;
    /// @notice Seconds each step may take before the one who owes it can be timed out.
    uint64 public immutable window;
    /// @notice The share of its stake (basis points) a party loses when it is timed out.
    uint16 public immutable slashBps;

    address[] private _parties;
    mapping(address => Party) private _party;

    /// @notice The current stage.
    Stage public stage;
    /// @notice Whether the owner has escrowed the bounty.
    bool public funded;
    /// @notice The training epoch under way (0-based; equals `epochs` once training is over).
    uint32 public epoch;
    /// @notice Epochs the owner has committed.
    uint32 public ownerEpochs;
    /// @notice The number of aligned customers the owner posted (0 until it does).
    uint32 public intersection;
    /// @notice When the current stage (or training epoch) began.
    uint64 public stageAt;
    /// @notice keccak256 of the owner's alignment messages, as posted with the intersection.
    bytes32 public alignmentRoot;
    /// @notice What settlement pays out: the bounty plus every slashed stake.
    uint256 public pool;
    /// @notice Tokens each account may claim.
    mapping(address => uint256) public owed;
    /// @notice Slashed stakes locked here for good (a task that ended with no party to pay them to).
    uint256 public burned;
    /// @notice Each member's X25519 public key: every message to it is sealed to this key (HPKE).
    mapping(address => bytes32) public encryptionKey;

    /// @notice The owner escrowed the bounty and registered its encryption key.
    event Funded(uint256 amount, bytes32 key);
    /// @notice `party` staked, joined and registered its encryption key.
    event Joined(address indexed party, bytes32 key);
    /// @notice The task moved to `stage`.
    event StageChanged(Stage stage);
    /// @notice `from` sent `to` a message of `kind` (its `seq`-th of that kind in `epoch`), stored at `cid`,
    ///         with sha256 `digest` (of the sealed bytes).
    event Message(
        address indexed from, address indexed to, Kind kind, uint32 epoch, uint32 seq, bytes32 digest, string cid
    );
    /// @notice The owner posted the intersection size and the hash of its alignment messages.
    event Aligned(uint32 size, bytes32 root);
    /// @notice `party` confirmed the intersection size.
    event Confirmed(address indexed party);
    /// @notice `party` left before training and took its stake back.
    event Left(address indexed party);
    /// @notice `member` committed `root`, the Merkle root of the messages it sent in `epoch`.
    event EpochCommitted(address indexed member, uint32 epoch, bytes32 root);
    /// @notice `party` was timed out in `stage` and lost `slashed` tokens to the pool.
    event PartyDropped(address indexed party, Stage stage, uint256 slashed);
    /// @notice The owner's coalition table (`tableHash`, stored at `cid`) and the shares (basis points,
    ///         party order) the pool was paid out by.
    event Settled(bytes32 tableHash, string cid, uint16[] shares);
    /// @notice The owner went silent after training started: the pool went to the parties equally.
    event Abandoned(Stage stage);
    /// @notice The task was cancelled before training: bounty and stakes returned.
    event Cancelled(Stage stage);
    /// @notice `account` withdrew `amount`.
    event Claimed(address indexed account, uint256 amount);

    /// @notice A deployment parameter is out of range: `what` says which.
    error BadParameter(string what);
    /// @notice Only the task owner may do this.
    error NotOwner();
    /// @notice The caller is not an invited feature party, or has been dropped.
    error NotParty(address account);
    /// @notice Not possible while the task is in `stage`.
    error WrongStage(Stage stage);
    /// @notice This was already done.
    error AlreadyDone();
    /// @notice The window runs until `deadline` (unix seconds).
    error TooEarly(uint64 deadline);
    /// @notice The owner has not posted the intersection yet.
    error NotAligned();
    /// @notice The intersection confirmed (`given`) is not the one posted (`posted`).
    error WrongIntersection(uint32 given, uint32 posted);
    /// @notice An epoch commitment for `given` while epoch `current` is under way.
    error WrongEpoch(uint32 given, uint32 current);
    /// @notice The shares do not pay the whole pool to the parties still in the task.
    error BadShares();
    /// @notice `account` owes nothing that can be timed out now.
    error NothingToTimeOut(address account);
    /// @notice There is nothing to claim.
    error NothingOwed();
    /// @notice A message names a recipient outside the task.
    error UnknownRecipient(address to);

    /// @param token_ The token of the bounty and the stakes.
    /// @param specHash_ keccak256 of the task spec.
    /// @param parties_ The invited feature parties, in the spec's order.
    constructor(
        IERC20 token_,
        bytes32 specHash_,
        address[] memory parties_,
        uint256 bounty_,
        uint256 stake_,
        uint32 epochs_,
        uint32 minIntersection_,
        uint64 window_,
        uint16 slashBps_
    ) {
        if (address(token_) == address(0)) revert BadParameter("token");
        if (parties_.length == 0 || parties_.length > MAX_PARTIES) revert BadParameter("parties");
        if (bounty_ == 0) revert BadParameter("bounty");
        if (epochs_ == 0) revert BadParameter("epochs");
        if (minIntersection_ == 0) revert BadParameter("minIntersection");
        if (window_ == 0 || window_ > 30 days) revert BadParameter("window");
        if (slashBps_ > _BPS) revert BadParameter("slashBps");
        for (uint256 i = 0; i < parties_.length; ++i) {
            address p = parties_[i];
            if (p == address(0) || p == msg.sender || _party[p].invited) revert BadParameter("parties");
            _party[p].invited = true;
            _parties.push(p);
        }
        token = token_;
        specHash = specHash_;
        owner = msg.sender;
        bounty = bounty_;
        stake = stake_;
        epochs = epochs_;
        minIntersection = minIntersection_;
        window = window_;
        slashBps = slashBps_;
        stageAt = uint64(block.timestamp);
    }

    // ---------------------------------------------------------------------
    // Open: escrow and stakes
    // ---------------------------------------------------------------------

    /// @notice The owner escrows the bounty (approve it first) and registers its X25519 public key.
    function fund(bytes32 key) external nonReentrant {
        _onlyOwner();
        _inStage(Stage.Open);
        if (funded) revert AlreadyDone();
        if (key == bytes32(0)) revert BadParameter("key");
        funded = true;
        pool = bounty;
        encryptionKey[msg.sender] = key;
        emit Funded(bounty, key);
        token.safeTransferFrom(msg.sender, address(this), bounty);
        _maybeAlign();
    }

    /// @notice An invited party stakes (approve the stake first), joins and registers its X25519 public key.
    function join(bytes32 key) external nonReentrant {
        _inStage(Stage.Open);
        Party storage p = _party[msg.sender];
        if (!p.invited) revert NotParty(msg.sender);
        if (p.joined) revert AlreadyDone();
        if (key == bytes32(0)) revert BadParameter("key");
        p.joined = true;
        encryptionKey[msg.sender] = key;
        emit Joined(msg.sender, key);
        token.safeTransferFrom(msg.sender, address(this), stake);
        _maybeAlign();
    }

    /// @notice Cancel before training: the owner at any time, anyone once a window has passed
    ///         with the task still open or no intersection posted. Bounty and stakes are returned.
    function cancel() external {
        if (stage != Stage.Open && stage != Stage.Aligning) revert WrongStage(stage);
        if (msg.sender != owner) {
            if (stage == Stage.Aligning && intersection != 0) revert AlreadyDone();
            _afterWindow();
        }
        _cancel();
    }

    // ---------------------------------------------------------------------
    // Aligning: private set intersection
    // ---------------------------------------------------------------------

    /// @notice Log a message sent to `to` through IPFS (PSI and alignment before training,
    ///         embeddings and gradients during it; once paid, the owner's scoring queries to the
    ///         parties still in and their replies): who sent what, when; the recipient finds it here.
    function post(address to, Kind kind, uint32 epoch_, uint32 seq, bytes32 digest, string calldata cid) external {
        if (stage == Stage.Paid) {
            if (msg.sender == owner) {
                if (kind != Kind.Query) revert BadParameter("kind");
                _activeParty(to);
            } else {
                _activeParty(msg.sender);
                if (kind != Kind.Reply) revert BadParameter("kind");
                if (to != owner) revert UnknownRecipient(to);
            }
        } else {
            if (stage != Stage.Aligning && stage != Stage.Training) revert WrongStage(stage);
            if (kind == Kind.Query || kind == Kind.Reply) revert BadParameter("kind");
            _onlyMember(msg.sender);
            if (to == msg.sender || (to != owner && !_party[to].invited)) revert UnknownRecipient(to);
        }
        if (bytes(cid).length < _MIN_CID || bytes(cid).length > _MAX_CID) revert BadParameter("cid");
        emit Message(msg.sender, to, kind, epoch_, seq, digest, cid);
    }

    /// @notice The owner posts the intersection size and the hash of its alignment messages; a
    ///         size below `minIntersection` cancels the task.
    function align(uint32 size, bytes32 root) external {
        _onlyOwner();
        _inStage(Stage.Aligning);
        if (intersection != 0) revert AlreadyDone();
        if (size < minIntersection) {
            _cancel();
            return;
        }
        intersection = size;
        alignmentRoot = root;
        stageAt = uint64(block.timestamp);
        emit Aligned(size, root);
    }

    /// @notice A party confirms the intersection size it received with its alignment.
    function confirm(uint32 size) external {
        _inStage(Stage.Aligning);
        Party storage p = _activeParty(msg.sender);
        if (intersection == 0) revert NotAligned();
        if (size != intersection) revert WrongIntersection(size, intersection);
        if (p.confirmed) revert AlreadyDone();
        p.confirmed = true;
        emit Confirmed(msg.sender);
        _maybeTrain();
    }

    /// @notice A party leaves before training (it disagrees with the alignment, or no longer
    ///         wants to take part) and takes its whole stake back.
    function leave() external {
        _inStage(Stage.Aligning);
        Party storage p = _activeParty(msg.sender);
        if (p.confirmed) revert AlreadyDone();
        p.dropped = true;
        owed[msg.sender] += stake;
        emit Left(msg.sender);
        _maybeTrain();
    }

    // ---------------------------------------------------------------------
    // Training
    // ---------------------------------------------------------------------

    /// @notice Commit the Merkle root of the messages the caller sent in epoch `epoch_`.
    function commitEpoch(uint32 epoch_, bytes32 root) external {
        _inStage(Stage.Training);
        if (epoch_ != epoch) revert WrongEpoch(epoch_, epoch);
        if (msg.sender == owner) {
            if (ownerEpochs > epoch_) revert AlreadyDone();
            ownerEpochs = epoch_ + 1;
        } else {
            Party storage p = _activeParty(msg.sender);
            if (p.epochsDone > epoch_) revert AlreadyDone();
            p.epochsDone = epoch_ + 1;
        }
        emit EpochCommitted(msg.sender, epoch_, root);
        _maybeNextEpoch();
    }

    /// @notice Time out `account`, silent for a whole window: a party is dropped and the task goes on
    ///         without it (slashed in training; in Aligning it gets its whole stake back, since it may
    ///         be waiting on the owner); an owner silent after training started forfeits the pool to
    ///         the parties; an owner that never posted the intersection cancels the task.
    function timeout(address account) external nonReentrant {
        _afterWindow();
        Stage s = stage;
        if (account == owner) {
            if (s == Stage.Aligning && intersection == 0) {
                _cancel();
            } else if ((s == Stage.Training && ownerEpochs <= epoch) || s == Stage.Valuing) {
                _abandon();
            } else {
                revert NothingToTimeOut(account);
            }
            return;
        }
        Party storage p = _party[account];
        if (!p.joined || p.dropped) revert NothingToTimeOut(account);
        if (s == Stage.Aligning && intersection != 0 && !p.confirmed) {
            _drop(account, p, 0); // it may be waiting on the owner's alignment: dropped, not slashed
            _maybeTrain();
        } else if (s == Stage.Training && p.epochsDone <= epoch) {
            _drop(account, p, slashBps);
            _maybeNextEpoch();
        } else {
            revert NothingToTimeOut(account);
        }
    }

    // ---------------------------------------------------------------------
    // Valuing and payout
    // ---------------------------------------------------------------------

    /// @notice The owner commits its coalition table (`tableHash`, stored at `cid`) and the shares
    ///         (basis points, party order) the pool is paid by: dropped parties get 0, the others'
    ///         shares add up to 10000 (with no party left, all are 0: the owner gets its bounty back
    ///         and the slashed stakes are burned). Each remaining party also gets its stake back.
    function settle(bytes32 tableHash, string calldata cid, uint16[] calldata shares) external {
        _onlyOwner();
        _inStage(Stage.Valuing);
        if (bytes(cid).length > _MAX_CID) revert BadParameter("cid");
        (uint256 active, uint256 top) = _checkShares(shares);
        stage = Stage.Paid;
        emit Settled(tableHash, cid, shares);
        emit StageChanged(Stage.Paid);
        if (active == 0) {
            _returnBounty();
            return;
        }
        uint256 paid = 0;
        uint256 n = _parties.length;
        for (uint256 i = 0; i < n; ++i) {
            address a = _parties[i];
            if (_party[a].dropped) continue;
            uint256 amount = (pool * shares[i]) / _BPS;
            paid += amount;
            owed[a] += amount + stake;
        }
        owed[_parties[top]] += pool - paid; // rounding dust: to the largest share
    }

    /// @notice Withdraw what the caller is owed.
    function claim() external nonReentrant {
        uint256 amount = owed[msg.sender];
        if (amount == 0) revert NothingOwed();
        owed[msg.sender] = 0;
        emit Claimed(msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    // ---------------------------------------------------------------------
    // Views
    // ---------------------------------------------------------------------

    /// @notice The invited feature parties, in the spec's order.
    function parties() external view returns (address[] memory) {
        return _parties;
    }

    /// @notice A party's state: invited, joined, dropped, confirmed, epochs committed.
    function partyInfo(address account) external view returns (Party memory) {
        return _party[account];
    }

    // ---------------------------------------------------------------------
    // Internals
    // ---------------------------------------------------------------------

    function _onlyOwner() private view {
        if (msg.sender != owner) revert NotOwner();
    }

    function _inStage(Stage s) private view {
        if (stage != s) revert WrongStage(stage);
    }

    function _afterWindow() private view {
        uint64 deadline = stageAt + window;
        if (block.timestamp <= deadline) revert TooEarly(deadline);
    }

    function _onlyMember(address account) private view {
        if (account != owner) _activeParty(account);
    }

    function _activeParty(address account) private view returns (Party storage p) {
        p = _party[account];
        if (!p.joined || p.dropped) revert NotParty(account);
    }

    function _setStage(Stage s) private {
        stage = s;
        stageAt = uint64(block.timestamp);
        emit StageChanged(s);
    }

    /// @dev Shares in party order: 0 for a dropped party, the others' adding up to 10000 (all 0 with no
    ///      party left). Returns how many parties are still in and the index of the largest share.
    function _checkShares(uint16[] calldata shares) private view returns (uint256 active, uint256 top) {
        uint256 n = _parties.length;
        if (shares.length != n) revert BadShares();
        uint256 total = 0;
        for (uint256 i = 0; i < n; ++i) {
            bool dropped = _party[_parties[i]].dropped;
            if (dropped && shares[i] != 0) revert BadShares();
            if (!dropped) {
                if (active == 0 || shares[i] > shares[top]) top = i;
                ++active;
            }
            total += shares[i];
        }
        if (active > 0 ? total != _BPS : total != 0) revert BadShares();
    }

    function _maybeAlign() private {
        if (!funded) return;
        uint256 n = _parties.length;
        for (uint256 i = 0; i < n; ++i) {
            if (!_party[_parties[i]].joined) return;
        }
        _setStage(Stage.Aligning);
    }

    function _maybeTrain() private {
        uint256 n = _parties.length;
        for (uint256 i = 0; i < n; ++i) {
            Party storage p = _party[_parties[i]];
            if (!p.dropped && !p.confirmed) return;
        }
        _setStage(Stage.Training);
    }

    function _maybeNextEpoch() private {
        uint32 e = epoch;
        if (ownerEpochs <= e) return;
        uint256 n = _parties.length;
        for (uint256 i = 0; i < n; ++i) {
            Party storage p = _party[_parties[i]];
            if (!p.dropped && p.epochsDone <= e) return;
        }
        epoch = e + 1;
        if (e + 1 == epochs) {
            _setStage(Stage.Valuing);
        } else {
            stageAt = uint64(block.timestamp);
        }
    }

    function _drop(address account, Party storage p, uint256 bps) private {
        p.dropped = true;
        uint256 cut = (stake * bps) / _BPS;
        pool += cut;
        owed[account] += stake - cut;
        emit PartyDropped(account, stage, cut);
    }

    /// @dev No party is left to pay: the owner gets its bounty back, and the stakes slashed from the
    ///      parties are burned (locked here for good): the owner never profits from a party's slashing.
    function _returnBounty() private {
        owed[owner] += bounty;
        burned += pool - bounty;
    }

    function _cancel() private {
        Stage was = stage;
        stage = Stage.Cancelled;
        emit Cancelled(was);
        emit StageChanged(Stage.Cancelled);
        if (funded) _returnBounty(); // no stake is ever slashed before training: the pool is the bounty
        uint256 n = _parties.length;
        for (uint256 i = 0; i < n; ++i) {
            Party storage p = _party[_parties[i]];
            if (p.joined && !p.dropped) owed[_parties[i]] += stake;
        }
    }

    function _abandon() private {
        Stage was = stage;
        stage = Stage.Paid;
        emit Abandoned(was);
        emit StageChanged(Stage.Paid);
        uint256 n = _parties.length;
        uint256 active = 0;
        for (uint256 i = 0; i < n; ++i) {
            if (!_party[_parties[i]].dropped) ++active;
        }
        if (active == 0) {
            _returnBounty();
            return;
        }
        uint256 each = pool / active;
        uint256 dust = pool % active;
        for (uint256 i = 0; i < n; ++i) {
            address a = _parties[i];
            if (_party[a].dropped) continue;
            owed[a] += each + stake + dust;
            dust = 0;
        }
    }
}
