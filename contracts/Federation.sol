// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
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
    /// @inheritdoc IFederation
    uint256 public constant MAX_ADMISSIONS_PER_ROUND = 4;

    uint256 private constant _MIN_CID = 46; // a CIDv0 (Qm..., base58 sha2-256)
    uint256 private constant _MAX_CID = 100; // a base32 CIDv1 with a sha2-256 digest has 59

    // A member's state in a round (the values of `MemberStatus`), and its word (see `_word`).
    uint256 private constant _COMMITTED = 1;
    uint256 private constant _REVEALED = 2;
    uint256 private constant _VOTED = 3;
    uint256 private constant _SLASHED = 4;
    uint256 private constant _ROUND_BITS = (1 << 40) - 1;
    uint256 private constant _STATE_SHIFT = 40;
    uint256 private constant _PREV_SHIFT = 43;
    uint256 private constant _COMMITMENT_SHIFT = 48;
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
    uint32 private immutable _founderCount;

    struct Member {
        uint128 stake;
        uint32 index;
        uint64 joinedRound;
        bool active;
        bool listed;
        bool founder;
    }

    /// @dev Word 0 holds all a phase transition reads, so a commit, reveal or vote loads
    ///      one cold slot of the round. `phaseAt` is when the current phase began; when
    ///      earlier phases began and when the round closed are in the events. Counts fit
    ///      16 bits: at most `MAX_MEMBERS` (256) members are ever listed. `winner` is the
    ///      leading proposal while votes come in, and the winner once `decided`; `leaderTag`,
    ///      its first 8 bytes, lets a vote for the leader skip reading `winner` (a cold slot).
    ///      `chained`: the round opened when the one before entered its vote, trains on that
    ///      round's model, and so fails if that round fails. `prevVoting`: the round before is still in
    ///      its vote (set when a chained round opens, cleared when the round before closes), so a
    ///      commit or reveal need not read the round before's word to know. Times fit 32 bits (2106).
    struct Round {
        Phase phase;
        bool decided;
        bool chained;
        bool prevVoting;
        uint16 memberCount;
        uint16 eligible;
        uint16 commits;
        uint16 reveals;
        uint16 votes;
        uint16 leaderVotes;
        uint32 openedAt;
        uint32 phaseAt;
        bytes8 leaderTag;
        bytes32 winner;
    }

    /// @dev One storage word per proposal. The model hash, the CID (by its keccak256) and
    ///      the scores are all bound by the proposal id, so a voter endorses exactly what it
    ///      computed; `Proposed` logs them and `finalize` takes them back.
    struct Proposal {
        uint32 votes;
    }

    /// @dev Approvals given since the last member left (`epoch`): a leave voids them all.
    struct Approval {
        uint64 epoch;
        uint32 count;
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
    uint32 public activeFounders;

    /// @inheritdoc IFederation
    mapping(address => bool) public admitted;
    mapping(address => Approval) private _approvals;
    /// @dev candidate => approver => 1 + the epoch of its approval (0: none).
    mapping(address => mapping(address => uint64)) private _approvedIn;
    uint64 private _epoch;
    uint64 private _admissionRound;
    uint32 private _admissionsInRound;

    /// @inheritdoc IFederation
    uint256 public currentRound;
    /// @inheritdoc IFederation
    uint256 public lastFinalized;
    mapping(uint256 => Round) private _rounds;
    /// @dev One word per member, reused round after round (a fresh word per member and round cost
    ///      22k gas a commit): the last round it committed to (bits 0-39), its state in that round
    ///      (40-42), its state in the round before as it was then or settled since (43-45), and its
    ///      commitment's top 208 bits (48-255; finding two contents with one commitment still takes
    ///      ~2^104 hashes). A round settles before its successor's successor opens, so the last two
    ///      rounds are all a settlement or a status needs.
    mapping(address => uint256) private _word;
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
    /// @dev A member's X25519 public key for sealed updates, and the first round that must seal to it.
    mapping(address => bytes32) private _encryptionKey;
    mapping(address => uint64) private _keySince;

    // ---------------------------------------------------------------------
    // Constructor
    // ---------------------------------------------------------------------

    constructor(IERC20 token_, bytes32 specHash_, Config memory cfg, address[] memory founders) {
        if (address(token_) == address(0)) revert InvalidConfig("token is the zero address");
        // Every amount of the token (stakes above all) then fits the 128 bits a member's stake holds.
        if (token_.totalSupply() > type(uint128).max) revert InvalidConfig("token supply above 2^128 units");
        if (cfg.stake == 0 || cfg.stake > type(uint128).max) revert InvalidConfig("stake out of range");
        if (cfg.commitWindow == 0 || cfg.revealWindow == 0 || cfg.voteWindow == 0) {
            revert InvalidConfig("phase windows must be positive");
        }
        if (cfg.quorumBps <= _BPS / 2 || cfg.quorumBps > _BPS) revert InvalidConfig("quorum must be in (50%, 100%]");
        if (cfg.minPeers == 0 || cfg.minPeers > MAX_MEMBERS) revert InvalidConfig("minPeers: 1 to 256");
        if (cfg.rewardPerRound > type(uint128).max) revert InvalidConfig("rewardPerRound out of range");
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
            _members[f].founder = true;
            emit MemberAdmitted(f, 0);
        }
        // Safe: founders.length <= MAX_MEMBERS (checked above).
        foundersPending = uint32(founders.length);
        _founderCount = uint32(founders.length);
    }

    // ---------------------------------------------------------------------
    // Membership
    // ---------------------------------------------------------------------

    /// @inheritdoc IFederation
    function approveMember(address candidate) external {
        _syncCurrent();
        if (!_members[msg.sender].active) revert NotMember(msg.sender);
        if (admitted[candidate] || _members[candidate].active) revert AlreadyMember(candidate);
        uint64 epoch = _epoch;
        if (_approvedIn[candidate][msg.sender] == epoch + 1) revert AlreadyApproved(candidate, msg.sender);
        _approvedIn[candidate][msg.sender] = epoch + 1;
        Approval storage a = _approvals[candidate];
        if (a.epoch != epoch) (a.epoch, a.count) = (epoch, 0); // approvals from before a leave lapse
        uint256 n = ++a.count;
        emit AdmissionApproved(candidate, msg.sender, n);
        // Before round 1 the founders decide: whoever joined first is not a majority on its own.
        // After it, founders who have not joined yet still count: round 1 may open with a bare
        // majority of them in, and a third of all founders must not be a majority of those.
        uint256 electorate = currentRound == 0 ? _founderCount : uint256(activeMembers) + foundersPending;
        if (n * 2 > electorate) {
            uint256 r = currentRound;
            if (_admissionRound != r) (_admissionRound, _admissionsInRound) = (uint64(r), 0);
            if (_admissionsInRound >= MAX_ADMISSIONS_PER_ROUND) revert AdmissionLimit(r, MAX_ADMISSIONS_PER_ROUND);
            ++_admissionsInRound;
            admitted[candidate] = true;
            emit MemberAdmitted(candidate, n);
        }
    }

    /// @inheritdoc IFederation
    function approvals(address candidate) external view returns (uint256) {
        Approval storage a = _approvals[candidate];
        return a.epoch == _epoch ? a.count : 0;
    }

    /// @inheritdoc IFederation
    function join() external nonReentrant {
        _syncCurrent();
        Member storage m = _members[msg.sender];
        if (m.active) revert AlreadyMember(msg.sender);
        if (!admitted[msg.sender]) revert NotAdmitted(msg.sender);
        bool firstFounderJoin = false;
        if (m.founder) ++activeFounders;
        if (!m.listed) {
            if (_memberList.length >= MAX_MEMBERS) revert MembershipFull(MAX_MEMBERS);
            // Safe: the list never holds more than MAX_MEMBERS (256) entries.
            m.index = uint32(_memberList.length);
            m.listed = true;
            _memberList.push(msg.sender);
            firstFounderJoin = m.founder; // a founder counts once, however often it leaves and rejoins
        }
        // Safe: a member who joins holds no stake (it never joined, or `leave` zeroed it), and
        // _stake <= type(uint128).max (checked at deployment).
        m.stake = uint128(_stake);
        m.active = true;
        m.joinedRound = uint64(currentRound);
        totalStaked += _stake;
        ++activeMembers;
        emit MemberJoined(msg.sender, m.index, m.stake);
        if (firstFounderJoin && --foundersPending == 0 && currentRound == 0 && _foundersDecide()) _open(1, false);
        token.safeTransferFrom(msg.sender, address(this), _stake);
    }

    /// @inheritdoc IFederation
    function addStake(uint256 amount) external nonReentrant {
        Member storage m = _members[msg.sender];
        if (!m.active) revert NotMember(msg.sender);
        if (amount == 0) revert ZeroAmount();
        m.stake = SafeCast.toUint128(uint256(m.stake) + amount);
        totalStaked += amount;
        emit StakeAdded(msg.sender, amount, m.stake);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @inheritdoc IFederation
    function leave() external nonReentrant {
        _syncCurrent();
        Member storage m = _members[msg.sender];
        if (!m.active) revert NotMember(msg.sender);
        uint256 r = currentRound;
        Round storage R = _rounds[r];
        if (r != 0 && _stateIn(r, _word[msg.sender]) != 0) revert LeaveWhileCommitted(r, msg.sender);
        // Nor while it owes the round in its vote a reveal or a vote: its settlement would find no stake.
        if (r > 1 && _rounds[r - 1].phase == Phase.Vote) {
            uint256 s = _stateIn(r - 1, _word[msg.sender]);
            if (s == _COMMITTED || s == _REVEALED) revert LeaveWhileCommitted(r - 1, msg.sender);
        }
        uint256 stake = m.stake;
        m.stake = 0;
        m.active = false;
        admitted[msg.sender] = false; // to come back, be admitted again
        if (m.founder) --activeFounders;
        ++_epoch; // every pending approval lapses: an approval counts only while its giver is a member
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
    function fund(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        rewardPool += amount;
        emit PoolFunded(msg.sender, amount);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    // ---------------------------------------------------------------------
    // Rounds
    // ---------------------------------------------------------------------

    /// @inheritdoc IFederation
    function advance() external {
        // Round 1 opens early only with a majority of the founders in, never on sybils' joins,
        // and never on founders who joined once and left.
        if (currentRound == 0) {
            if (activeMembers >= _minPeers && _foundersDecide()) _open(1, false);
        } else {
            _syncCurrent();
        }
    }

    /// @inheritdoc IFederation
    function commit(uint256 round, bytes32 commitment, bytes32 vote_, uint32 epsilonMilli) external {
        _syncAt(round);
        if (vote_ != 0) {
            // The vote first: it may decide (or fail) the round before, and with it this one.
            if (round < 2) revert NotCurrentRound(round - 1, currentRound);
            Round storage V = _votingRound(round - 1);
            _count(round - 1, V, vote_);
            if (_rounds[round].phase == Phase.Failed) return; // this vote failed the round before, and so this one
        }
        Round storage R = _openIn(round, Phase.Commit);
        Member storage m = _members[msg.sender];
        if (!m.active) revert NotMember(msg.sender);
        if (m.joinedRound >= round || m.stake < _stake) revert NotEligible(round, msg.sender);
        uint256 c = uint256(commitment) >> _COMMITMENT_SHIFT;
        if (c == 0) revert InvalidCommitment(commitment);
        uint256 w = _word[msg.sender]; // after the vote, which marked it
        if (w & _ROUND_BITS == round) revert AlreadyCommitted(round, msg.sender);
        // Its state in the round before is kept (a settlement to come, or a status, reads it there).
        uint256 prev = w & _ROUND_BITS == round - 1 ? (w >> _STATE_SHIFT) & 7 : 0;
        _word[msg.sender] = round | _COMMITTED << _STATE_SHIFT | prev << _PREV_SHIFT | c << _COMMITMENT_SHIFT;
        uint16 commits = ++R.commits;
        emit Committed(round, msg.sender, commitment);
        if (epsilonMilli != 0) emit PrivacySpent(round, msg.sender, epsilonMilli);
        if (commits == R.eligible && commits >= _minPeers) _enterReveal(round, R, block.timestamp);
    }

    /// @inheritdoc IFederation
    function reveal(uint256 round, bytes32 contentHash, string calldata cid, bytes32 salt, Body calldata previous)
        external
    {
        _syncAt(round);
        if (previous.modelHash != 0 && round > 1) _finalizeIfDue(round - 1, previous);
        Round storage R = _openIn(round, Phase.Reveal);
        _checkCid(round, cid);
        uint256 w = _word[msg.sender];
        uint256 state = _stateIn(round, w);
        if (state == 0) revert NotCommitted(round, msg.sender);
        if (state != _COMMITTED) revert AlreadyRevealed(round, msg.sender);
        bytes32 expected = keccak256(abi.encode(block.chainid, address(this), round, msg.sender, contentHash, salt));
        if (uint256(expected) >> _COMMITMENT_SHIFT != w >> _COMMITMENT_SHIFT) revert CommitmentMismatch(round, msg.sender);
        _word[msg.sender] = _withState(round, w, _REVEALED);
        uint16 reveals = ++R.reveals;
        emit Revealed(round, msg.sender, contentHash, cid);
        if (reveals == R.commits && !_waits(round)) _enterVote(round, R);
    }

    /// @inheritdoc IFederation
    function vote(uint256 round, bytes32 modelHash, string calldata modelCid, uint32[] calldata scores) external {
        _syncCurrent();
        Round storage R = _votingRound(round);
        if (modelHash == 0) revert EmptyModelHash(round);
        if (scores.length != R.memberCount) revert ScoresLengthMismatch(round, R.memberCount, scores.length);
        _checkCid(round, modelCid);
        bytes32 pid = _proposalId(modelHash, modelCid, scores);
        if (_votesFor(round, R, pid) == 0) emit Proposed(round, pid, modelHash, modelCid, scores);
        _count(round, R, pid);
    }

    /// @inheritdoc IFederation
    function voteFor(uint256 round, bytes32 proposal) external {
        _syncCurrent();
        Round storage R = _votingRound(round);
        if (_votesFor(round, R, proposal) == 0) revert UnknownProposal(round, proposal);
        _count(round, R, proposal);
    }

    /// @inheritdoc IFederation
    function finalize(uint256 round, bytes32 modelHash, string calldata modelCid, uint32[] calldata scores)
        external
    {
        _syncCurrent();
        Round storage R = _rounds[round];
        if (R.phase == Phase.None) revert NotCurrentRound(round, currentRound);
        if (R.phase != Phase.Vote) revert RoundNotInPhase(round, Phase.Vote, R.phase);
        if (!_finalizable(R)) {
            if (!R.decided) revert NoQuorum(round);
            revert VotesPending(round, R.votes, R.reveals);
        }
        bytes32 pid = R.winner;
        if (_proposalId(modelHash, modelCid, scores) != pid) revert ProposalMismatch(round, pid);
        _finalize(round, modelHash, modelCid, scores);
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
    function setEncryptionKey(bytes32 key) external {
        _syncCurrent();
        if (!_members[msg.sender].active) revert NotMember(msg.sender);
        if (key == 0 || _encryptionKey[msg.sender] != 0) revert EncryptionKeyRejected(msg.sender);
        // Required from the round whose reveals all come after this: the open round if it is still in its
        // commit phase (nobody has sealed an update of it yet), else the next one.
        uint256 r = currentRound;
        uint256 since = r == 0 ? 1 : _rounds[r].phase == Phase.Commit ? r : r + 1;
        _encryptionKey[msg.sender] = key;
        _keySince[msg.sender] = uint64(since);
        emit EncryptionKeySet(msg.sender, key, since);
    }

    /// @inheritdoc IFederation
    function encryptionKeys()
        external
        view
        returns (address[] memory members, bytes32[] memory keys, uint64[] memory since, bool[] memory active)
    {
        members = _memberList;
        uint256 n = members.length;
        keys = new bytes32[](n);
        since = new uint64[](n);
        active = new bool[](n);
        for (uint256 i = 0; i < n; ++i) {
            address a = members[i];
            (keys[i], since[i], active[i]) = (_encryptionKey[a], _keySince[a], _members[a].active);
        }
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
            R.commits, R.reveals, R.votes, R.winner, M.hash, M.cid, R.chained
        );
    }

    /// @inheritdoc IFederation
    function phaseOf(uint256 round) external view returns (Phase p) {
        p = _dueNow(round, _rounds[round]);
    }

    /// @inheritdoc IFederation
    function statusOf(uint256 round, address member) external view returns (MemberStatus) {
        return _statusOf(round, member);
    }

    /// @inheritdoc IFederation
    function stepView(address member) external view returns (StepView memory v) {
        uint256 round = currentRound;
        Round storage R = _rounds[round];
        v.round = round;
        v.stored = R.phase;
        v.live = _dueNow(round, R);
        v.finalized = lastFinalized;
        v.status = _statusOf(round, member);
        v.due = v.live != v.stored;
        if (round > 1 && _rounds[round - 1].phase == Phase.Vote) {
            Round storage P = _rounds[round - 1];
            (Phase p,) = _afterTimeouts(round - 1, P);
            v.voting = true;
            v.prevStatus = _statusOf(round - 1, member);
            v.prevFinalizable = p == Phase.Vote && _finalizable(P);
            v.due = v.due || p != Phase.Vote;
        }
    }

    function _statusOf(uint256 round, address member) private view returns (MemberStatus) {
        return MemberStatus(_stateIn(round, _word[member]));
    }

    /// @inheritdoc IFederation
    function proposalOf(uint256 round, bytes32 proposal) external view returns (uint256 votes) {
        return _votesFor(round, _rounds[round], proposal);
    }

    /// @inheritdoc IFederation
    function canFinalize(uint256 round) external view returns (bool) {
        Round storage R = _rounds[round];
        (Phase due,) = _afterTimeouts(round, R);
        return due == Phase.Vote && R.phase == Phase.Vote && _finalizable(R);
    }

    // ---------------------------------------------------------------------
    // Internal logic
    // ---------------------------------------------------------------------

    /// @dev Round `round`, which must be the open one and in `phase` (pending timeouts applied
    ///      by the caller's `_syncCurrent`).
    function _openIn(uint256 round, Phase phase) private view returns (Round storage R) {
        R = _rounds[round];
        Phase p = R.phase;
        if (p == Phase.None) revert NotCurrentRound(round, currentRound);
        if (p != phase) revert RoundNotInPhase(round, phase, p);
    }

    /// @dev Round `round`, open for votes: in the Vote phase and before its vote deadline.
    function _votingRound(uint256 round) private view returns (Round storage R) {
        R = _openIn(round, Phase.Vote);
        if (block.timestamp >= uint256(R.phaseAt) + _voteWindow) revert VoteWindowClosed(round);
    }

    /// @dev Applies every pending timeout: the vote of the round before the open one first (its
    ///      outcome decides the open round's), then the open round's own.
    function _syncCurrent() private {
        uint256 r = currentRound;
        if (r == 0) return;
        if (r > 1 && _rounds[r - 1].phase == Phase.Vote) _sync(r - 1);
        _sync(currentRound);
    }

    /// @dev `_syncCurrent` for a commit or reveal in `round`: the timeouts due in `round - 1` (in its
    ///      vote, or still the open round) and in `round`, without reading `currentRound` (a cold
    ///      word every commit and reveal paid). If the round before `round - 1` has a timeout due too,
    ///      the call finds `round` not open yet and reverts; `advance` applies it.
    function _syncAt(uint256 round) private {
        Round storage R = _rounds[round];
        if (round > 1 && (R.phase == Phase.None || R.prevVoting)) {
            Phase p = _rounds[round - 1].phase;
            if (p != Phase.None && p < Phase.Finalized) _sync(round - 1);
        }
        _sync(round);
    }

    /// @dev Applies the timeouts due in round `r` (see `_afterTimeouts`): enters each phase the
    ///      round reaches, then fails it if it timed out there.
    function _sync(uint256 r) private {
        Round storage R = _rounds[r];
        Phase p = R.phase;
        if (p == Phase.None || p >= Phase.Finalized) return;
        (Phase due, Phase live) = _afterTimeouts(r, R);
        if (due == p) return;
        if (p == Phase.Commit && live != Phase.Commit) _enterReveal(r, R, uint256(R.phaseAt) + _commitWindow);
        if (p != Phase.Vote && live == Phase.Vote) _enterVote(r, R);
        if (due == Phase.Failed) {
            FailReason reason = live == Phase.Commit
                ? FailReason.TooFewCommits
                : live == Phase.Reveal
                    ? FailReason.TooFewReveals
                    : _hasWinner(R) ? FailReason.NotFinalized : FailReason.NoQuorum;
            _fail(r, R, live, reason);
        }
    }

    /// @dev The timeout logic, for views and `_sync`: round `r` is in phase `due` once every
    ///      pending timeout applies; `live` is the last phase it reaches (the one it fails in, if
    ///      `due` is Failed). A commit phase ends when its window passes (and fails with fewer than
    ///      `minPeers` commits); a reveal phase when every committer revealed or its window passed
    ///      (and fails with fewer than `minPeers` reveals), but it enters the vote only once the
    ///      round before closed; the vote begins when it is entered and fails at its deadline
    ///      without a winner, or one window later if nobody finalized the winner.
    function _afterTimeouts(uint256 r, Round storage R) private view returns (Phase due, Phase live) {
        Phase p = R.phase;
        uint256 at = R.phaseAt;
        if (p == Phase.Commit) {
            if (block.timestamp < at + _commitWindow) return (p, p);
            if (R.commits < _minPeers) return (Phase.Failed, p);
            (p, at) = (Phase.Reveal, at + _commitWindow);
        }
        if (p == Phase.Reveal) {
            if (R.reveals != R.commits && block.timestamp < at + _revealWindow) return (p, p);
            if (R.reveals < _minPeers) return (Phase.Failed, p);
            if (_waits(r)) return (p, p);
            return (Phase.Vote, Phase.Vote); // entered now: its window has just begun
        }
        due = live = p;
        if (p == Phase.Vote && block.timestamp >= at + _voteWindow) {
            // Past the vote deadline a round with a winner may be finalized for one more window.
            if (!_hasWinner(R) || block.timestamp >= at + 2 * uint256(_voteWindow)) due = Phase.Failed;
        }
    }

    /// @dev For views: the phase round `r` is in once every pending timeout applies, the round
    ///      before's first. A transaction applies round r-1's timeouts before round r's (see
    ///      `_syncCurrent`, `_syncAt`), so a round waiting on a round before that is due to fail
    ///      fails with it (`_closed`), whatever its own timeouts say.
    function _dueNow(uint256 r, Round storage R) private view returns (Phase due) {
        if (_waits(r)) {
            (Phase prev,) = _afterTimeouts(r - 1, _rounds[r - 1]);
            if (prev == Phase.Failed) return Phase.Failed;
        }
        (due,) = _afterTimeouts(r, R);
    }

    /// @dev Whether round `r` must wait for the round before it, still in its vote, to close.
    function _waits(uint256 r) private view returns (bool) {
        return _rounds[r].prevVoting;
    }

    /// @dev Whether round `R` (in its vote) can be finalized now: its winner decided and every
    ///      revealer voted, or past the vote deadline with a winner (see `_hasWinner`).
    function _finalizable(Round storage R) private view returns (bool) {
        if (block.timestamp >= uint256(R.phaseAt) + _voteWindow) return _hasWinner(R);
        return R.decided && R.votes >= R.reveals;
    }

    /// @dev Finalizes round `r` on `b` if it is in its vote, can be finalized and `b` is its winner;
    ///      otherwise does nothing (another revealer may have finalized it, or the caller computed
    ///      another model: its own reveal must go through all the same).
    function _finalizeIfDue(uint256 r, Body calldata b) private {
        Round storage R = _rounds[r];
        if (R.phase != Phase.Vote || !_finalizable(R)) return;
        if (_proposalId(b.modelHash, b.modelCid, b.scores) != R.winner) return;
        _finalize(r, b.modelHash, b.modelCid, b.scores);
    }

    function _finalize(uint256 r, bytes32 modelHash, string calldata modelCid, uint32[] calldata scores) private {
        Round storage R = _rounds[r];
        R.phase = Phase.Finalized;
        lastFinalized = r;
        _models[r] = Model(modelHash, modelCid);
        uint256 paid = _settle(r, R.memberCount, scores, true, true);
        _logFinal(r, modelHash, modelCid, scores, paid);
        _closed(r, false);
    }

    /// @dev Logs round `r`'s winning proposal in full (votes riding in commits named its id only).
    function _logFinal(uint256 r, bytes32 modelHash, string calldata modelCid, uint32[] calldata scores, uint256 paid)
        private
    {
        bytes32 pid = _rounds[r].winner;
        emit Proposed(r, pid, modelHash, modelCid, scores);
        emit RoundFinalized(r, pid, modelHash, modelCid, _rounds[r].leaderVotes, paid);
    }

    /// @dev Whether round `R` has a proposal to finalize: one that reached quorum of the
    ///      revealers, or, judged at the deadline, the leader if at least two thirds of the
    ///      revealers voted and it holds a quorum of the votes cast. Revealers who abstain
    ///      thus cannot block a round (they are slashed at settlement), while a proposal
    ///      still needs a quorum of everyone who spoke.
    function _hasWinner(Round storage R) private view returns (bool) {
        if (R.decided) return true;
        uint256 votes = R.votes;
        return R.winner != 0 && votes * 3 >= uint256(R.reveals) * 2
            && uint256(R.leaderVotes) * _BPS >= uint256(_quorumBps) * votes;
    }

    /// @dev The id voters endorse: model hash, CID and scores, all bound.
    function _proposalId(bytes32 modelHash, string calldata cid, uint32[] calldata scores)
        private
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(modelHash, keccak256(bytes(cid)), scores));
    }

    /// @dev A CID is bounded (46 to 100 bytes) and looks like one: `b...` (multibase base32,
    ///      CIDv1) or `Qm...` (CIDv0). Unbounded CIDs could make `finalize` cost more gas than a
    ///      block holds; peers still check the content behind a CID against its hash.
    function _checkCid(uint256 round, string calldata cid) private pure {
        bytes calldata b = bytes(cid);
        uint256 n = b.length;
        if (n < _MIN_CID || n > _MAX_CID || (b[0] != "b" && (b[0] != "Q" || b[1] != "m"))) {
            revert InvalidCid(round, n);
        }
    }

    /// @dev Counts the caller's vote for `pid`; the first proposal to reach quorum wins. The leading
    ///      proposal's count lives in the round's word (`leaderVotes`), so a vote for the leader (every
    ///      honest vote, as a rule) writes no proposal slot; another proposal's count lives in its slot,
    ///      and one that overtakes the leader moves the old leader's count into the old leader's slot.
    function _count(uint256 round, Round storage R, bytes32 pid) private {
        uint256 w = _word[msg.sender];
        uint256 s = _stateIn(round, w);
        if (s == _VOTED) revert AlreadyVoted(round, msg.sender);
        if (s != _REVEALED) revert NotRevealed(round, msg.sender);
        _word[msg.sender] = _withState(round, w, _VOTED); // before any settlement this vote may cause
        uint16 total = ++R.votes;
        uint16 leading = R.leaderVotes;
        uint256 votes;
        // A proposal whose id shares the leader's first 8 bytes is the leader: finding another id
        // with the same 64-bit prefix takes ~2^64 hashes of chosen votes (and finalize checks the
        // full id, `winner`).
        if (leading == 0 || R.leaderTag == bytes8(pid)) {
            // Safe: a proposal's votes never exceed the round's revealers (<= MAX_MEMBERS).
            votes = ++R.leaderVotes;
            if (leading == 0) (R.leaderTag, R.winner) = (bytes8(pid), pid);
        } else {
            Proposal storage P = _proposals[round][pid];
            votes = ++P.votes;
            if (votes > leading) {
                _proposals[round][R.winner].votes = leading;
                (R.leaderTag, R.winner, R.leaderVotes) = (bytes8(pid), pid, uint16(votes));
            }
        }
        emit Voted(round, msg.sender, pid, votes);
        if (R.decided) return;
        if (votes * _BPS >= uint256(_quorumBps) * R.reveals) {
            R.decided = true; // only the leader can reach the quorum
        } else if (total == R.reveals) {
            _fail(round, R, Phase.Vote, FailReason.NoQuorum);
        }
    }

    /// @dev Votes for proposal `pid` of round `round` (the leader's are in the round's word).
    function _votesFor(uint256 round, Round storage R, bytes32 pid) private view returns (uint256) {
        if (R.leaderVotes != 0 && R.leaderTag == bytes8(pid)) return R.leaderVotes;
        return _proposals[round][pid].votes;
    }

    /// @dev Whether the founders still members are a majority of all founders: until round 1
    ///      opens, only they can open it (after that, the active members decide).
    function _foundersDecide() private view returns (bool) {
        return uint256(activeFounders) * 2 > _founderCount;
    }

    function _open(uint256 r, bool chained) private {
        currentRound = r;
        Round storage R = _rounds[r];
        R.phase = Phase.Commit;
        (R.chained, R.prevVoting) = (chained, chained);
        R.openedAt = uint32(block.timestamp);
        R.phaseAt = uint32(block.timestamp);
        // Safe: at most MAX_MEMBERS (256) are ever listed, so both fit 16 bits.
        R.memberCount = uint16(_memberList.length);
        R.eligible = uint16(activeMembers);
        emit RoundOpened(r, _memberList.length, activeMembers);
    }

    function _enterReveal(uint256 r, Round storage R, uint256 at) private {
        R.phase = Phase.Reveal;
        R.phaseAt = uint32(at);
        emit PhaseChanged(r, Phase.Reveal);
    }

    /// @dev Round `r` enters its vote now, and round r+1 opens on its (pending) model.
    function _enterVote(uint256 r, Round storage R) private {
        R.phase = Phase.Vote;
        R.phaseAt = uint32(block.timestamp);
        emit PhaseChanged(r, Phase.Vote);
        _open(r + 1, true);
    }

    function _fail(uint256 r, Round storage R, Phase phase, FailReason reason) private {
        R.phase = Phase.Failed;
        if (phase != Phase.Commit) _settle(r, R.memberCount, new uint32[](0), false, phase == Phase.Vote);
        emit RoundFailed(r, phase, reason);
        if (phase == Phase.Vote) {
            _closed(r, true);
        } else if (!_waits(r)) {
            _open(r + 1, false); // else it opens once the round before closes
        }
    }

    /// @dev Round `r` left its vote (finalized, or `failed`). The round after it opened when `r`
    ///      entered its vote: it fails with `r` (its members trained on a model that lost), and
    ///      otherwise goes on; if it failed, the next one opens.
    function _closed(uint256 r, bool failed) private {
        Round storage N = _rounds[r + 1];
        N.prevVoting = false;
        Phase p = N.phase;
        if (failed && (p == Phase.Commit || p == Phase.Reveal)) {
            N.phase = Phase.Failed; // nobody is slashed: the round never had a chance
            emit RoundFailed(r + 1, p, FailReason.PreviousFailed);
            p = Phase.Failed;
        }
        if (p == Phase.Failed) {
            if (currentRound == r + 1) _open(r + 2, false);
        } else {
            _sync(r + 1);
        }
    }

    /// @dev A member's state in round `r` from its word `w` (0: none, or too long ago to tell).
    function _stateIn(uint256 r, uint256 w) private pure returns (uint256) {
        uint256 wr = w & _ROUND_BITS;
        if (wr == r) return (w >> _STATE_SHIFT) & 7;
        if (wr == r + 1) return (w >> _PREV_SHIFT) & 7;
        return 0;
    }

    /// @dev Word `w` with the member's state in round `r` (its last round or the one before) set to `state`.
    function _withState(uint256 r, uint256 w, uint256 state) private pure returns (uint256) {
        uint256 shift = w & _ROUND_BITS == r ? _STATE_SHIFT : _PREV_SHIFT;
        return (w & ~(7 << shift)) | state << shift;
    }

    /// @dev Slashes round `r`'s committed non-revealers and, once the round reached its vote
    ///      (`voted`), its revealers who did not vote; if `pay`, credits the round's reward to
    ///      its voters in proportion to `scores`. Returns the amount credited.
    function _settle(uint256 r, uint256 n, uint32[] memory scores, bool pay, bool voted)
        private
        returns (uint256 paid)
    {
        bool[] memory voters = new bool[](n);
        uint256 totalScore;
        for (uint256 i; i < n; ++i) {
            address a = _memberList[i];
            uint256 s = _stateIn(r, _word[a]);
            if (s == _VOTED) {
                voters[i] = true;
                if (pay) totalScore += scores[i];
            } else if (s == _COMMITTED || (voted && s == _REVEALED)) {
                _slash(r, a);
            }
        }
        if (!pay || totalScore == 0) return 0;
        uint256 reward = _rewardPerRound < rewardPool ? _rewardPerRound : rewardPool;
        for (uint256 i; i < n; ++i) {
            if (!voters[i] || scores[i] == 0) continue;
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
        _word[a] = _withState(r, _word[a], _SLASHED);
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
