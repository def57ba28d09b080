// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

/// @title IFederation
/// @notice A leaderless federated-learning round coordinator.
/// @dev Every custom error, event and view of the Federation contract lives here. Rounds go
///      Commit -> Reveal -> Vote -> Finalized (or Failed), and they overlap: when round r
///      enters its vote, round r+1 opens, and round r's votes ride in round r+1's commits
///      (`commit(r+1, c, vote)`); round r is finalized by the first round r+1 reveal that
///      carries its winning proposal. So a member sends two transactions a round. Round r+1
///      (`chained`) fails with round r, and enters its own vote only once round r closed.
///      Transitions are lazy: the first transaction that finds a phase's condition true
///      (everyone acted, or the window passed) moves the round on. No admin, no timer process.
interface IFederation {
    // ---------------------------------------------------------------------
    // Types
    // ---------------------------------------------------------------------

    /// @notice The phase of a round. `None` is a round that was never opened.
    enum Phase {
        None,
        Commit,
        Reveal,
        Vote,
        Finalized,
        Failed
    }

    /// @notice A member's state in one round (see `statusOf`).
    enum MemberStatus {
        None,
        Committed,
        Revealed,
        Voted,
        Slashed
    }

    /// @notice Why a round failed.
    enum FailReason {
        TooFewCommits,
        TooFewReveals,
        NoQuorum,
        NotFinalized,
        PreviousFailed
    }

    /// @notice A proposal in full: the aggregated model, where it is stored, and the scores
    ///         (one per member listed when the round opened, join order). Its id is
    ///         `keccak256(abi.encode(modelHash, keccak256(bytes(modelCid)), scores))`.
    struct Body {
        bytes32 modelHash;
        string modelCid;
        uint32[] scores;
    }

    /// @notice Parameters fixed at deployment (taken from the federation spec).
    /// @param stake Tokens a member deposits to join.
    /// @param rewardPerRound Tokens paid from the pool to each finalized round's contributors.
    /// @param commitWindow Seconds the commit phase stays open at most.
    /// @param revealWindow Seconds the reveal phase stays open at most.
    /// @param voteWindow Seconds the vote phase stays open at most; a round with a winner may then
    ///        be finalized for as long again, after which it fails (`NotFinalized`).
    /// @param quorumBps Share of revealers (basis points, > 5000) one proposal needs; at the vote
    ///        deadline, the share of the votes cast, if at least two thirds of the revealers voted.
    /// @param minPeers Fewest commits and reveals a round needs to go on (1 to 256).
    /// @param slashBps Share of stake (basis points) lost by a member who commits and never
    ///        reveals, or reveals and never votes.
    struct Config {
        uint256 stake;
        uint256 rewardPerRound;
        uint64 commitWindow;
        uint64 revealWindow;
        uint64 voteWindow;
        uint16 quorumBps;
        uint16 minPeers;
        uint16 slashBps;
    }

    /// @notice What `stepView` returns.
    struct StepView {
        uint256 round;
        Phase live;
        Phase stored;
        uint256 finalized;
        MemberStatus status;
        bool voting;
        MemberStatus prevStatus;
        bool prevFinalizable;
        bool due;
    }

    /// @notice A round's public state.
    struct RoundView {
        Phase phase;
        uint40 openedAt;
        uint40 phaseAt;
        uint32 memberCount;
        uint32 eligible;
        uint32 commits;
        uint32 reveals;
        uint32 votes;
        bytes32 winner;
        bytes32 modelHash;
        string modelCid;
        bool chained;
    }

    // ---------------------------------------------------------------------
    // Errors
    // ---------------------------------------------------------------------

