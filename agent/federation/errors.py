"""The errors of the sync core. Every one derives from `SyncError`, so a coordinator or client can
reject a bad message with one `except SyncError` and still tell the cases apart by type."""

from __future__ import annotations


class SyncError(Exception):
    """Base class: a sync primitive refused its input."""


class ConfigurationError(SyncError, ValueError):
    """Parameters that would break a guarantee (wraparound, too few neighbours, bad sizes)."""


class QuantizationError(ConfigurationError):
    """A quantization plan under which the sum of the cohort's integers could wrap mod 2^32."""


class ShamirError(SyncError, ValueError):
    """Shares that cannot be used to reconstruct a secret."""


class NotEnoughShares(ShamirError):
    """Fewer shares than the threshold."""


class InvalidShare(ShamirError):
    """A share with a bad index (0, negative, duplicate) or a value outside the field."""


class InconsistentShares(ShamirError):
    """The shares do not lie on one polynomial of the threshold's degree: at least one is wrong."""


class MaskingError(SyncError, ValueError):
    """Key agreement or unmasking failed: bad key, missing seed or key, or a protocol violation."""


class EnvelopeError(SyncError, ValueError):
    """An encrypted share envelope that must not be opened."""


class EnvelopeMisdirected(EnvelopeError):
    """The envelope names another round, sender or receiver than the one opening it expects."""


class EnvelopeTampered(EnvelopeError):
    """Authentication failed: ciphertext, nonce or bound header altered, or the wrong key."""


class ProtocolError(SyncError, ValueError):
    """A wire message that is malformed, oversized, of the wrong shape or the wrong version."""


class PolicyViolation(SyncError):
    """The coordinator asks for less privacy than this client accepts, or breaks the protocol's rules."""
