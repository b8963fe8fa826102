//! `GET` and `POST /v1/buckets/{bucket}/{counters|sets|maps|hlls}/{key}`: the CRDT
//! policies with JSON operations.
//!
//! A read answers `{"value": ..., "context": ...}` (the context only where the type has
//! one: sets and maps). A write is 204 with `X-Ringkv-Context`, or 200 with the read
//! shape of the new value when `?returnbody=true`. A request that carries several
//! operations (a set's adds and removes, a map's field operations) makes one write per
//! operation, in order; an `X-Ringkv-Op-Id` names one write, so it is accepted only on a
//! request that makes exactly one.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::core::object::{Context, MapOp, Op, OpId, Policy, ReadValue};
use crate::proto::Key;

use super::error::{ErrorBody, HttpError};
use super::front::Front;
use super::keys::{add_context, add_warning, crdt_route, read, read_body, token_of, write};
use super::limits::{BATCH_ITEMS_MAX, JSON_BODY_BYTES_MAX, MAP_OPS_MAX};
use super::params::{self, CrdtParams, OP_ID_HEADER};

/// A counter operation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CounterOp {
    /// The amount to add; negative subtracts.
    pub increment: i64,
}

/// A set operation: removes (as far as the context saw them), then adds.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetOps {
    /// Members to add.
    #[serde(default)]
    pub add: Vec<String>,
    /// Members to remove; without a context the set is read first.
    #[serde(default)]
    pub remove: Vec<String>,
    /// The context of the read that saw the removed members (else `X-Ringkv-Context`).
    pub context: Option<String>,
}

/// One map field operation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum MapFieldOp {
    /// Set the field's register.
    SetRegister {
        /// The field.
        field: String,
        /// The new value.
        value: String,
    },
    /// Add to (negative: subtract from) the field's counter.
    Increment {
        /// The field.
        field: String,
        /// The amount.
        delta: i64,
    },
    /// Add members to the field's set.
    AddMembers {
        /// The field.
        field: String,
        /// Members to add.
        members: Vec<String>,
    },
    /// Remove members from the field's set.
    RemoveMembers {
        /// The field.
        field: String,
        /// Members to remove.
        members: Vec<String>,
    },
    /// Remove the whole field, as far as the context saw it.
    RemoveField {
        /// The field.
        field: String,
    },
}

/// Map operations, applied in order (one write each).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MapOps {
    /// The operations, at most 64.
    pub ops: Vec<MapFieldOp>,
    /// The context for `remove_field` (else `X-Ringkv-Context`, else the map is read
    /// first).
    pub context: Option<String>,
}

/// HyperLogLog items to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HllOps {
    /// Items to add (only their hash enters the sketch).
    pub add: Vec<String>,
}

/// What a CRDT read answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct CrdtValue {
    /// The counter's integer, the set's sorted members, the map's fields
    /// (`{NAME: {"register": [...], "counter": n|null, "set": [...]}}`) or the HLL's
    /// estimate.
    #[schema(value_type = Object)]
    pub value: Value,
    /// The context to write back with (sets and maps only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

macro_rules! crdt_routes {
    ($get:ident, $post:ident, $path:literal, $policy:expr, $body:ident, $ops:ident, $what:literal) => {
        #[doc = concat!("Read a ", $what, ".")]
        #[utoipa::path(
            get,
            path = $path,
            tag = "crdts",
            params(
                ("bucket" = String, Path, description = "The bucket"),
                ("key" = String, Path, description = "The key"),
                CrdtParams,
            ),
            responses(
                (status = 200, description = "`value`, and `context` for sets and maps", body = CrdtValue),
                (status = 400, description = "A bad parameter or key", body = ErrorBody),
                (status = 404, description = "No replica holds the key", body = ErrorBody),
                (status = 409, description = "The key holds another policy", body = ErrorBody),
                (status = 503, description = "The read quorum was not met", body = ErrorBody),
            )
        )]
        pub(crate) async fn $get(
            State(front): State<Front>,
            path: Result<Path<(String, String)>, PathRejection>,
            query: Result<Query<CrdtParams>, QueryRejection>,
        ) -> Result<Response, HttpError> {
            get_crdt(&front, path, query, $policy).await
        }

        #[doc = concat!("Apply operations to a ", $what, ".")]
        #[utoipa::path(
            post,
            path = $path,
            tag = "crdts",
            request_body = $body,
            params(
                ("bucket" = String, Path, description = "The bucket"),
                ("key" = String, Path, description = "The key"),
                CrdtParams,
                ("x-ringkv-context" = Option<String>, Header, description = "The context for removals, when the body has none"),
                ("x-ringkv-op-id" = Option<String>, Header, description = "CLIENT-SEQ operation id (requests that make one write only)"),
            ),
            responses(
                (status = 204, description = "Applied; `X-Ringkv-Context` holds the new context (sets and maps)"),
                (status = 200, description = "With `returnbody=true`: the new value", body = CrdtValue),
                (status = 400, description = "A bad body, parameter, context, key, or a list over its limit", body = ErrorBody),
                (status = 409, description = "The key holds another policy", body = ErrorBody),
                (status = 413, description = "The body is over its limit", body = ErrorBody),
                (status = 503, description = "The write quorum was not met", body = ErrorBody),
            )
        )]
        pub(crate) async fn $post(
            State(front): State<Front>,
            path: Result<Path<(String, String)>, PathRejection>,
            query: Result<Query<CrdtParams>, QueryRejection>,
            headers: HeaderMap,
            body: Body,
        ) -> Result<Response, HttpError> {
            let key = params::key(path)?;
            let params = params::query(query)?;
            let parsed: $body = json_body(&headers, body).await?;
            let ops = $ops(&front, &key, &params, &headers, parsed).await?;
            apply(&front, &key, &params, &headers, ops, $policy).await
        }
    };
}