    /// @notice The deployment parameters are inconsistent: `reason`.
    error InvalidConfig(string reason);
    /// @notice `account` is not an active member.
    error NotMember(address account);
    /// @notice `account` was not admitted (founder or by vote) and cannot join.
    error NotAdmitted(address account);
    /// @notice `account` is already an active member or already admitted.
    error AlreadyMember(address account);
    /// @notice `member` already approved `candidate`.
    error AlreadyApproved(address candidate, address member);
    /// @notice The federation has as many members as it may hold.
    error MembershipFull(uint256 limit);
    /// @notice `member` joined after round `round` opened, or has too little stake to take part.
    error NotEligible(uint256 round, address member);
    /// @notice Round `round` is not open; the open round is `current`.
    error NotCurrentRound(uint256 round, uint256 current);
    /// @notice Round `round` is in phase `actual`; the call needs phase `expected`.
    error RoundNotInPhase(uint256 round, Phase expected, Phase actual);
    /// @notice A commitment must be a keccak256 digest: its top 208 bits (what the contract keeps) not all zero.
    error InvalidCommitment(bytes32 commitment);
    /// @notice `member` has already committed in round `round`.
    error AlreadyCommitted(uint256 round, address member);
    /// @notice `member` has no commitment in round `round` to reveal.
    error NotCommitted(uint256 round, address member);
    /// @notice `member` has already revealed in round `round`.
    error AlreadyRevealed(uint256 round, address member);
    /// @notice The revealed values do not hash to `member`'s commitment in round `round`.
    error CommitmentMismatch(uint256 round, address member);
    /// @notice `member` did not reveal in round `round`, so it may not vote.
    error NotRevealed(uint256 round, address member);
    /// @notice `member` has already voted in round `round`.
    error AlreadyVoted(uint256 round, address member);
    /// @notice Round `round` needs `expected` scores (one per member), got `actual`.
    error ScoresLengthMismatch(uint256 round, uint256 expected, uint256 actual);
    /// @notice A proposal in round `round` must name a non-zero model hash.
    error EmptyModelHash(uint256 round);
    /// @notice The model and scores given are not round `round`'s winning `proposal`.
    error ProposalMismatch(uint256 round, bytes32 proposal);
    /// @notice Round `round` has no proposal `proposal` to vote for (send the full vote first).
    error UnknownProposal(uint256 round, bytes32 proposal);
    /// @notice No proposal of round `round` has reached quorum.
    error NoQuorum(uint256 round);
    /// @notice Round `round` has a winner, but only `votes` of its `reveals` revealers voted: finalize once all have, or from the vote deadline.
    error VotesPending(uint256 round, uint256 votes, uint256 reveals);
    /// @notice Round `round`'s vote window has closed: no more votes.
    error VoteWindowClosed(uint256 round);
    /// @notice A CID in round `round` must be a base32 CIDv1 (b...) or a CIDv0 (Qm...) of 46 to 100 bytes; this one has `length`.
    error InvalidCid(uint256 round, uint256 length);
    /// @notice At most `limit` candidates may be admitted while round `round` is open.
    error AdmissionLimit(uint256 round, uint256 limit);
    /// @notice `member` cannot leave while committed to the open round `round`.
    error LeaveWhileCommitted(uint256 round, address member);
    /// @notice `account` has no credited rewards to claim.
    error NothingToClaim(address account);
    /// @notice An amount of zero was given where tokens must move.
    error ZeroAmount();
    /// @notice `member` already registered an encryption key (it is registered once: updates already sealed
    ///         to it could not be opened with another); the zero key is not a key.
    error EncryptionKeyRejected(address member);

    // ---------------------------------------------------------------------
    // Events
    // ---------------------------------------------------------------------

    /// @notice The federation was deployed with `specHash` and `config`.
    event FederationCreated(bytes32 indexed specHash, address indexed token, Config config);
    /// @notice `member` voted to admit `candidate`; `approvals` so far.
    event AdmissionApproved(address indexed candidate, address indexed member, uint256 approvals);
    /// @notice `candidate` may now join (a founder at deployment, or by majority vote).
    event MemberAdmitted(address indexed candidate, uint256 approvals);
    /// @notice `member` deposited `stake` and became member number `index`.
    event MemberJoined(address indexed member, uint256 indexed index, uint256 stake);
    /// @notice `member` added `amount` to its stake, now `stake`.
    event StakeAdded(address indexed member, uint256 amount, uint256 stake);
    /// @notice `member` left and took back `stake`.
    event MemberLeft(address indexed member, uint256 stake);
    /// @notice `from` added `amount` to the reward pool.
    event PoolFunded(address indexed from, uint256 amount);
    /// @notice `round` opened with `memberCount` members listed, `eligible` of them active.
    event RoundOpened(uint256 indexed round, uint256 memberCount, uint256 eligible);
    /// @notice `round` moved to `phase`.
    event PhaseChanged(uint256 indexed round, Phase phase);
    /// @notice `member` committed `commitment` in `round`.
    event Committed(uint256 indexed round, address indexed member, bytes32 commitment);
    /// @notice With its commit to `round`, `member` says it has spent `epsilonMilli` / 1000 of differential
    ///         privacy so far, the update committed included (its own statement; logged only when not zero).
    event PrivacySpent(uint256 indexed round, address indexed member, uint32 epsilonMilli);
    /// @notice `member` registered the X25519 public key `key` for sealed updates; senders must seal to it
    ///         from round `since` on (the first round whose reveals began after it was registered).
    event EncryptionKeySet(address indexed member, bytes32 key, uint256 since);
    /// @notice `member` revealed update `contentHash`, stored at `cid`, in `round`.
    event Revealed(uint256 indexed round, address indexed member, bytes32 contentHash, string cid);
    /// @notice `proposal` of `round` in full: logged by its first vote through `vote`, and by the
    ///         finalization of the winner (votes riding in commits name the id only).
    /// @dev `scores[i]` belongs to member number `i` (join order).
    event Proposed(uint256 indexed round, bytes32 indexed proposal, bytes32 modelHash, string modelCid, uint32[] scores);
    /// @notice `member` voted for `proposal` in `round`; it has `votes` votes.
    event Voted(uint256 indexed round, address indexed member, bytes32 indexed proposal, uint256 votes);
    /// @notice `round` finalized on `proposal`: the global model is `modelHash` at `modelCid`.
    event RoundFinalized(
        uint256 indexed round, bytes32 indexed proposal, bytes32 modelHash, string modelCid, uint256 votes, uint256 reward
    );
    /// @notice `round` failed in `phase` for `reason`; the model stays, nobody is paid.
    event RoundFailed(uint256 indexed round, Phase phase, FailReason reason);
    /// @notice `member` was credited `amount` for `score` in `round`.
    event RewardCredited(uint256 indexed round, address indexed member, uint256 amount, uint256 score);
    /// @notice `member` committed in `round` and never revealed, or revealed and never voted, and
    ///         lost `amount` of stake to the pool.
    event Slashed(uint256 indexed round, address indexed member, uint256 amount);
    /// @notice `member` withdrew `amount` of credited rewards.
    event Claimed(address indexed member, uint256 amount);

