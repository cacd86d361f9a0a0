//! The Cairn node API (skeleton; being written).