crdt_routes!(
    get_counter,
    post_counter,
    "/v1/buckets/{bucket}/counters/{key}",
    Policy::Counter,
    CounterOp,
    counter_ops,
    "counter"
);
crdt_routes!(
    get_set,
    post_set,
    "/v1/buckets/{bucket}/sets/{key}",
    Policy::Set,
    SetOps,
    set_ops,
    "set"
);
crdt_routes!(
    get_map,
    post_map,
    "/v1/buckets/{bucket}/maps/{key}",
    Policy::Map,
    MapOps,
    map_ops,
    "map"
);
crdt_routes!(
    get_hll,
    post_hll,
    "/v1/buckets/{bucket}/hlls/{key}",
    Policy::Hll,
    HllOps,
    hll_ops,
    "HyperLogLog"
);

async fn counter_ops(
    _: &Front,
    _: &Key,
    _: &CrdtParams,
    _: &HeaderMap,
    op: CounterOp,
) -> Result<Vec<Op>, HttpError> {
    Ok(vec![Op::CounterAdd {
        delta: op.increment,
    }])
}

async fn set_ops(
    front: &Front,
    key: &Key,
    params: &CrdtParams,
    headers: &HeaderMap,
    body: SetOps,
) -> Result<Vec<Op>, HttpError> {
    check_batch("add", body.add.len())?;
    check_batch("remove", body.remove.len())?;
    if body.add.is_empty() && body.remove.is_empty() {
        return Err(HttpError::BadRequest(
            "the body names no members: give \"add\" or \"remove\" (or both)".into(),
        ));
    }
    let mut ops = Vec::new();
    if !body.remove.is_empty() {
        let context = context_or_read(front, key, params, headers, body.context.as_deref()).await?;
        ops.push(Op::SetRemove {
            members: body.remove,
            context,
        });
    }
    if !body.add.is_empty() {
        ops.push(Op::SetAdd { members: body.add });
    }
    Ok(ops)
}

async fn map_ops(
    front: &Front,
    key: &Key,
    params: &CrdtParams,
    headers: &HeaderMap,
    body: MapOps,
) -> Result<Vec<Op>, HttpError> {
    if body.ops.is_empty() {
        return Err(HttpError::BadRequest(
            "\"ops\" is empty: give at least one field operation".into(),
        ));
    }
    if body.ops.len() > MAP_OPS_MAX {
        return Err(HttpError::BadRequest(format!(
            "\"ops\" has {} operations, over the limit of {MAP_OPS_MAX} per request; send them in several requests",
            body.ops.len()
        )));
    }
    let removes = body
        .ops
        .iter()
        .any(|op| matches!(op, MapFieldOp::RemoveField { .. }));
    let context = if removes {
        Some(context_or_read(front, key, params, headers, body.context.as_deref()).await?)
    } else {
        None
    };
    let mut ops = Vec::with_capacity(body.ops.len());
    for op in body.ops {
        let op = match op {
            MapFieldOp::SetRegister { field, value } => MapOp::SetRegister { field, value },
            MapFieldOp::Increment { field, delta } => MapOp::Increment { field, delta },
            MapFieldOp::AddMembers { field, members } => {
                check_batch("members", members.len())?;
                MapOp::AddMembers { field, members }
            }
            MapFieldOp::RemoveMembers { field, members } => {
                check_batch("members", members.len())?;
                MapOp::RemoveMembers { field, members }
            }
            MapFieldOp::RemoveField { field } => MapOp::RemoveField {
                field,
                context: context.clone().unwrap_or_default(),
            },
        };
        ops.push(Op::Map(op));
    }
    Ok(ops)
}