    // ---------------------------------------------------------------------
    // Membership
    // ---------------------------------------------------------------------

    /// @notice Approve `candidate` for membership. A majority of the active members admits it
    ///         (before round 1: a majority of the founders). An approval counts only while no
    ///         member has left since it was given; at most `MAX_ADMISSIONS_PER_ROUND` a round.
    function approveMember(address candidate) external;

    /// @notice Deposit the stake (approve it on the token first) and become a member.
    function join() external;

    /// @notice Add `amount` to the caller's stake (after a slash, say).
    function addStake(uint256 amount) external;

    /// @notice Leave and take back the stake; not while committed to the open round. A member who
    ///         left must be admitted again to rejoin, and every pending approval lapses.
    function leave() external;

    /// @notice Add `amount` tokens to the reward pool (approve them on the token first).
    function fund(uint256 amount) external;

    // ---------------------------------------------------------------------
    // Rounds
    // ---------------------------------------------------------------------

    /// @notice Apply every transition whose condition holds (timeouts included).
    function advance() external;

    /// @notice Commit to an update: `commitment = keccak256(abi.encode(chainid, this, round, sender, contentHash, salt))`,
    ///         and, if `vote_` is not zero, vote for proposal `vote_` of round `round - 1` (which the
    ///         caller revealed in, and which is in its vote). `epsilonMilli` is the caller's own statement of
    ///         the differential privacy it has spent so far, this update included, in thousandths of epsilon
    ///         (0 for none): logged (`PrivacySpent`) for the audit trail, not checked (nothing on chain can).
    function commit(uint256 round, bytes32 commitment, bytes32 vote_, uint32 epsilonMilli) external;

    /// @notice Reveal the committed update's hash and where it is stored. If `previous` is round
    ///         `round - 1`'s winning proposal and that round can be finalized, it is finalized
    ///         first (anything else in `previous`, an empty body above all, is ignored).
    function reveal(uint256 round, bytes32 contentHash, string calldata cid, bytes32 salt, Body calldata previous)
        external;

    /// @notice Vote for the aggregated model and contribution scores (one per member, join order).
    function vote(uint256 round, bytes32 modelHash, string calldata modelCid, uint32[] calldata scores) external;

    /// @notice Vote for an existing proposal by its id
    ///         `keccak256(abi.encode(modelHash, keccak256(bytes(modelCid)), scores))`.
    /// @dev Cheaper than `vote` once the first voter has stored the proposal.
    function voteFor(uint256 round, bytes32 proposal) external;

    /// @notice Close `round` on its winning proposal: credit voters by score, slash non-revealers and
    ///         revealers who did not vote, open the next. Possible once every revealer has voted, or
    ///         from the vote deadline until one vote window later (see `canFinalize`).
    /// @dev Model hash, CID and scores are the winning proposal's (every voter computed them).
    function finalize(uint256 round, bytes32 modelHash, string calldata modelCid, uint32[] calldata scores) external;

    /// @notice Withdraw every credited reward.
    function claim() external;

