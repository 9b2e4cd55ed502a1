//! The maps of the core, with a fast seeded hasher.
//!
//! Every routed message looks up its publisher's connection and session,
//! the subscription tree's levels and its subscribers' sessions: with the
//! standard library's SipHash those lookups were about 12% of the
//! instructions per message (callgrind, one PUBLISH per read). foldhash is
//! seeded per process, so keys that clients choose (client ids, topic
//! levels) cannot be precomputed to collide.

/// A `HashMap` with foldhash (create with `HashMap::default()`).
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// A `HashSet` with foldhash (create with `HashSet::default()`).
pub(crate) type HashSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;
