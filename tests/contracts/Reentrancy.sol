// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @notice Test helper: an ERC-20 that calls the recipient back on every transfer (as
///         ERC-777 and some fee tokens do), so a member contract can re-enter `claim`.
contract CallbackToken is ERC20 {
    constructor(uint256 supply) ERC20("Callback", "CB") {
        _mint(msg.sender, supply);
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        if (to.code.length == 0 || from == address(0)) return;
        try TokenReceiver(to).onTokens(from, value) {}
        catch (bytes memory reason) {
            // contracts without the hook revert with no data: ignore them, bubble the rest
            if (reason.length > 0) {
                assembly {
                    revert(add(reason, 32), mload(reason))
                }
            }
        }
    }
}

interface TokenReceiver {
    function onTokens(address from, uint256 value) external;
}

/// @notice Test helper: a member contract that forwards its owner's calls and, when paid,
///         calls `claim` again on the paying federation.
contract ReentrantMember is TokenReceiver {
    address public immutable owner;
    address public federation;

    constructor() {
        owner = msg.sender;
    }

    function exec(address target, bytes calldata data) external returns (bytes memory) {
        require(msg.sender == owner, "owner only");
        (bool ok, bytes memory ret) = target.call(data);
        if (!ok) {
            assembly {
                revert(add(ret, 32), mload(ret))
            }
        }
        return ret;
    }

    function setFederation(address f) external {
        require(msg.sender == owner, "owner only");
        federation = f;
    }

    function onTokens(address from, uint256) external {
        if (from == federation) {
            (bool ok, bytes memory ret) = federation.call(abi.encodeWithSignature("claim()"));
            if (!ok) {
                assembly {
                    revert(add(ret, 32), mload(ret))
                }
            }
        }
    }
}
