//! What a planning step did to a shard, for events, logs and metrics.

/// A shard transition, for events, metrics and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transition {
    /// The owner reported the shard finished.
    Finished { shard: String, owner: String },
    /// The owner acknowledged a release.
    Released { shard: String, owner: String },
    /// The owner's fence was already written (a move finished after a restart).
    AlreadyFenced { shard: String, owner: String },
    /// The owner's object is gone.
    OwnerGone { shard: String, owner: String },
    /// A new shard appeared in the stream.
    Discovered { shard: String },
    /// The shard got an owner.
    Assigned {
        shard: String,
        owner: String,
        epoch: i64,
    },
    /// The shard's owner must release it for another worker.
    Draining { shard: String, owner: String },
    /// The stream was deleted and created again under the same name: every position was reset
    /// ([`super::reset_for_new_stream`]).
    StreamRecreated {
        /// Shards the new stream lists.
        shards: usize,
        /// The old creation time, when the table knew it.
        was: String,
        /// The new one.
        now: String,
    },
    /// A `spec.reset` was applied ([`super::rewind`]).
    Rewound {
        /// Its request id.
        request_id: String,
        /// Shards rewound.
        shards: usize,
        /// Where they restart.
        to: String,
        /// Shards it named that the stream does not list.
        unknown: Vec<String>,
    },
}