    // ---------------------------------------------------------------------
    // Views
    // ---------------------------------------------------------------------

    /// @notice Most members a federation may ever list (bounds finalize's loop).
    function MAX_MEMBERS() external view returns (uint256);

    /// @notice Most candidates that may be admitted while one round is open.
    function MAX_ADMISSIONS_PER_ROUND() external view returns (uint256);

    /// @notice The parameters fixed at deployment.
    function config() external view returns (Config memory);

    /// @notice The reward and stake token.
    function token() external view returns (IERC20);

    /// @notice keccak256 of the canonical federation spec.
    function specHash() external view returns (bytes32);

    /// @notice Every address that ever joined, in join order (score order).
    function memberList() external view returns (address[] memory);

    /// @notice A member registers its X25519 public key for sealed updates (once; see `EncryptionKeySet`).
    function setEncryptionKey(bytes32 key) external;

    /// @notice Every listed member (`memberList`), its registered encryption key (zero: none), the round from
    ///         which it must be sealed to, and whether it is a member now (updates are sealed to members only;
    ///         a round's committers must have been sealed to, whether or not they left since).
    function encryptionKeys()
        external
        view
        returns (address[] memory members, bytes32[] memory keys, uint64[] memory since, bool[] memory active);

    /// @notice A member's record.
    /// @param account The address to look up.
    /// @return active Whether `account` is a member now.
    /// @return index Its number in `memberList` (join order, the order of scores).
    /// @return stake The tokens it has at stake.
    /// @return joinedRound The open round when it (last) joined; it takes part from the next one.
    function memberOf(address account)
        external
        view
        returns (bool active, uint256 index, uint256 stake, uint256 joinedRound);

    /// @notice Members that are active now.
    function activeMembers() external view returns (uint32);

    /// @notice Founders that have never joined; round 1 opens when none is left (or on `advance`
    ///         once `minPeers` members are in), in both cases only while a majority of the
    ///         founders are members (`activeFounders`).
    function foundersPending() external view returns (uint32);

    /// @notice Founders that are members now (joined and not left).
    function activeFounders() external view returns (uint32);

    /// @notice Whether an address may join (founder, or approved by a majority).
    function admitted(address account) external view returns (bool);

    /// @notice Approvals a candidate has collected since the last member left.
    function approvals(address candidate) external view returns (uint256);

    /// @notice The open round (0 before the first one opens).
    function currentRound() external view returns (uint256);

    /// @notice The newest finalized round (0 while the initial model stands).
    function lastFinalized() external view returns (uint256);

    /// @notice A round as stored (see `phaseOf` for the phase once pending timeouts apply).
    function roundInfo(uint256 round) external view returns (RoundView memory v);

    /// @notice The phase `round` is in once every pending timeout applies.
    function phaseOf(uint256 round) external view returns (Phase p);

    /// @notice `member`'s state in `round`: 0 none, 1 committed, 2 revealed, 3 voted, 4 slashed. Known for
    ///         the member's last two rounds (its word is reused); older states are in the events.
    function statusOf(uint256 round, address member) external view returns (MemberStatus);

    /// @notice What a peer reads before each step, in one call: the open round, its phase once
    ///         its own pending timeouts apply and as stored, the newest finalized round, `member`'s
    ///         state in the open round, whether the round before is in its vote (and `member`'s
    ///         state in it, and whether it can be finalized), and whether any timeout is due.
    function stepView(address member) external view returns (StepView memory v);

    /// @notice A proposal of `round`: its votes (model, CID and scores are in its `Proposed` event,
    ///         once it was voted for in full or won).
    function proposalOf(uint256 round, bytes32 proposal) external view returns (uint256 votes);

    /// @notice Whether `finalize(round, ...)` would succeed now with the winning proposal.
    function canFinalize(uint256 round) external view returns (bool);

    /// @notice Tokens waiting to be paid as rewards.
    function rewardPool() external view returns (uint256);

    /// @notice Tokens held as members' stakes.
    function totalStaked() external view returns (uint256);

    /// @notice Credited rewards not yet claimed.
    function totalUnclaimed() external view returns (uint256);

    /// @notice Rewards claimed so far, over all members.
    function totalClaimed() external view returns (uint256);

    /// @notice Stake slashed so far, over all members (moved to the pool).
    function totalSlashed() external view returns (uint256);

    /// @notice Credited, not yet claimed, per member.
    function credited(address member) external view returns (uint256);

    /// @notice Claimed so far, per member.
    function claimedBy(address member) external view returns (uint256);

    /// @notice Slashed so far, per member.
    function slashedBy(address member) external view returns (uint256);
}
