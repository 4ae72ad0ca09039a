// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";

/// @title SignatureVerifier
/// @notice Checks that `signer` signed `digest`: with its key (ECDSA) when it is an EOA, through ERC-1271's
/// `isValidSignature` when it is a contract (a smart wallet).
/// @dev OpenZeppelin 5.4's SignatureChecker needs Cancun (`mcopy`); this one keeps the contracts deployable
/// on shanghai. Malleable (high-s) and malformed ECDSA signatures are refused by OpenZeppelin's ECDSA.
library SignatureVerifier {
    /// @notice Whether `signature` is `signer`'s signature of `digest` now.
    /// @param signer The expected signer.
    /// @param digest The signed digest.
    /// @param signature The signature.
    /// @return Whether it is valid.
    function isValidNow(address signer, bytes32 digest, bytes calldata signature) internal view returns (bool) {
        if (signer.code.length == 0) {
            // The third return value only details the error; any error means "not the signer".
            // slither-disable-next-line unused-return
            (address recovered, ECDSA.RecoverError error,) = ECDSA.tryRecover(digest, signature);
            return error == ECDSA.RecoverError.NoError && recovered == signer;
        }
        try IERC1271(signer).isValidSignature(digest, signature) returns (bytes4 magicValue) {
            return magicValue == IERC1271.isValidSignature.selector;
        } catch {
            return false;
        }
    }
}