async fn hll_ops(
    _: &Front,
    _: &Key,
    _: &CrdtParams,
    _: &HeaderMap,
    body: HllOps,
) -> Result<Vec<Op>, HttpError> {
    check_batch("add", body.add.len())?;
    if body.add.is_empty() {
        return Err(HttpError::BadRequest(
            "\"add\" is empty: give at least one item".into(),
        ));
    }
    Ok(vec![Op::HllAdd {
        items: body.add.into_iter().map(String::into_bytes).collect(),
    }])
}

fn check_batch(what: &str, len: usize) -> Result<(), HttpError> {
    if len > BATCH_ITEMS_MAX {
        return Err(HttpError::BadRequest(format!(
            "\"{what}\" has {len} items, over the limit of {BATCH_ITEMS_MAX} per request; send them in several requests"
        )));
    }
    Ok(())
}

/// The body's context, else the header's, else what a read sees now.
async fn context_or_read(
    front: &Front,
    key: &Key,
    params: &CrdtParams,
    headers: &HeaderMap,
    body: Option<&str>,
) -> Result<Context, HttpError> {
    match params::context(headers, body)? {
        Some(context) => Ok(context),
        None => super::keys::read_context(front, key, params).await,
    }
}

/// A JSON body of at most [`JSON_BODY_BYTES_MAX`] bytes.
async fn json_body<T: DeserializeOwned>(headers: &HeaderMap, body: Body) -> Result<T, HttpError> {
    let bytes = read_body(headers, body, JSON_BODY_BYTES_MAX, "the JSON body").await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        HttpError::BadRequest(format!(
            "the body is not a valid operation ({e}); see /v1/openapi.json for its shape"
        ))
    })
}

/// Runs the writes in order; answers 204, or the last value with `returnbody`.
async fn apply(
    front: &Front,
    key: &Key,
    params: &CrdtParams,
    headers: &HeaderMap,
    ops: Vec<Op>,
    policy: Policy,
) -> Result<Response, HttpError> {
    let id: Option<OpId> = params::op_id(headers)?;
    if id.is_some() && ops.len() != 1 {
        return Err(HttpError::BadRequest(format!(
            "an {OP_ID_HEADER} names one write, and this request makes {}; send each operation in its own request to make it exactly-once",
            ops.len()
        )));
    }
    let mut last = None;
    for op in ops {
        last = Some(write(front, key.clone(), op, params, id).await?);
    }
    let Some((value, warning)) = last else {
        return Err(HttpError::BadRequest("the request makes no write".into()));
    };
    let mut response = if params.returnbody {
        Json(crdt_value(key, value.clone(), policy)?).into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    };
    add_context(&mut response, token_of(&value).as_deref());
    add_warning(&mut response, warning.as_deref());
    Ok(response)
}

async fn get_crdt(
    front: &Front,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<CrdtParams>, QueryRejection>,
    policy: Policy,
) -> Result<Response, HttpError> {
    let key = params::key(path)?;
    let params = params::query(query)?;
    let (found, value, warning) = read(front, &key, &params).await?;
    let not_found = || HttpError::NotFound {
        key: key.to_string(),
        context: None,
    };
    let value = match value {
        Some(v) if found => v,
        // A deleted value key reads as not found here as on the key route.
        _ => return Err(not_found()),
    };
    let token = token_of(&value);
    let mut response = Json(crdt_value(&key, value, policy)?).into_response();
    add_context(&mut response, token.as_deref());
    add_warning(&mut response, warning.as_deref());
    Ok(response)
}

/// The read shape of a CRDT value; 409 when the key holds another policy.
fn crdt_value(key: &Key, value: ReadValue, policy: Policy) -> Result<CrdtValue, HttpError> {
    let stored = crate::client::policy_of(&value);
    let (value, context) = match value {
        ReadValue::Counter { value } if policy == Policy::Counter => (json!(value), None),
        ReadValue::Set { members, context } if policy == Policy::Set => {
            (json!(members), Some(context.to_token()))
        }
        ReadValue::Map { fields, context } if policy == Policy::Map => {
            (json!(fields), Some(context.to_token()))
        }
        ReadValue::Hll { estimate } if policy == Policy::Hll => (json!(estimate), None),
        _ => {
            return Err(HttpError::WrongPolicy {
                key: key.to_string(),
                stored,
                route: crdt_route(key, stored),
            });
        }
    };
    Ok(CrdtValue { value, context })
}
