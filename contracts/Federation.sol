// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {IFederation} from "./IFederation.sol";

/// @title Federation
/// @notice One federated-learning consortium: members, stakes, rounds, votes and rewards.
/// @dev Protocol as built: docs/protocol.md. A member's state in a round is one storage
///      word: zero (nothing), its commitment, or one of the markers below.
contract Federation is IFederation, ReentrancyGuard {
    using SafeERC20 for IERC20;

    // ---------------------------------------------------------------------
    // Storage
    // ---------------------------------------------------------------------

    /// @inheritdoc IFederation
    uint256 public constant MAX_MEMBERS = 256;

    uint256 private constant _REVEALED = 1;
    uint256 private constant _VOTED = 2;
    uint256 private constant _SLASHED = 3;
    uint256 private constant _BPS = 10_000;

    /// @inheritdoc IFederation
    IERC20 public immutable token;
    /// @inheritdoc IFederation
    bytes32 public immutable specHash;

    uint256 private immutable _stake;
    uint256 private immutable _rewardPerRound;
    uint64 private immutable _commitWindow;
    uint64 private immutable _revealWindow;
    uint64 private immutable _voteWindow;
    uint16 private immutable _quorumBps;
    uint16 private immutable _minPeers;
    uint16 private immutable _slashBps;

    struct Member {
        uint128 stake;
        uint32 index;
        uint64 joinedRound;
        bool active;
        bool listed;
    }

    /// @dev Word 0 holds all a phase transition reads, so a commit, reveal or vote loads
    ///      one cold slot of the round. `phaseAt` is when the current phase began; when
    ///      earlier phases began and when the round closed are in the events.
    struct Round {
        Phase phase;
        bool decided;
        uint32 memberCount;
        uint32 eligible;
        uint32 commits;
        uint32 reveals;
        uint32 votes;
        uint40 openedAt;
        uint40 phaseAt;
        bytes32 winner;
    }

    /// @dev One storage word per proposal, so the first vote costs little more than the
    ///      next. The model hash and scores are bound by the proposal id, the CID by a
    ///      224-bit digest; `Proposed` logs them all and `finalize` takes them back.
    struct Proposal {
        uint32 votes;
        bytes28 cidDigest;
    }

    /// @dev The model a finalized round agreed on.
    struct Model {
        bytes32 hash;
        string cid;
    }

    mapping(address => Member) private _members;
    address[] private _memberList;
    /// @inheritdoc IFederation
    uint32 public activeMembers;
    /// @inheritdoc IFederation
    uint32 public foundersPending;

    /// @inheritdoc IFederation
    mapping(address => bool) public admitted;
    /// @inheritdoc IFederation
    mapping(address => uint256) public approvals;
    mapping(address => mapping(address => bool)) private _approvedBy;

    /// @inheritdoc IFederation
    uint256 public currentRound;
    /// @inheritdoc IFederation
    uint256 public lastFinalized;
    mapping(uint256 => Round) private _rounds;
    mapping(uint256 => mapping(address => bytes32)) private _status;
    mapping(uint256 => mapping(bytes32 => Proposal)) private _proposals;
    mapping(uint256 => Model) private _models;

    /// @inheritdoc IFederation
    uint256 public rewardPool;
    /// @inheritdoc IFederation
    uint256 public totalStaked;
    /// @inheritdoc IFederation
    uint256 public totalUnclaimed;
    /// @inheritdoc IFederation
    uint256 public totalClaimed;
    /// @inheritdoc IFederation
    uint256 public totalSlashed;
    /// @inheritdoc IFederation
    mapping(address => uint256) public credited;
    /// @inheritdoc IFederation
    mapping(address => uint256) public claimedBy;
    /// @inheritdoc IFederation
    mapping(address => uint256) public slashedBy;

    // ---------------------------------------------------------------------
    // Constructor
    // ---------------------------------------------------------------------

    constructor(IERC20 token_, bytes32 specHash_, Config memory cfg, address[] memory founders) {
        if (address(token_) == address(0)) revert InvalidConfig("token is the zero address");
        if (cfg.stake == 0 || cfg.stake > type(uint128).max) revert InvalidConfig("stake out of range");
        if (cfg.commitWindow == 0 || cfg.revealWindow == 0 || cfg.voteWindow == 0) {
            revert InvalidConfig("phase windows must be positive");
        }
        if (cfg.quorumBps <= _BPS / 2 || cfg.quorumBps > _BPS) revert InvalidConfig("quorum must be in (50%, 100%]");
        if (cfg.minPeers == 0) revert InvalidConfig("minPeers must be positive");
        if (cfg.slashBps > _BPS) revert InvalidConfig("slash above 100%");
        if (founders.length == 0 || founders.length > MAX_MEMBERS) revert InvalidConfig("founders: 1 to 256");
        token = token_;
        specHash = specHash_;
        _stake = cfg.stake;
        _rewardPerRound = cfg.rewardPerRound;
        _commitWindow = cfg.commitWindow;
        _revealWindow = cfg.revealWindow;
        _voteWindow = cfg.voteWindow;
        _quorumBps = cfg.quorumBps;
        _minPeers = cfg.minPeers;
        _slashBps = cfg.slashBps;
        emit FederationCreated(specHash_, address(token_), cfg);
        for (uint256 i; i < founders.length; ++i) {
            address f = founders[i];
            if (f == address(0) || admitted[f]) revert InvalidConfig("founders: zero or repeated address");
            admitted[f] = true;
            emit MemberAdmitted(f, 0);
        }
        foundersPending = uint32(founders.length);
    }

    // ---------------------------------------------------------------------
    // Membership
    // ---------------------------------------------------------------------

    /// @inheritdoc IFederation
    function approveMember(address candidate) external {
        if (!_members[msg.sender].active) revert NotMember(msg.sender);
        if (admitted[candidate] || _members[candidate].active) revert AlreadyMember(candidate);
        if (_approvedBy[candidate][msg.sender]) revert AlreadyApproved(candidate, msg.sender);
        _approvedBy[candidate][msg.sender] = true;
        uint256 n = ++approvals[candidate];
        emit AdmissionApproved(candidate, msg.sender, n);
        if (n * 2 > activeMembers) {
            admitted[candidate] = true;
            emit MemberAdmitted(candidate, n);
        }
    }

    /// @inheritdoc IFederation
    function join() external {
        _syncCurrent();
        Member storage m = _members[msg.sender];
        if (m.active) revert AlreadyMember(msg.sender);
        if (!admitted[msg.sender]) revert NotAdmitted(msg.sender);
        if (!m.listed) {
            if (_memberList.length >= MAX_MEMBERS) revert MembershipFull(MAX_MEMBERS);
            m.index = uint32(_memberList.length);
            m.listed = true;
            _memberList.push(msg.sender);
        }
        token.safeTransferFrom(msg.sender, address(this), _stake);
        m.stake += uint128(_stake);
        m.active = true;
        m.joinedRound = uint64(currentRound);
        totalStaked += _stake;
        ++activeMembers;
        emit MemberJoined(msg.sender, m.index, m.stake);
        if (currentRound == 0 && foundersPending > 0 && --foundersPending == 0) _open(1);
    }

    /// @inheritdoc IFederation
    function addStake(uint256 amount) external {
        Member storage m = _members[msg.sender];
        if (!m.active) revert NotMember(msg.sender);
        if (amount == 0) revert ZeroAmount();
        token.safeTransferFrom(msg.sender, address(this), amount);
        m.stake += uint128(amount);
        totalStaked += amount;
        emit StakeAdded(msg.sender, amount, m.stake);
    }

    /// @inheritdoc IFederation
    function leave() external nonReentrant {
        _syncCurrent();
        Member storage m = _members[msg.sender];
        if (!m.active) revert NotMember(msg.sender);
        uint256 r = currentRound;
        Round storage R = _rounds[r];
        if (r != 0 && _status[r][msg.sender] != 0) revert LeaveWhileCommitted(r, msg.sender);
        uint256 stake = m.stake;
        m.stake = 0;
        m.active = false;
        --activeMembers;
        totalStaked -= stake;
        if (r != 0 && R.phase == Phase.Commit && m.joinedRound < r) {
            --R.eligible;
            if (R.commits == R.eligible && R.commits >= _minPeers) _enterReveal(r, R, block.timestamp);
        }
        emit MemberLeft(msg.sender, stake);
        token.safeTransfer(msg.sender, stake);
    }

    /// @inheritdoc IFederation
    function fund(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        token.safeTransferFrom(msg.sender, address(this), amount);
        rewardPool += amount;
        emit PoolFunded(msg.sender, amount);
    }

    // ---------------------------------------------------------------------
    // Rounds
    // ---------------------------------------------------------------------

    /// @inheritdoc IFederation
    function advance() external {
        if (currentRound == 0 && activeMembers >= _minPeers) _open(1);
        else _syncCurrent();
    }

    /// @inheritdoc IFederation
    function commit(uint256 round, bytes32 commitment) external {
        Round storage R = _roundIn(round, Phase.Commit);
        Member storage m = _members[msg.sender];
        if (!m.active) revert NotMember(msg.sender);
        if (m.joinedRound >= round || m.stake < _stake) revert NotEligible(round, msg.sender);
        if (uint256(commitment) <= _SLASHED) revert InvalidCommitment(commitment);
        if (_status[round][msg.sender] != 0) revert AlreadyCommitted(round, msg.sender);
        _status[round][msg.sender] = commitment;
        uint32 commits = ++R.commits;
        emit Committed(round, msg.sender, commitment);
        if (commits == R.eligible && commits >= _minPeers) _enterReveal(round, R, block.timestamp);
    }

    /// @inheritdoc IFederation
    function reveal(uint256 round, bytes32 contentHash, string calldata cid, bytes32 salt) external {
        Round storage R = _roundIn(round, Phase.Reveal);
        bytes32 s = _status[round][msg.sender];
        if (s == 0) revert NotCommitted(round, msg.sender);
        if (uint256(s) <= _SLASHED) revert AlreadyRevealed(round, msg.sender);
        bytes32 expected = keccak256(abi.encode(block.chainid, address(this), round, msg.sender, contentHash, salt));
        if (s != expected) revert CommitmentMismatch(round, msg.sender);
        _status[round][msg.sender] = bytes32(_REVEALED);
        uint32 reveals = ++R.reveals;
        emit Revealed(round, msg.sender, contentHash, cid);
        if (reveals == R.commits) _enterVote(round, R, block.timestamp);
    }

    /// @inheritdoc IFederation
    function vote(uint256 round, bytes32 modelHash, string calldata modelCid, uint32[] calldata scores) external {
        Round storage R = _roundIn(round, Phase.Vote);
        if (modelHash == 0) revert EmptyModelHash(round);
        if (scores.length != R.memberCount) revert ScoresLengthMismatch(round, R.memberCount, scores.length);
        bytes32 pid = keccak256(abi.encode(modelHash, scores));
        Proposal storage P = _proposals[round][pid];
        if (P.votes == 0) {
            P.cidDigest = bytes28(keccak256(bytes(modelCid)));
            emit Proposed(round, pid, modelHash, modelCid, scores);
        }
        _count(round, R, P, pid);
    }

    /// @inheritdoc IFederation
    function voteFor(uint256 round, bytes32 proposal) external {
        Round storage R = _roundIn(round, Phase.Vote);
        Proposal storage P = _proposals[round][proposal];
        if (P.votes == 0) revert UnknownProposal(round, proposal);
        _count(round, R, P, proposal);
    }

    /// @inheritdoc IFederation
    function finalize(uint256 round, bytes32 modelHash, string calldata modelCid, uint32[] calldata scores)
        external
    {
        Round storage R = _roundIn(round, Phase.Vote);
        if (!R.decided) revert NoQuorum(round);
        bytes32 pid = R.winner;
        Proposal storage P = _proposals[round][pid];
        if (keccak256(abi.encode(modelHash, scores)) != pid || bytes28(keccak256(bytes(modelCid))) != P.cidDigest) {
            revert ProposalMismatch(round, pid);
        }
        R.phase = Phase.Finalized;
        lastFinalized = round;
        _models[round] = Model(modelHash, modelCid);
        uint256 paid = _settle(round, R.memberCount, scores, true);
        emit RoundFinalized(round, pid, modelHash, modelCid, P.votes, paid);
        _open(round + 1);
    }

    /// @inheritdoc IFederation
    function claim() external nonReentrant {
        uint256 amount = credited[msg.sender];
        if (amount == 0) revert NothingToClaim(msg.sender);
        credited[msg.sender] = 0;
        totalUnclaimed -= amount;
        totalClaimed += amount;
        claimedBy[msg.sender] += amount;
        emit Claimed(msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    // ---------------------------------------------------------------------
    // Views
    // ---------------------------------------------------------------------

    /// @inheritdoc IFederation
    function config() external view returns (Config memory) {
        return Config(
            _stake, _rewardPerRound, _commitWindow, _revealWindow, _voteWindow, _quorumBps, _minPeers, _slashBps
        );
    }

    /// @inheritdoc IFederation
    function memberList() external view returns (address[] memory) {
        return _memberList;
    }

    /// @inheritdoc IFederation
    function memberOf(address account)
        external
        view
        returns (bool active, uint256 index, uint256 stake, uint256 joinedRound)
    {
        Member storage m = _members[account];
        return (m.active, m.index, m.stake, m.joinedRound);
    }

    /// @inheritdoc IFederation
    function roundInfo(uint256 round) external view returns (RoundView memory v) {
        Round storage R = _rounds[round];
        Model storage M = _models[round];
        v = RoundView(
            R.phase, R.openedAt, R.phaseAt, R.memberCount, R.eligible,
            R.commits, R.reveals, R.votes, R.winner, M.hash, M.cid
        );
    }

    /// @inheritdoc IFederation
    function phaseOf(uint256 round) external view returns (Phase p) {
        Round storage R = _rounds[round];
        (p,,) = _afterTimeouts(R, R.phase, R.phaseAt);
    }

    /// @inheritdoc IFederation
    function statusOf(uint256 round, address member) external view returns (MemberStatus) {
        uint256 s = uint256(_status[round][member]);
        if (s == 0) return MemberStatus.None;
        if (s == _REVEALED) return MemberStatus.Revealed;
        if (s == _VOTED) return MemberStatus.Voted;
        if (s == _SLASHED) return MemberStatus.Slashed;
        return MemberStatus.Committed;
    }

    /// @inheritdoc IFederation
    function proposalOf(uint256 round, bytes32 proposal)
        external
        view
        returns (uint256 votes, bytes28 cidDigest)
    {
        Proposal storage P = _proposals[round][proposal];
        return (P.votes, P.cidDigest);
    }

    // ---------------------------------------------------------------------
    // Internal logic
    // ---------------------------------------------------------------------

    /// @dev Applies pending timeouts to `round`, then returns it if it is in `phase`, else
    ///      reverts with what it is. Only the open round can be in Commit, Reveal or Vote,
    ///      so the phase alone tells whether `round` is the open one.
    function _roundIn(uint256 round, Phase phase) private returns (Round storage R) {
        R = _rounds[round];
        (Phase p, uint256 at) = (R.phase, R.phaseAt);
        if (p == Phase.None) revert NotCurrentRound(round, currentRound);
        if (p < Phase.Finalized) p = _sync(round, R, p, at);
        if (p != phase) revert RoundNotInPhase(round, phase, p);
    }

    function _syncCurrent() private {
        uint256 r = currentRound;
        if (r != 0) {
            Round storage R = _rounds[r];
            _sync(r, R, R.phase, R.phaseAt);
        }
    }

    /// @dev Applies the timeouts due in open round `r`, stored in phase `p` since `at` (see
    ///      `_afterTimeouts`): enters each phase the round reaches, as of its deadline, then fails
    ///      the round if it timed out there. Returns the phase the round is in after.
    function _sync(uint256 r, Round storage R, Phase p, uint256 at) private returns (Phase due) {
        Phase live;
        (due, live, at) = _afterTimeouts(R, p, at); // `at`: when `live` began
        if (due == p) return p; // nothing due
        if (p == Phase.Commit && live != Phase.Commit) {
            _enterReveal(r, R, live == Phase.Reveal ? at : at - _revealWindow);
        }
        if (p != Phase.Vote && live == Phase.Vote) _enterVote(r, R, at);
        if (due == Phase.Failed) {
            FailReason reason = live == Phase.Commit
                ? FailReason.TooFewCommits
                : live == Phase.Reveal ? FailReason.TooFewReveals : FailReason.NoQuorum;
            _fail(r, R, live, reason);
        }
    }

    /// @dev The timeout logic, for `phaseOf` and `_sync`. Round `R`, stored in phase `p` since
    ///      `at`, is in phase `due` once every pending timeout applies, in order and each as of
    ///      its deadline: a phase whose window has passed moves on, or fails the round if too few
    ///      members acted in it (in Vote: if no proposal reached quorum). `live` is the last phase
    ///      the round reaches (the one it fails in, if `due` is Failed) and `liveAt` when that
    ///      began. A round that is not open stays as stored.
    function _afterTimeouts(Round storage R, Phase p, uint256 at)
        private
        view
        returns (Phase due, Phase live, uint256 liveAt)
    {
        if (p == Phase.Commit) {
            if (block.timestamp < at + _commitWindow) return (p, p, at);
            if (R.commits < _minPeers) return (Phase.Failed, p, at);
            (p, at) = (Phase.Reveal, at + _commitWindow);
        }
        if (p == Phase.Reveal) {
            if (block.timestamp < at + _revealWindow) return (p, p, at);
            if (R.reveals < _minPeers) return (Phase.Failed, p, at);
            (p, at) = (Phase.Vote, at + _revealWindow);
        }
        due = live = p;
        if (p == Phase.Vote && !R.decided && block.timestamp >= at + _voteWindow) due = Phase.Failed;
        return (due, live, at);
    }

    /// @dev Counts the caller's vote for `pid`; the first proposal to reach quorum wins.
    function _count(uint256 round, Round storage R, Proposal storage P, bytes32 pid) private {
        uint256 s = uint256(_status[round][msg.sender]);
        if (s == _VOTED) revert AlreadyVoted(round, msg.sender);
        if (s != _REVEALED) revert NotRevealed(round, msg.sender);
        _status[round][msg.sender] = bytes32(_VOTED);
        uint32 votes = ++P.votes;
        uint32 total = ++R.votes;
        emit Voted(round, msg.sender, pid, votes);
        if (R.decided) return;
        if (uint256(votes) * _BPS >= uint256(_quorumBps) * R.reveals) {
            R.decided = true;
            R.winner = pid;
        } else if (total == R.reveals) {
            _fail(round, R, Phase.Vote, FailReason.NoQuorum);
        }
    }

    function _open(uint256 r) private {
        currentRound = r;
        Round storage R = _rounds[r];
        R.phase = Phase.Commit;
        R.openedAt = uint40(block.timestamp);
        R.phaseAt = uint40(block.timestamp);
        R.memberCount = uint32(_memberList.length);
        R.eligible = activeMembers;
        emit RoundOpened(r, _memberList.length, activeMembers);
    }

    function _enterReveal(uint256 r, Round storage R, uint256 at) private {
        R.phase = Phase.Reveal;
        R.phaseAt = uint40(at);
        emit PhaseChanged(r, Phase.Reveal);
    }

    function _enterVote(uint256 r, Round storage R, uint256 at) private {
        R.phase = Phase.Vote;
        R.phaseAt = uint40(at);
        emit PhaseChanged(r, Phase.Vote);
    }

    function _fail(uint256 r, Round storage R, Phase phase, FailReason reason) private {
        R.phase = Phase.Failed;
        if (phase != Phase.Commit) _settle(r, R.memberCount, new uint32[](0), false);
        emit RoundFailed(r, phase, reason);
        _open(r + 1);
    }

    /// @dev Slashes committed non-revealers of round `r` and, if `pay`, credits the round's
    ///      reward to revealers in proportion to `scores`. Returns the amount credited.
    function _settle(uint256 r, uint256 n, uint32[] memory scores, bool pay) private returns (uint256 paid) {
        bool[] memory revealed = new bool[](n);
        uint256 totalScore;
        for (uint256 i; i < n; ++i) {
            address a = _memberList[i];
            uint256 s = uint256(_status[r][a]);
            if (s == _REVEALED || s == _VOTED) {
                revealed[i] = true;
                if (pay) totalScore += scores[i];
            } else if (s > _SLASHED) {
                _slash(r, a);
            }
        }
        if (!pay || totalScore == 0) return 0;
        uint256 reward = _rewardPerRound < rewardPool ? _rewardPerRound : rewardPool;
        for (uint256 i; i < n; ++i) {
            if (!revealed[i] || scores[i] == 0) continue;
            uint256 amount = reward * scores[i] / totalScore;
            address a = _memberList[i];
            credited[a] += amount;
            paid += amount;
            emit RewardCredited(r, a, amount, scores[i]);
        }
        rewardPool -= paid;
        totalUnclaimed += paid;
    }

    function _slash(uint256 r, address a) private {
        _status[r][a] = bytes32(_SLASHED);
        Member storage m = _members[a];
        uint256 amount = uint256(m.stake) * _slashBps / _BPS;
        m.stake -= uint128(amount);
        totalStaked -= amount;
        rewardPool += amount;
        totalSlashed += amount;
        slashedBy[a] += amount;
        emit Slashed(r, a, amount);
    }
}
