//! A request's replication settings, resolved from its options and the node's defaults.

use crate::core::node::NodeConfig;
use crate::proto::{QuorumOpts, REPLICAS_MAX, REQUEST_TIMEOUT_MS_MAX, RequestError};

/// Resolved replication settings of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) n: usize,
    /// W for a write, R for a read.
    pub(crate) needed: usize,
    pub(crate) strict: bool,
    pub(crate) timeout_ms: u64,
}

impl Plan {
    /// Checks `opts` against the node's defaults and a cluster of `members` members.
    pub(crate) fn resolve(
        opts: &QuorumOpts,
        read: bool,
        config: &NodeConfig,
        members: usize,
    ) -> Result<Plan, RequestError> {
        let n = opts.n.unwrap_or(config.n);
        if n == 0 || n > REPLICAS_MAX {
            return Err(RequestError::InvalidQuorum(format!(
                "n={n}: n must be between 1 and {REPLICAS_MAX}"
            )));
        }
        let (name, given, default) = if read {
            ("r", opts.r, config.r)
        } else {
            ("w", opts.w, config.w)
        };
        let needed = given.unwrap_or(default.min(n));
        if needed == 0 || needed > n {
            return Err(RequestError::InvalidQuorum(format!(
                "{name}={needed} with n={n}: {name} must be between 1 and n"
            )));
        }
        if n as usize > members {
            return Err(RequestError::InvalidQuorum(format!(
                "n={n} but the cluster has only {members} member(s){}; lower --n or add nodes",
                if opts.strict {
                    " and --strict counts only primaries"
                } else {
                    ""
                }
            )));
        }
        let timeout_ms = opts
            .timeout_ms
            .map(|t| t.clamp(1, REQUEST_TIMEOUT_MS_MAX) as u64)
            .unwrap_or(config.request_timeout_ms);
        Ok(Plan {
            n: n as usize,
            needed: needed as usize,
            strict: opts.strict,
            timeout_ms,
        })
    }
}
