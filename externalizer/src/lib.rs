//! The externalizer: turns a ChangeSet into patch translation units.
