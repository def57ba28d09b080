// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title RewardToken
/// @notice The federation's ERC-20: it backs members' stakes and pays contribution rewards.
/// @dev A fixed supply, minted once to the deployer, who funds the reward pool and hands
///      founders their stakes. No owner, no further minting.
contract RewardToken is ERC20 {
    constructor(string memory name_, string memory symbol_, uint256 supply, address holder) ERC20(name_, symbol_) {
        _mint(holder, supply);
    }
}
