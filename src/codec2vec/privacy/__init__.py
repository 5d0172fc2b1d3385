"""Privacy you can measure: private stores, anonymised stores, and an audit of what a store gives away.

`keys.py` (secret keys, keyed ids, per-codebook permutations), `private.py` (`tokenize --private`),
`anonymize.py` (`codec2vec anonymize`: level truncation and keyed scrambling into a new store; the keyed
initialisation that makes training on scrambled codes equal to training on clear ones), `audit.py`
(`codec2vec privacy-audit`: speaker identification from tokens, audio through the public decoder, metadata).
"""

from __future__ import annotations

from codec2vec.privacy.keys import PrivacyError, keyed_id, load_key, permutations, scramble, unscramble

__all__ = ["PrivacyError", "keyed_id", "load_key", "permutations", "scramble", "unscramble"]
